//! Secrets stay secret: the variable table marks every credential secret whatever its status
//! (the naming rule of `hydrenv/src/vars.rs`, exceptions listed here with their reason), and the
//! binary never shows a secret value in any output.

use hydrenv::vars::{self, VARS};

/// Words that make a variable a credential.
const SECRET_WORDS: &[&str] = &["KEY", "SECRET", "PASSWORD", "TOKEN", "CONNECTION_STRING"];

/// Variables that match the rule but hold no credential, and why. Adding a variable that
/// matches the rule forces a decision: mark it secret, or list it here with its reason.
const NOT_SECRET: &[(&str, &str)] = &[
    (
        "LB_HASH_KEY",
        "the name of the header, cookie or variable hashed on, not its value",
    ),
    ("AI_RATE_LIMIT_KEY", "a choice: `route` or `consumer`"),
    (
        "HYDRENV_KEY_VAULT_SECRETS",
        "names of Key Vault secrets to import, never their values",
    ),
    (
        "KEY_VAULT_URI",
        "must be https://<vault>.vault.azure.net (anything else, userinfo included, is refused)",
    ),
    ("KEY_VAULT_NAME", "a vault name"),
    (
        "AZURE_OPENAI_TOKEN_RESOURCE_N",
        "a public Entra resource or scope URI to ask tokens for",
    ),
    (
        "AZURE_OPENAI_TOKEN_RESOURCE",
        "a public Entra resource or scope URI to ask tokens for",
    ),
    (
        "GATEWAY_CLIENT_TOKEN_QUOTA_N",
        "a number of tokens per window",
    ),
    ("PRIORITY_SHED_BELOW_TOKENS", "a number of remaining tokens"),
    (
        "AZURE_OPENAI_ENDPOINT_N",
        "a backend base URL; userinfo, query and fragment are refused (the api-key is AZURE_OPENAI_KEY_N)",
    ),
    ("OIDC_DISCOVERY_URL", "the issuer's public metadata URL"),
    ("OIDC_REDIRECT_URI", "the gateway's own public callback URL"),
    (
        "APIM_GATEWAY_LOGS_INGEST_URI",
        "a data collection endpoint, authenticated with the managed identity",
    ),
    (
        "OTEL_COLLECTOR_ENDPOINT",
        "host:port of the local collector",
    ),
    (
        "AZURE_MONITOR_WORKSPACE_ENDPOINT",
        "a remote-write URL authenticated with the managed identity; userinfo is refused",
    ),
    (
        "IDENTITY_ENDPOINT",
        "the platform's local token endpoint; its secret is IDENTITY_HEADER",
    ),
];

/// A URL that may embed `user:password@`.
fn is_url_variable(name: &str) -> bool {
    let name = name.strip_suffix("_N").unwrap_or(name);
    name.ends_with("_URL") || name.ends_with("_URI") || name.contains("ENDPOINT")
}

fn matches_the_rule(name: &str) -> bool {
    SECRET_WORDS.iter().any(|w| name.contains(w)) || is_url_variable(name)
}

#[test]
fn every_credential_in_the_table_is_secret_whatever_its_status() {
    let mut problems = Vec::new();
    for var in VARS {
        let excepted = NOT_SECRET.iter().any(|(name, _)| *name == var.name);
        if matches_the_rule(var.name) && !excepted && !var.secret {
            problems.push(format!(
                "{} looks like a credential: mark it .secret() in vars.rs, or list it in NOT_SECRET with the reason",
                var.name
            ));
        }
    }
    for (name, reason) in NOT_SECRET {
        match vars::find(name) {
            None => problems.push(format!(
                "{name} is listed in NOT_SECRET but not in the table"
            )),
            Some(var) if var.secret => problems.push(format!(
                "{name} is secret but listed in NOT_SECRET ({reason})"
            )),
            Some(_) if !matches_the_rule(name) => problems.push(format!(
                "{name} does not match the rule: drop it from NOT_SECRET"
            )),
            Some(_) => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The ones this rule was written for, not built yet and secret all the same.
    for name in [
        "OIDC_CLIENT_SECRET",
        "RESPONSES_AFFINITY_REDIS_PASSWORD",
        "RATE_LIMIT_REDIS_URL",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "AZURE_OPENAI_KEY_N",
        "GATEWAY_CLIENT_KEY_N",
    ] {
        assert!(vars::find(name).unwrap().secret, "{name}");
    }
    assert!(vars::is_secret("AZURE_OPENAI_KEY_12"));
}

/// The distinctive part of a variable's test value: what must never be printed.
fn token(name: &str) -> String {
    format!(
        "S3CRET-{}-7b1d",
        name.replace('_', "-").to_ascii_lowercase()
    )
}

/// A value shaped like what the variable holds, carrying its token.
fn value_for(name: &str) -> String {
    let token = token(name);
    if is_url_variable(name) {
        format!("redis://:{token}@redis.internal:6379")
    } else if name.contains("CONNECTION_STRING") {
        format!(
            "InstrumentationKey={token};IngestionEndpoint=https://eus.in.applicationinsights.azure.com/"
        )
    } else {
        token
    }
}

/// Every secret variable of the table (group variables at index 0) with its value; `built`
/// only: the ones a valid environment may set.
fn secret_values(built_only: bool) -> Vec<(String, String)> {
    VARS.iter()
        .filter(|v| v.secret && (!built_only || v.status == vars::Status::Built))
        .map(|v| {
            let name = v
                .name
                .strip_suffix("_N")
                .map_or(v.name.to_owned(), |head| format!("{head}_0"));
            let value = value_for(&name);
            (name, value)
        })
        .collect()
}

/// A valid environment in which every built secret variable is set.
fn valid_env(root: &std::path::Path) -> hydrenv::env::Env {
    let mut vars = crate::support::env(&[
        ("AZURE_OPENAI_ENDPOINT_0", "https://eus.openai.azure.com"),
        ("GATEWAY_CLIENT_NAME_0", "team-a"),
        ("GATEWAY_REQUIRE_AUTH", "true"),
        // RATE_LIMIT_REDIS_URL shares the counters of a limit.
        ("ENABLE_RATE_LIMIT", "true"),
        ("RATE_LIMIT_RATE", "10"),
    ]);
    vars.extend(secret_values(true));
    vars.insert("SHARED_ROOT".into(), root.display().to_string());
    vars.insert("PATH".into(), std::env::var("PATH").unwrap_or_default());
    vars
}

/// Runs the binary; returns everything it wrote (stdout and stderr) and its exit code.
fn all_output(args: &[&str], vars: &hydrenv::env::Env) -> (String, Option<i32>) {
    let out = crate::support::hydrenv(args, vars);
    let text = format!(
        "$ hydrenv {}\n{}{}",
        args.join(" "),
        crate::support::stdout(&out),
        crate::support::stderr(&out)
    );
    (text, out.status.code())
}

fn assert_no_token(text: &str, tokens: &[String]) {
    for token in tokens {
        assert!(
            !text.contains(token.as_str()),
            "`{token}` was shown:\n{text}"
        );
    }
}

#[test]
fn no_command_shows_a_secret_value_on_success() {
    let root = tempfile::tempdir().unwrap();
    let vars = valid_env(root.path());
    let tokens: Vec<String> = secret_values(true).iter().map(|(n, _)| token(n)).collect();
    let mut seen = String::new();
    for args in [
        &["explain"][..],
        &["render", "--dry-run"],
        &["check"],
        &["render"],
        &["diff"],
        &["run", "--", "true"],
        &["supervise", "--", "true"],
    ] {
        let (text, code) = all_output(args, &vars);
        assert_eq!(code, Some(0), "{text}");
        seen.push_str(&text);
    }
    // A rotation of every secret: the diff shows neither the old nor the new values.
    let mut rotated = vars.clone();
    for (name, value) in secret_values(true) {
        rotated.insert(name, value.replace("7b1d", "e40c"));
    }
    let (diff, code) = all_output(&["diff"], &rotated);
    assert_eq!(code, Some(0), "{diff}");
    seen.push_str(&diff);
    seen.push_str(&std::fs::read_to_string(root.path().join("current/rendered.redacted")).unwrap());
    let rotated_tokens: Vec<String> = tokens.iter().map(|t| t.replace("7b1d", "e40c")).collect();
    assert_no_token(&seen, &tokens);
    assert_no_token(&seen, &rotated_tokens);
    // The values did reach the release (the test would prove nothing otherwise).
    let gateway = std::fs::read_to_string(root.path().join("current/gateway.yaml")).unwrap();
    assert!(gateway.contains(&token("AZURE_OPENAI_KEY_0")));
    assert!(seen.contains("<redacted:GATEWAY_CLIENT_KEY_0>"), "{seen}");
}

#[test]
fn no_error_shows_a_secret_value_even_for_variables_not_built_yet() {
    let root = tempfile::tempdir().unwrap();
    let mut vars = valid_env(root.path());
    vars.extend(secret_values(false));
    let tokens: Vec<String> = secret_values(false).iter().map(|(n, _)| token(n)).collect();
    let mut seen = String::new();
    for args in [
        &["render", "--dry-run"][..],
        &["check"],
        &["render"],
        &["diff"],
        &["run", "--", "true"],
        &["supervise", "--", "true"],
    ] {
        let (text, code) = all_output(args, &vars);
        assert_eq!(code, Some(64), "{text}");
        seen.push_str(&text);
    }
    let (explain, code) = all_output(&["explain"], &vars);
    assert_eq!(code, Some(0), "{explain}");
    seen.push_str(&explain);
    assert_no_token(&seen, &tokens);
    for name in ["OIDC_CLIENT_SECRET", "RESPONSES_AFFINITY_REDIS_PASSWORD"] {
        assert!(seen.contains(&format!("{name}: not built")), "{seen}");
    }
    for name in [
        "OIDC_CLIENT_SECRET",
        "RESPONSES_AFFINITY_REDIS_PASSWORD",
        "RATE_LIMIT_REDIS_URL",
    ] {
        assert!(
            explain.contains(&format!("= <redacted:{name}>")),
            "{explain}"
        );
    }
}

#[test]
fn values_refused_for_their_shape_are_never_shown() {
    let root = tempfile::tempdir().unwrap();
    let mut vars = valid_env(root.path());
    let shaped = [
        // A secret that cannot be sent: refused by name, never quoted.
        (
            "AZURE_OPENAI_KEY_1",
            format!("{}\n", token("AZURE_OPENAI_KEY_1")),
        ),
        (
            "GATEWAY_CLIENT_KEY_0",
            format!("{} x", token("GATEWAY_CLIENT_KEY_0")),
        ),
        // Credentials inside URLs that are not secrets: quoted with the userinfo masked.
        (
            "AZURE_OPENAI_ENDPOINT_1",
            format!(
                "https://user:{}@wus.example",
                token("AZURE_OPENAI_ENDPOINT_1")
            ),
        ),
        (
            "AZURE_MONITOR_WORKSPACE_ENDPOINT",
            format!(
                "https://u:{}@amw.example/write",
                token("AZURE_MONITOR_WORKSPACE_ENDPOINT")
            ),
        ),
        (
            "KEY_VAULT_URI",
            format!("https://u:{}@kv.vault.azure.net", token("KEY_VAULT_URI")),
        ),
    ];
    for (name, value) in &shaped {
        vars.insert((*name).to_owned(), value.clone());
    }
    let tokens: Vec<String> = shaped.iter().map(|(n, _)| token(n)).collect();
    let mut seen = String::new();
    for args in [
        &["render", "--dry-run"][..],
        &["check"],
        &["render"],
        &["diff"],
        &["run", "--", "true"],
        &["supervise", "--", "true"],
    ] {
        let (text, code) = all_output(args, &vars);
        assert_eq!(code, Some(64), "{text}");
        seen.push_str(&text);
    }
    let (explain, code) = all_output(&["explain"], &vars);
    assert_eq!(code, Some(0), "{explain}");
    seen.push_str(&explain);
    assert_no_token(&seen, &tokens);
    // Key Vault settings are checked first; without them, every other problem shows.
    vars.remove("KEY_VAULT_URI");
    let (check, _) = all_output(&["check"], &vars);
    assert_no_token(&check, &tokens);
    for expected in [
        "AZURE_OPENAI_KEY_1: ends with a line break",
        "GATEWAY_CLIENT_KEY_0: contains whitespace",
        "AZURE_OPENAI_ENDPOINT_1: `https://***@wus.example` carries a user name or password",
        "AZURE_MONITOR_WORKSPACE_ENDPOINT: `https://***@amw.example/write` carries a user name",
    ] {
        assert!(check.contains(expected), "expected `{expected}` in {check}");
    }
    assert!(
        seen.contains("KEY_VAULT_URI: `https://***@kv.vault.azure.net`"),
        "{seen}"
    );
}

/// Every message builder that quotes a value, fed a value that came from Key Vault and is
/// refused: the message names the variable and quotes its placeholder, never the value in any
/// form (as given, lowercased, escaped, one item of it, a URL without its query). Both the
/// settings reader on its own and the whole render (which scrubs every message once more).
#[test]
fn a_refused_value_from_the_vault_is_quoted_in_no_form() {
    const MARK: &str = "Vault-S3cret";
    // The variable from the vault, its value, and the literal variables that make it read.
    type Case = (
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
    );
    let cases: &[Case] = &[
        ("LB_HASH_ON", "Cookie-Vault-S3cret", &[("LB_ALG", "chash")]),
        ("OTEL_LOG_LEVEL", "Loud-Vault-S3cret", &[]),
        ("GATEWAY_LOG_MODE", "Prod-Vault-S3cret", &[]),
        (
            "APISIX_ACTIVE_HEALTH_CHECK_SCHEME",
            "Gopher-Vault-S3cret",
            &[],
        ),
        ("LB_ALG", "Fastest-Vault-S3cret", &[]),
        ("AZURE_OPENAI_AUTH_MODE_0", "Mode-Vault-S3cret", &[]),
        (
            "GATEWAY_CLIENT_PRIORITY_0",
            "Mid-Vault-S3cret",
            &[
                ("GATEWAY_CLIENT_NAME_0", "a"),
                ("GATEWAY_CLIENT_KEY_0", "ck-a"),
            ],
        ),
        (
            "AI_PROXY_FALLBACK_STRATEGY",
            "http_429, Bad-Vault-S3cret",
            &[],
        ),
        (
            "AZURE_OPENAI_DEPLOYMENTS_0",
            "gpt-4o=gpt-4o, Bad Vault-S3cret=x",
            &[],
        ),
        (
            "AZURE_OPENAI_DEPLOYMENTS_0",
            "gpt-4o=gpt-4o, Vault-S3cret",
            &[],
        ),
        ("AZURE_OPENAI_NAME_0", "East\tVault-S3cret", &[]),
        (
            "AZURE_OPENAI_ENDPOINT_0",
            "https://u:Vault-S3cret@eus.example/Vault-S3cret?sig=Vault-S3cret",
            &[],
        ),
        (
            "AZURE_OPENAI_ENDPOINT_0",
            "HTTPS://Vault-S3cret.example/?sig=x",
            &[],
        ),
        ("AZURE_OPENAI_WEIGHT_0", "Many-Vault-S3cret", &[]),
        ("AZURE_OPENAI_WEIGHT_0", " 99999999999 ", &[]),
        ("APISIX_ACTIVE_HEALTH_CHECK_PATH", "Vault-S3cret/p", &[]),
        (
            "LB_HASH_KEY",
            "Header-Vault-S3cret",
            &[("LB_ALG", "chash"), ("LB_HASH_ON", "vars")],
        ),
        (
            "AZURE_MONITOR_WORKSPACE_ENDPOINT",
            "https://u:Vault-S3cret@amw.example/w",
            &[],
        ),
        ("AI_RATE_LIMIT_STRATEGY", "Tokens-Vault-S3cret", &[]),
        ("AI_RATE_LIMIT_KEY", "Ip-Vault-S3cret", &[]),
        ("AI_RATE_LIMIT_HIGH_LIMIT", "Many-Vault-S3cret", &[]),
        (
            "AI_RATE_LIMIT_REJECT_CODE",
            "99999999999",
            &[("ENABLE_AI_RATE_LIMIT", "true")],
        ),
        ("RATE_LIMIT_RATE", "Fast-Vault-S3cret", &[]),
        ("QUOTA_TIME_WINDOW", "Day-Vault-S3cret", &[]),
        ("RATE_LIMIT_REDIS_FAILURE", "Open-Vault-S3cret", &[]),
        (
            "GATEWAY_CLIENT_TOKEN_QUOTA_0",
            "Lots-Vault-S3cret",
            &[
                ("GATEWAY_CLIENT_NAME_0", "a"),
                ("GATEWAY_CLIENT_KEY_0", "ck-a"),
            ],
        ),
    ];
    let templates = hydrenv::render::Templates::embedded().unwrap();
    for (variable, value, literal) in cases {
        let mut env = crate::support::minimal(literal);
        env.insert((*variable).to_owned(), (*value).to_owned());
        let from_vault = std::collections::BTreeSet::from([(*variable).to_owned()]);
        let hidden = std::collections::BTreeSet::from([*variable]);
        let read = |errors: Vec<hydrenv::env::EnvError>| {
            errors.iter().map(|e| format!("{e}\n")).collect::<String>()
        };
        let mut problems = match hydrenv::app::render(&env, &from_vault, &templates) {
            Ok(_) => panic!("{variable}={value:?} was accepted"),
            Err(failure) => failure.to_string(),
        };
        problems.push_str(&read(hydrenv::settings::read(&env, &hidden).unwrap_err()));
        problems.push_str(&read(
            hydrenv::settings::read_shown(&env, &hidden).unwrap_err(),
        ));
        let named = problems.lines().any(|line| {
            line.contains(&format!("{variable}: "))
                && line.contains(&format!("`<redacted:{variable}>`"))
        });
        assert!(
            named,
            "{variable}={value:?}: expected {variable} and its placeholder in {problems}"
        );
        let lowercase = problems.to_ascii_lowercase();
        assert!(
            !lowercase.contains(&MARK.to_ascii_lowercase()) && !lowercase.contains("99999999999"),
            "{variable}={value:?}: the value is quoted: {problems}"
        );
    }
}
