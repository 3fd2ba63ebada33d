//! `clients`: the consumers' keys and whether a key is required (the client-auth stage's config).

use std::collections::HashSet;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::Problems;
use crate::config::backends::unsendable;
use crate::secret::Secret;

/// `clients`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawClients {
    /// Reject requests without a valid client key. Default false.
    pub require_auth: Option<bool>,
    /// Known consumers.
    #[serde(default)]
    pub consumers: Vec<RawConsumer>,
}

/// One entry of `clients.consumers`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConsumer {
    /// Consumer name (metrics label, hash key).
    pub name: String,
    /// The key this consumer presents (secret).
    #[schemars(with = "String")]
    pub key: Secret,
    /// Default lane. Default `high`.
    pub lane: Option<RawLane>,
    /// Tokens (total) this consumer may spend per `limits.quota.window`. Absent: no quota.
    pub token_quota: Option<u64>,
}

/// A lane: standard (`high`) or deferrable (`low`) traffic.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawLane {
    High,
    Low,
}

#[derive(Debug, Clone)]
pub struct ClientsConfig {
    pub require_auth: bool,
    pub consumers: Vec<ConsumerConfig>,
}

/// Which lane a consumer's traffic uses by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    High,
    Low,
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub name: Arc<str>,
    pub key: Secret,
    pub lane: Lane,
    pub token_quota: Option<u64>,
}

pub fn resolve(raw: RawClients, problems: &mut Problems) -> ClientsConfig {
    let RawClients {
        require_auth,
        consumers,
    } = raw;
    let require_auth = require_auth.unwrap_or(false);
    if require_auth && consumers.is_empty() {
        problems.push(
            "clients.require_auth",
            "true, but clients.consumers is empty: no request could ever pass",
        );
    }
    let mut names = HashSet::new();
    let mut keys = HashSet::new();
    let mut out = Vec::with_capacity(consumers.len());
    for (i, consumer) in consumers.into_iter().enumerate() {
        let RawConsumer {
            name,
            key,
            lane,
            token_quota,
        } = consumer;
        let path = format!("clients.consumers[{i}]");
        if name.trim().is_empty() {
            problems.push(format!("{path}.name"), "must not be empty");
        } else if !names.insert(name.clone()) {
            problems.push(
                format!("{path}.name"),
                format!("`{name}` is used by another consumer"),
            );
        }
        // Never print the key itself.
        let text = key.expose();
        if text.is_empty() {
            problems.push(format!("{path}.key"), "must not be empty");
        } else if let Some(problem) = unsendable(text).or_else(|| {
            text.contains(char::is_whitespace)
                .then_some("contains whitespace: no client could present it")
        }) {
            problems.push(format!("{path}.key"), problem);
        } else if !keys.insert(text.to_owned()) {
            problems.push(
                format!("{path}.key"),
                "the same key is given to another consumer",
            );
        }
        if token_quota == Some(0) {
            problems.push(
                format!("{path}.token_quota"),
                "must be greater than 0 (a quota of 0 refuses everything)",
            );
        }
        out.push(ConsumerConfig {
            name: Arc::from(name),
            key,
            token_quota,
            lane: match lane.unwrap_or(RawLane::High) {
                RawLane::High => Lane::High,
                RawLane::Low => Lane::Low,
            },
        });
    }
    ClientsConfig {
        require_auth,
        consumers: out,
    }
}
