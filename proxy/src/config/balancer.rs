//! `balancer`: how a backend is chosen inside a priority tier.

use schemars::JsonSchema;
use serde::Deserialize;

use super::Problems;

pub const DEFAULT_BOUNDED_LOAD: f64 = 1.25;

/// `balancer`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBalancer {
    /// Default `roundrobin`.
    pub algorithm: Option<RawAlgorithm>,
    /// For `chash`: what is hashed. Default `consumer`.
    pub hash_on: Option<RawHashOn>,
    /// For `chash` with `header`/`cookie`/`vars`: the header name, cookie name or variable (`remote_addr`).
    pub hash_key: Option<String>,
    /// For `chash`: a backend takes at most this factor times the average in-flight load. Default 1.25.
    pub bounded_load: Option<f64>,
}

/// A balancing algorithm.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawAlgorithm {
    /// Smooth weighted round-robin.
    Roundrobin,
    /// Consistent hashing with bounded load.
    Chash,
}

/// What a consistent-hash balancer hashes.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawHashOn {
    /// The consumer's name.
    Consumer,
    /// A request header named by `hash_key`.
    Header,
    /// A cookie named by `hash_key`.
    Cookie,
    /// A request variable named by `hash_key` (`remote_addr`).
    Vars,
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

pub(super) fn resolve(raw: RawBalancer, problems: &mut Problems) -> BalancerConfig {
    let RawBalancer {
        algorithm,
        hash_on,
        hash_key,
        bounded_load,
    } = raw;
    match algorithm.unwrap_or(RawAlgorithm::Roundrobin) {
        RawAlgorithm::Roundrobin => BalancerConfig::RoundRobin,
        RawAlgorithm::Chash => {
            let bounded_load = bounded_load.unwrap_or(DEFAULT_BOUNDED_LOAD);
            if !(bounded_load >= 1.0 && bounded_load.is_finite()) {
                problems.push("balancer.bounded_load", "must be a number >= 1.0");
            }
            let key = hash_key.filter(|k| !k.trim().is_empty());
            let mut need_key = || {
                problems.push(
                    "balancer.hash_key",
                    "required when hash_on is header, cookie or vars",
                );
                HashOn::Consumer
            };
            let on = match (hash_on.unwrap_or(RawHashOn::Consumer), key) {
                (RawHashOn::Consumer, _) => HashOn::Consumer,
                (_, None) => need_key(),
                (RawHashOn::Header, Some(key)) => match http::HeaderName::try_from(key) {
                    Ok(name) => HashOn::Header(name),
                    Err(_) => {
                        problems.push("balancer.hash_key", "not a valid header name");
                        HashOn::Consumer
                    }
                },
                (RawHashOn::Cookie, Some(key)) => HashOn::Cookie(key),
                (RawHashOn::Vars, Some(key)) if key == "remote_addr" => HashOn::RemoteAddr,
                (RawHashOn::Vars, Some(other)) => {
                    problems.push(
                        "balancer.hash_key",
                        format!("unsupported variable `{other}` (supported: remote_addr)"),
                    );
                    HashOn::Consumer
                }
            };
            BalancerConfig::ConsistentHash { on, bounded_load }
        }
    }
}
