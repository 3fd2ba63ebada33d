//! The gateway config schema: THE definition of what `gateway.yaml` may say.
//!
//! `raw` mirrors the file (serde, unknown fields rejected); each section lives with its owner,
//! which holds its raw type, its runtime type, its defaults (`DEFAULT_*`) and its `resolve`: the
//! modules here for listeners, upstream, balancer, backends and log, the stages for their own
//! sections (`stages::auth::config` for `clients`, `stages::affinity::config` for `responses`).
//! hydrenv depends on this module to validate what it renders, so the proxy and its config
//! generator can never disagree.

pub mod backends;
pub mod balancer;
mod duration;
pub mod log;
mod problems;
pub mod raw;
mod resolve;
pub mod server;
pub mod upstream;

use std::path::Path;

pub use backends::BackendConfig;
pub use balancer::{BalancerConfig, HashOn};
pub use duration::parse_duration;
pub use log::LogConfig;
pub use problems::{A_YEAR, Problems};
pub use server::ServerConfig;
pub use upstream::{ActiveHealth, FailoverTriggers, PassiveHealth, UpstreamConfig};

pub use crate::stages::affinity::config::ResponsesConfig;
pub use crate::stages::auth::config::{ClientsConfig, ConsumerConfig, Lane};
pub use crate::stages::cache::config::CacheConfig;
pub use crate::stages::limits::config::{
    Failure, LimitKey, LimitsConfig, QuotaConfig, RateLimitConfig, RedisConfig, Strategy,
    TokenLimitConfig,
};

/// The only schema version this build understands.
pub const CONFIG_VERSION: u32 = 1;

/// A fully validated gateway configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub balancer: BalancerConfig,
    /// Never empty.
    pub backends: Vec<BackendConfig>,
    pub clients: ClientsConfig,
    pub responses: ResponsesConfig,
    pub limits: LimitsConfig,
    /// None: no response cache.
    pub cache: Option<CacheConfig>,
    pub log: LogConfig,
}

/// Why a config file was refused. Messages start with the file name and name the field path.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: {}", problems.join(&format!("\n{file}: ")))]
    Invalid { file: String, problems: Vec<String> },
}

impl GatewayConfig {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Self::parse(&file, &text)
    }

    /// Parses and validates config text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, ConfigError> {
        let raw = parse_raw(file, text)?;
        resolve::resolve(raw).map_err(|problems| ConfigError::Invalid {
            file: file.to_owned(),
            problems,
        })
    }

    /// Backends sorted into tiers: highest priority first, config order inside a tier.
    pub fn tiers(&self) -> Vec<Vec<usize>> {
        let mut priorities: Vec<i64> = self.backends.iter().map(|b| b.priority).collect();
        priorities.sort_unstable_by(|a, b| b.cmp(a));
        priorities.dedup();
        priorities
            .into_iter()
            .map(|p| {
                (0..self.backends.len())
                    .filter(|&i| self.backends[i].priority == p)
                    .collect()
            })
            .collect()
    }
}

fn parse_raw(file: &str, text: &str) -> Result<raw::RawConfig, ConfigError> {
    let parse_error = |message: String| ConfigError::Parse {
        file: file.to_owned(),
        message,
    };
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize::<_, raw::RawConfig>(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            <serde_saphyr::Error as serde::de::Error>::custom(if path == "." {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            })
        })
    });
    result.map_err(|e| parse_error(first_line(&e.to_string())))
}

/// serde-saphyr appends a source snippet after the message; the first line carries the path.
fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_owned()
}

/// The JSON Schema of the config file, as exported to `docs/gateway-config.schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(raw::RawConfig);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> String {
        match GatewayConfig::parse("gateway.yaml", yaml) {
            Ok(_) => String::new(),
            Err(error) => error.to_string(),
        }
    }

    fn backend(fields: &str) -> String {
        format!("version: 1\nbackends:\n  - {{ name: a, {fields} }}\n")
    }

    #[test]
    fn endpoints_and_keys_that_cannot_be_used_as_given_are_refused_without_printing_them() {
        let refused = [
            (
                backend("endpoint: 'http://user:pw-SECRET@eus.example', auth: { mode: api-key, api_key: k }"),
                "backends[0].endpoint: must not carry user info",
            ),
            (
                backend("endpoint: 'https://eus.example/?x=1', auth: { mode: api-key, api_key: k }"),
                "backends[0].endpoint: `https://eus.example/` has a query",
            ),
            (
                backend("endpoint: 'https://eus.example/openai?api-key=SECRET', auth: { mode: api-key, api_key: k }"),
                "backends[0].endpoint: `https://eus.example/openai` has a query",
            ),
            (
                backend("endpoint: 'https://eus.example:8443?sig=SECRET#frag', auth: { mode: api-key, api_key: k }"),
                "backends[0].endpoint: `https://eus.example:8443` has a query",
            ),
            (
                backend("endpoint: 'user:pass-SECRET@eus.example', auth: { mode: api-key, api_key: k }"),
                "backends[0].endpoint: `***@eus.example` is a relative URL",
            ),
            (
                backend("endpoint: 'https://user:pass-SECRET@eus example', auth: { mode: api-key, api_key: k }"),
                "backends[0].endpoint: `https://***@eus example` is not a URL",
            ),
            (
                // A password holding `/` cannot be told from a path: nothing but the scheme.
                backend("endpoint: 'https://user:pa/ss-SECRET@eus example', auth: { mode: api-key, api_key: k }"),
                "backends[0].endpoint: `https://***` is not a URL",
            ),
            (
                backend("endpoint: 'ftp://eus.example', auth: { mode: api-key, api_key: k }"),
                "backends[0].endpoint: scheme `ftp` is not http or https",
            ),
            (
                backend("endpoint: 'https://eus.example', auth: { mode: api-key, api_key: \"sk-SECRET\\n\" }"),
                "backends[0].auth.api_key: contains a control character (a trailing newline",
            ),
            (
                backend("endpoint: 'https://eus.example', auth: { mode: api-key, api_key: ' sk-SECRET' }"),
                "backends[0].auth.api_key: starts or ends with whitespace",
            ),
            (
                "version: 1\nbackends:\n  - { name: 'e us', endpoint: 'https://x', auth: { mode: api-key, api_key: k } }\n".to_owned(),
                "backends[0].name: must be non-empty visible ASCII",
            ),
            (
                "version: 1\nbackends:\n  - { name: 'é', endpoint: 'https://x', auth: { mode: api-key, api_key: k } }\n".to_owned(),
                "backends[0].name: must be non-empty visible ASCII",
            ),
            (
                format!("{}clients:\n  consumers:\n    - {{ name: c, key: \"ck-SECRET\\t1\" }}\n", backend("endpoint: 'https://x', auth: { mode: api-key, api_key: k }")),
                "clients.consumers[0].key: contains a control character",
            ),
            (
                format!("{}clients:\n  consumers:\n    - {{ name: c, key: 'ck-SECRET 1' }}\n", backend("endpoint: 'https://x', auth: { mode: api-key, api_key: k }")),
                "clients.consumers[0].key: contains whitespace",
            ),
        ];
        for (yaml, expected) in refused {
            let shown = problems(&yaml);
            assert!(shown.contains(expected), "{yaml}\n---\n{shown}");
            assert!(!shown.contains("SECRET"), "{shown}");
        }
    }

    #[test]
    fn a_parsed_config_never_prints_its_keys() {
        let yaml = format!(
            "{}clients:\n  consumers:\n    - {{ name: c, key: ck-SECRET-2 }}\n",
            backend("endpoint: 'https://x', auth: { mode: api-key, api_key: sk-SECRET-1 }")
        );
        let shown = format!("{:?}", parse_raw("gateway.yaml", &yaml).unwrap());
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(!shown.contains("SECRET"), "{shown}");
        let config = GatewayConfig::parse("gateway.yaml", &yaml).unwrap();
        assert_eq!(config.backends[0].api_key.expose(), "sk-SECRET-1");
        assert_eq!(config.clients.consumers[0].key.expose(), "ck-SECRET-2");
    }

    #[test]
    fn closed_sets_of_values_are_enums_named_in_errors_and_in_the_schema() {
        for (field, yaml, known) in [
            (
                "balancer.algorithm",
                "balancer: { algorithm: fastest }\n",
                "expected one of roundrobin, chash",
            ),
            (
                "balancer.hash_on",
                "balancer: { algorithm: chash, hash_on: ip }\n",
                "vars",
            ),
            (
                "upstream.failover_on[1]",
                "upstream: { failover_on: [http_429, http_4xx] }\n",
                "connect_error",
            ),
            ("log.level", "log: { level: loud }\n", "debug"),
            (
                "clients.consumers[0].lane",
                "clients: { consumers: [{ name: c, key: k, lane: middle }] }\n",
                "low",
            ),
        ] {
            let yaml = format!(
                "{}{yaml}",
                backend("endpoint: 'https://x', auth: { mode: api-key, api_key: k }")
            );
            let shown = problems(&yaml);
            assert!(
                shown.contains(field) && shown.contains(known),
                "{field}: {shown}"
            );
        }
        let shown = problems(&backend(
            "endpoint: 'https://x', auth: { mode: aad, api_key: k }",
        ));
        assert!(
            shown.contains("backends[0].auth.mode") && shown.contains("api-key"),
            "{shown}"
        );
        let schema = json_schema();
        for values in [
            r#""roundrobin""#,
            r#""chash""#,
            r#""api-key""#,
            r#""entra""#,
            r#""high""#,
            r#""low""#,
            r#""http_429""#,
            r#""http_5xx""#,
            r#""connect_error""#,
            r#""timeout""#,
        ] {
            assert!(schema.contains(values), "{values} not in the schema");
        }
    }

    #[test]
    fn durations_beyond_what_they_can_mean_are_refused_by_name() {
        let base = backend("endpoint: 'https://eus.example', auth: { mode: api-key, api_key: k }");
        let refused = [
            // The in-process stores panic beyond 1000 years; a year is the bound.
            (
                "cache: { ttl: 9000000h }\n",
                "cache.ttl: must be at most 366 days",
            ),
            (
                "responses: { affinity_ttl: 9000000h }\n",
                "responses.affinity_ttl: must be at most 366 days",
            ),
            (
                "limits:\n  quota: { window: 1h, requests: 5 }\n  redis: { url: 'redis://localhost', timeout: 11s }\n",
                "limits.redis.timeout: must be at most 10s, the longest a request may wait for Redis",
            ),
            (
                "limits:\n  quota: { window: 367d, requests: 5 }\n",
                "limits.quota.window: `367d` has an unknown unit",
            ),
            (
                "limits:\n  quota: { window: 8785h, requests: 5 }\n",
                "limits.quota.window: must be at most 366 days",
            ),
        ];
        for (section, expected) in refused {
            let text = problems(&format!("{base}{section}"));
            assert!(text.contains(expected), "{section}: {text}");
        }
        for section in [
            "cache: { ttl: 8784h }\n",
            "limits:\n  quota: { window: 8784h, requests: 5 }\n  redis: { url: 'redis://localhost', timeout: 10s }\n",
        ] {
            assert_eq!(problems(&format!("{base}{section}")), "", "{section}");
        }
    }
}
