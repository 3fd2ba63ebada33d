//! Every kind of bad input of `spec/hydrenv.md`: a clear message naming the culprit, the right
//! exit code, and the previous release and `current` untouched.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::*;

mod guardrails;

/// A shared root with one good release already in place.
fn with_release() -> (tempfile::TempDir, BTreeMap<String, String>) {
    let root = tempfile::tempdir().unwrap();
    let mut vars = minimal(&[]);
    vars.insert("SHARED_ROOT".into(), root.path().display().to_string());
    let out = hydrenv(&["render"], &vars);
    assert!(out.status.success(), "{}", stderr(&out));
    (root, vars)
}

/// Runs `render` with changed variables; checks exit code, message and that nothing moved.
fn rejects(changes: &[(&str, Option<&str>)], code: i32, expected: &[&str]) {
    let (root, mut vars) = with_release();
    for (k, v) in changes {
        match v {
            Some(v) => vars.insert((*k).to_owned(), (*v).to_owned()),
            None => vars.remove(*k),
        };
    }
    let before = tree(root.path());
    let out = hydrenv(&["render"], &vars);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    for e in expected {
        assert!(err.contains(e), "expected `{e}` in:\n{err}");
    }
    assert!(
        !err.contains("sk-backend-0-secret"),
        "secret in error: {err}"
    );
    assert_eq!(tree(root.path()), before, "the previous release changed");
    // `check` agrees.
    let check = hydrenv(&["check"], &vars);
    assert_eq!(check.status.code(), Some(code));
}

#[test]
fn missing_endpoint_for_a_backend_index() {
    rejects(
        &[("AZURE_OPENAI_KEY_3", Some("k3"))],
        64,
        &[
            "AZURE_OPENAI_ENDPOINT_3: missing: backend 3 is configured (AZURE_OPENAI_KEY_3 is set) but has no endpoint",
        ],
    );
}

#[test]
fn no_backend_at_all() {
    rejects(
        &[
            ("AZURE_OPENAI_ENDPOINT_0", None),
            ("AZURE_OPENAI_KEY_0", None),
        ],
        64,
        &["AZURE_OPENAI_ENDPOINT_0: no backend configured"],
    );
}

#[test]
fn gap_in_client_indexes() {
    rejects(
        &[
            ("GATEWAY_CLIENT_NAME_0", Some("a")),
            ("GATEWAY_CLIENT_KEY_0", Some("ka")),
            ("GATEWAY_CLIENT_NAME_2", Some("c")),
            ("GATEWAY_CLIENT_KEY_2", Some("kc")),
        ],
        64,
        &["client indexes must be contiguous from 0: index 1 is missing before 2"],
    );
}

#[test]
fn partial_client_group() {
    rejects(
        &[("GATEWAY_CLIENT_NAME_0", Some("a"))],
        64,
        &["GATEWAY_CLIENT_KEY_0: missing: client 0 needs a key"],
    );
}

#[test]
fn require_auth_without_clients() {
    rejects(
        &[("GATEWAY_REQUIRE_AUTH", Some("true"))],
        64,
        &["GATEWAY_REQUIRE_AUTH: true, but no client is configured"],
    );
}

#[test]
fn bad_boolean_and_bad_number_are_reported_together() {
    rejects(
        &[
            ("GATEWAY_E2E_TEST_MODE", Some("maybe")),
            ("AZURE_OPENAI_WEIGHT_0", Some("heavy")),
            ("AI_PROXY_READ_TIMEOUT", Some("5 minutes")),
            ("GATEWAY_SLOW_CLIENT_TIMEOUT", Some("soon")),
            ("AI_PROXY_CONNECT_TIMEOUT", Some("0")),
            ("AI_PROXY_SEND_TIMEOUT", Some("0.0004")),
        ],
        64,
        &[
            "GATEWAY_E2E_TEST_MODE: `maybe` is not a boolean",
            "AZURE_OPENAI_WEIGHT_0: `heavy` is not a whole number",
            "AI_PROXY_READ_TIMEOUT: ",
            "GATEWAY_SLOW_CLIENT_TIMEOUT: `soon`",
            "AI_PROXY_CONNECT_TIMEOUT: must be at least 1 ms",
            "AI_PROXY_SEND_TIMEOUT: must be at least 1 ms",
        ],
    );
}

#[test]
fn process_wide_limits_must_be_positive_whole_numbers() {
    rejects(
        &[
            ("GATEWAY_MAX_CONNECTIONS", Some("0")),
            ("GATEWAY_MAX_BUFFERED_BODY_BYTES", Some("1.5e9")),
        ],
        64,
        &[
            "GATEWAY_MAX_CONNECTIONS: must be greater than 0",
            "GATEWAY_MAX_BUFFERED_BODY_BYTES: `1.5e9` is not a whole number",
        ],
    );
}

#[test]
fn passive_health_numbers_are_strict() {
    for (failures, seconds, expected) in [
        (
            "three",
            "0",
            [
                "AI_PROXY_PASSIVE_HEALTH_FAILURES: `three` is not a whole number",
                "AI_PROXY_UNHEALTHY_SECONDS: must be at least 1 ms",
            ],
        ),
        (
            "-1",
            "soon",
            [
                "AI_PROXY_PASSIVE_HEALTH_FAILURES: `-1` is not a whole number",
                "AI_PROXY_UNHEALTHY_SECONDS: `soon`",
            ],
        ),
        (
            "1e3",
            "0.0001",
            [
                "AI_PROXY_PASSIVE_HEALTH_FAILURES: `1e3` is not a whole number",
                "AI_PROXY_UNHEALTHY_SECONDS: must be at least 1 ms",
            ],
        ),
        (
            "5000000000",
            "-5",
            [
                "AI_PROXY_PASSIVE_HEALTH_FAILURES: `5000000000` is too large (at most 4294967295)",
                "AI_PROXY_UNHEALTHY_SECONDS: `-5` is negative",
            ],
        ),
    ] {
        rejects(
            &[
                ("AI_PROXY_PASSIVE_HEALTH_FAILURES", Some(failures)),
                ("AI_PROXY_UNHEALTHY_SECONDS", Some(seconds)),
            ],
            64,
            &expected,
        );
    }
}

#[test]
fn unknown_group_key_suggests_the_closest() {
    rejects(
        &[("AZURE_OPENAI_WIEGHT_0", Some("2"))],
        64,
        &["AZURE_OPENAI_WIEGHT_0: unknown key `WIEGHT` (did you mean AZURE_OPENAI_WEIGHT_0?)"],
    );
}

#[test]
fn chash_without_key() {
    rejects(
        &[("LB_ALG", Some("chash")), ("LB_HASH_ON", Some("header"))],
        64,
        &["LB_HASH_KEY: required when LB_HASH_ON=header"],
    );
}

#[test]
fn oidc_on_with_a_missing_value_is_refused() {
    rejects(
        &[
            ("ENABLE_OIDC", Some("true")),
            ("OIDC_CLIENT_ID", Some("abc")),
        ],
        64,
        &[
            "ENABLE_OIDC: not built in this version yet (OIDC client authentication)",
            "OIDC_CLIENT_ID: not built in this version yet (OIDC client authentication)",
        ],
    );
}

#[test]
fn ip_restriction_on_with_empty_lists_is_refused() {
    rejects(
        &[("ENABLE_IP_RESTRICTION", Some("true"))],
        64,
        &["ENABLE_IP_RESTRICTION: not built in this version yet (IP restriction)"],
    );
}

#[test]
fn duplicate_backend_names_and_entra_mode() {
    rejects(
        &[
            ("AZURE_OPENAI_ENDPOINT_1", Some("https://x")),
            ("AZURE_OPENAI_KEY_1", Some("k")),
            ("AZURE_OPENAI_NAME_0", Some("same")),
            ("AZURE_OPENAI_NAME_1", Some("same")),
            ("AZURE_OPENAI_AUTH_MODE_1", Some("entra")),
        ],
        64,
        &[
            "AZURE_OPENAI_NAME_1: backend name `same` is already used by AZURE_OPENAI_NAME_0",
            "AZURE_OPENAI_AUTH_MODE_1: `entra`",
        ],
    );
}

#[test]
fn bad_endpoints_are_refused_naming_the_variable() {
    rejects(
        &[
            ("AZURE_OPENAI_ENDPOINT_0", Some("eus.openai.azure.com")),
            (
                "AZURE_OPENAI_ENDPOINT_2",
                Some("http://user:pw-9c1e@wus.example"),
            ),
            ("AZURE_OPENAI_KEY_2", Some("k2")),
            ("AZURE_OPENAI_ENDPOINT_5", Some("not a url")),
            ("AZURE_OPENAI_KEY_5", Some("k5")),
            (
                "AZURE_OPENAI_ENDPOINT_6",
                Some("https://swc.example/?api-version=1"),
            ),
            ("AZURE_OPENAI_KEY_6", Some("k6")),
            (
                "AZURE_OPENAI_ENDPOINT_8",
                Some("https://swc.example/openai?api-key=sk-backend-0-secret"),
            ),
            ("AZURE_OPENAI_KEY_8", Some("k8")),
            ("AZURE_OPENAI_ENDPOINT_7", Some("ftp://swc.example")),
            ("AZURE_OPENAI_KEY_7", Some("k7")),
        ],
        64,
        &[
            "AZURE_OPENAI_ENDPOINT_0: `eus.openai.azure.com` is not a URL like https://",
            "AZURE_OPENAI_ENDPOINT_2: `http://***@wus.example` carries a user name or password",
            "AZURE_OPENAI_ENDPOINT_5: `not a url` is not a URL",
            // The query is never quoted: it may hold a key.
            "AZURE_OPENAI_ENDPOINT_6: `https://swc.example/` has a query",
            "AZURE_OPENAI_ENDPOINT_7: `ftp://swc.example`: the scheme must be http or https",
            "AZURE_OPENAI_ENDPOINT_8: `https://swc.example/openai` has a query",
        ],
    );
}

#[test]
fn userinfo_in_an_endpoint_is_never_printed() {
    let vars = minimal(&[("AZURE_OPENAI_ENDPOINT_0", "http://user:pw-9c1e@eus.example")]);
    for args in [&["check"][..], &["explain"], &["render", "--dry-run"]] {
        let out = hydrenv(args, &vars);
        let text = stdout(&out) + &stderr(&out);
        assert!(!text.contains("pw-9c1e"), "{args:?}: {text}");
        assert!(text.contains("http://***@eus.example"), "{args:?}: {text}");
    }
}

#[test]
fn values_that_cannot_be_sent_are_refused_naming_each_variable() {
    rejects(
        &[
            // `echo secret > file`: the newline used to go out as an empty api-key (401s).
            ("AZURE_OPENAI_KEY_0", Some("sk-backend-0-secret\n")),
            ("AZURE_OPENAI_NAME_0", Some("east us")),
            ("AZURE_OPENAI_DEPLOYMENTS_0", Some("gpt 4o=gpt-4o")),
            ("AZURE_OPENAI_WEIGHT_0", Some("5000000000")),
            ("GATEWAY_CLIENT_NAME_0", Some("a")),
            ("GATEWAY_CLIENT_KEY_0", Some("ck sk-backend-0-secret")),
            ("GATEWAY_CLIENT_NAME_1", Some("b")),
            ("GATEWAY_CLIENT_KEY_1", Some("sk-backend-0-secret\u{7}")),
        ],
        64,
        &[
            "AZURE_OPENAI_KEY_0: ends with a line break, so it cannot be sent in the api-key header (every request would get 401); a trailing newline usually comes from `echo`",
            "AZURE_OPENAI_NAME_0: `east us` must be visible ASCII without spaces: it is sent in the x-gateway-backend header",
            "AZURE_OPENAI_DEPLOYMENTS_0: `gpt 4o=gpt-4o`: an alias and a deployment are names without spaces",
            "AZURE_OPENAI_WEIGHT_0: `5000000000` is too large (at most 4294967295)",
            "GATEWAY_CLIENT_KEY_0: contains whitespace, so no client could ever present it",
            "GATEWAY_CLIENT_KEY_1: contains a control character",
        ],
    );
}

/// Values hydrenv passes on and the proxy's parser refuses: reported by the variable, with the
/// config path after (backend 5 is `backends[1]`: indexes have gaps).
#[test]
fn proxy_parser_problems_name_the_variable() {
    rejects(
        &[
            ("AZURE_OPENAI_ENDPOINT_5", Some("https://wus.example")),
            ("AZURE_OPENAI_KEY_5", Some("k5")),
            ("AZURE_OPENAI_API_VERSION_5", Some("2024_10_21")),
            ("AZURE_OPENAI_WEIGHT_0", Some("0")),
            ("AZURE_OPENAI_WEIGHT_5", Some("0")),
            ("GATEWAY_LISTEN", Some("nope")),
            ("GATEWAY_CLIENT_NAME_0", Some("team")),
            ("GATEWAY_CLIENT_KEY_0", Some("ck-shared")),
            ("GATEWAY_CLIENT_NAME_1", Some("team")),
            ("GATEWAY_CLIENT_KEY_1", Some("ck-shared")),
            ("LB_ALG", Some("chash")),
            ("LB_HASH_ON", Some("header")),
            ("LB_HASH_KEY", Some("x(session)")),
            ("APISIX_ACTIVE_HEALTH_CHECKS", Some("on")),
            (
                "APISIX_ACTIVE_HEALTH_CHECK_PATH",
                Some("/openai/v1/mo dels"),
            ),
        ],
        64,
        &[
            "error: GATEWAY_LISTEN: `nope` is not an address like `0.0.0.0:8080` (gateway.yaml: server.listen)",
            "error: AZURE_OPENAI_API_VERSION_5: `2024_10_21` is not an api-version (gateway.yaml: backends[1].api_version)",
            "error: AZURE_OPENAI_WEIGHT_0, AZURE_OPENAI_WEIGHT_5: every backend has weight 0: none could ever be picked (gateway.yaml: backends)",
            "error: GATEWAY_CLIENT_NAME_1: `team` is used by another consumer (gateway.yaml: clients.consumers[1].name)",
            "error: GATEWAY_CLIENT_KEY_1: the same key is given to another consumer (gateway.yaml: clients.consumers[1].key)",
            "error: LB_HASH_KEY: not a valid header name (gateway.yaml: balancer.hash_key)",
            "error: APISIX_ACTIVE_HEALTH_CHECK_PATH: `/openai/v1/mo dels` is not an absolute path (gateway.yaml: upstream.active_health.path)",
        ],
    );
}

fn templates_dir(gateway: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.yaml.tera"), gateway).unwrap();
    std::fs::write(
        dir.path().join("otel-collector.yaml.tera"),
        hydrenv::render::MANIFEST[1].2,
    )
    .unwrap();
    dir
}

fn rejects_templates(dir: &Path, expected: &str) {
    let (root, vars) = with_release();
    let before = tree(root.path());
    let out = hydrenv(&["render", "--templates", dir.to_str().unwrap()], &vars);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains(expected), "{}", stderr(&out));
    assert_eq!(tree(root.path()), before);
}

#[test]
fn template_syntax_error() {
    let dir = templates_dir("version: 1\n{% for b in backends %}\n");
    rejects_templates(dir.path(), "template gateway.yaml.tera:");
}

#[test]
fn template_with_an_undefined_variable() {
    let dir = templates_dir("version: {{ no_such_thing }}\n");
    rejects_templates(dir.path(), "no_such_thing");
}

#[test]
fn templates_dir_override_is_used() {
    let (root, vars) = with_release();
    let custom = hydrenv::render::MANIFEST[0]
        .2
        .replace("level: info", "level: debug");
    let dir = templates_dir(&custom);
    let out = hydrenv(
        &["render", "--templates", dir.path().to_str().unwrap()],
        &vars,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rendered = std::fs::read_to_string(root.path().join("current/gateway.yaml")).unwrap();
    assert!(rendered.contains("level: debug"));
}

#[test]
fn unwritable_shared_volume() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let mut vars = minimal(&[]);
    vars.insert(
        "SHARED_ROOT".into(),
        file.join("shared").display().to_string(),
    );
    let out = hydrenv(&["render"], &vars);
    assert_eq!(out.status.code(), Some(69));
    assert!(
        stderr(&out).contains("cannot write to the shared volume"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn current_pointing_at_garbage() {
    let (root, vars) = with_release();
    std::fs::remove_file(root.path().join("current")).unwrap();
    std::os::unix::fs::symlink("/etc", root.path().join("current")).unwrap();
    let before = tree(root.path());
    let mut changed = vars.clone();
    changed.insert("AZURE_OPENAI_WEIGHT_0".into(), "3".into());
    let out = hydrenv(&["render"], &changed);
    assert_eq!(out.status.code(), Some(69));
    assert!(
        stderr(&out).contains("`current` is not a symlink to a release (it points at /etc)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(tree(root.path()), before);
}
