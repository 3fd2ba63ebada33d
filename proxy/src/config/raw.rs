//! The gateway config file as written: the root `RawConfig`, whose sections are the `Raw*` types
//! of the modules that own them (`config/` for listeners, upstream, balancer, backends, log;
//! `stages/` for the stages' own sections). Every struct rejects unknown fields so a typo is an
//! error, not a silently ignored setting, and every closed set of values is an enum, so the
//! exported JSON Schema lists them. Nothing here is used at run time; [`super::resolve`] turns
//! these into runtime types.

use schemars::JsonSchema;
use serde::Deserialize;

pub use super::backends::{RawAuthMode, RawBackend, RawBackendAuth};
pub use super::balancer::{RawAlgorithm, RawBalancer, RawHashOn};
pub use super::log::{RawLevel, RawLog};
pub use super::server::RawServer;
pub use super::upstream::{RawActiveHealth, RawPassiveHealth, RawScheme, RawTrigger, RawUpstream};
pub use crate::stages::affinity::config::RawResponses;
pub use crate::stages::auth::config::{RawClients, RawConsumer, RawLane};
pub use crate::stages::cache::config::RawCache;
pub use crate::stages::limits::config::{
    RawFailure, RawLimitKey, RawLimits, RawQuota, RawRateLimit, RawRedis, RawStrategy,
    RawTokenLimit,
};

/// Root of `gateway.yaml`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Schema version of this file. Only `1` exists.
    pub version: u32,
    /// Listeners, body limit and shutdown behaviour.
    #[serde(default)]
    pub server: RawServer,
    /// Timeouts, failover triggers, cooldowns and health checking of backends.
    #[serde(default)]
    pub upstream: RawUpstream,
    /// How a backend is chosen inside a priority tier.
    #[serde(default)]
    pub balancer: RawBalancer,
    /// The Azure OpenAI deployments behind the gateway, in order.
    pub backends: Vec<RawBackend>,
    /// Client keys (consumers) and whether a key is required.
    #[serde(default)]
    pub clients: RawClients,
    /// Responses API affinity (response id -> backend that created it).
    #[serde(default)]
    pub responses: RawResponses,
    /// Request-rate limit, request and token quotas, token-aware limit; Redis to share them.
    #[serde(default)]
    pub limits: RawLimits,
    /// Exact-match response cache. Absent: off.
    pub cache: Option<RawCache>,
    /// Logging.
    #[serde(default)]
    pub log: RawLog,
}
