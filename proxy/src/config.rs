//! The gateway config schema: THE definition of what `gateway.yaml` may say.
//!
//! `raw` mirrors the file (serde, unknown fields rejected), `resolve` validates it and produces the
//! runtime types below, which are what the rest of the proxy uses. hydrenv depends on this module
//! to validate what it renders, so the proxy and its config generator can never disagree.

mod duration;
pub mod raw;
mod resolve;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};

use crate::secret::Secret;

pub use duration::parse_duration;

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
    pub log: LogConfig,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub max_body_bytes: u64,
    pub drain_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub client_timeout: Duration,
    pub test_mode: bool,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub connect_timeout: Duration,
    pub send_timeout: Duration,
    pub read_timeout: Duration,
    pub request_deadline: Duration,
    pub max_attempts: usize,
    pub failover: FailoverTriggers,
    pub default_cooldown: Duration,
    pub stream_usage: bool,
    pub passive_health: PassiveHealth,
    pub active_health: Option<ActiveHealth>,
}

/// Which failures move a request to the next backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailoverTriggers {
    pub http_429: bool,
    pub http_5xx: bool,
    pub connect_error: bool,
    pub timeout: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct PassiveHealth {
    /// 0 disables passive health.
    pub failures: u32,
    pub unhealthy_for: Duration,
}

#[derive(Debug, Clone)]
pub struct ActiveHealth {
    pub scheme: Option<Scheme>,
    pub path: PathAndQuery,
    pub timeout: Duration,
    pub healthy_interval: Duration,
    pub unhealthy_interval: Duration,
    pub unhealthy_statuses: Vec<u16>,
}

#[derive(Debug, Clone)]
pub enum BalancerConfig {
    RoundRobin,
    ConsistentHash { on: HashOn, bounded_load: f64 },
}

/// What a consistent-hash balancer hashes.
#[derive(Debug, Clone)]
pub enum HashOn {
    Consumer,
    Header(http::HeaderName),
    Cookie(String),
    RemoteAddr,
}

#[derive(Debug, Clone)]
pub struct BackendConfig {
    pub name: Arc<str>,
    pub scheme: Scheme,
    pub authority: Authority,
    pub priority: i64,
    pub weight: u32,
    pub api_key: Secret,
    /// alias -> real deployment name on this backend.
    pub deployments: HashMap<String, String>,
    pub api_version: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ClientsConfig {
    pub require_auth: bool,
    pub consumers: Vec<ConsumerConfig>,
}

/// Which lane a consumer's traffic uses by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    High,
    Low,
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub name: Arc<str>,
    pub key: Secret,
    pub lane: Lane,
}

#[derive(Debug, Clone)]
pub struct ResponsesConfig {
    pub affinity_ttl: Duration,
    pub affinity_capacity: u64,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub access: bool,
    /// Lines queued for stdout at most (read at start).
    pub queue_lines: usize,
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
