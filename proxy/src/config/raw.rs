//! The gateway config file as written: `Raw*` types that mirror the YAML one to one.
//!
//! Every struct rejects unknown fields so a typo is an error, not a silently ignored setting.
//! Nothing here is used at run time; [`super::resolve`] turns these into runtime types.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

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
    /// Logging.
    #[serde(default)]
    pub log: RawLog,
}

/// `server`: listeners and request limits.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address of the API listener (HTTP/1.1 and h2c). Default `0.0.0.0:8080`.
    pub listen: Option<String>,
    /// Address of the admin listener (`/healthz`, `/readyz`, `/metrics`). Default `0.0.0.0:9091`.
    pub admin_listen: Option<String>,
    /// Largest request body accepted (bytes); larger bodies get 413. Default 16 MiB.
    pub max_body_bytes: Option<u64>,
    /// How long SIGTERM waits for in-flight requests and streams. Default `30s`.
    pub drain_timeout: Option<String>,
    /// How long an idle client connection is kept open for its next request. Default `75s`.
    pub keepalive_timeout: Option<String>,
    /// Longest a client may take to send a whole request head once it began it, or stay silent
    /// while sending a body (both answered 408), or leave an answer unread (the connection is
    /// closed). Default `60s`.
    pub client_timeout: Option<String>,
    /// Enables the test-prefixed route aliases (`/round-robin-simple/openai/...`). Default false.
    pub test_mode: Option<bool>,
}

/// `upstream`: attempts, timeouts, cooldowns, health.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// Time allowed to open a TCP+TLS connection to a backend. Default `60s`.
    pub connect_timeout: Option<String>,
    /// Time to send a request to a backend and receive its response headers. Default `300s`.
    pub send_timeout: Option<String>,
    /// Longest silence while reading a backend response (headers or between body bytes). Default `300s`.
    pub read_timeout: Option<String>,
    /// Deadline for the whole attempt phase of one request (until the response is committed). Default `240s`.
    pub request_deadline: Option<String>,
    /// Most backends tried for one request. Default: the number of backends.
    pub max_attempts: Option<u32>,
    /// Which failures move a request to the next backend: `http_429`, `http_5xx`, `connect_error`, `timeout`.
    /// Default all four.
    pub failover_on: Option<Vec<String>>,
    /// Cooldown after a 429 that carries no retry hint. Default `10s`.
    pub default_cooldown: Option<String>,
    /// Ask streaming chat backends for a usage chunk (`stream_options.include_usage`) for accounting, and
    /// hide it from clients that did not ask for it. Default true.
    pub stream_usage: Option<bool>,
    /// Passive health: consecutive connect errors / 5xx that mark a backend unhealthy.
    #[serde(default)]
    pub passive_health: RawPassiveHealth,
    /// Active health checks.
    #[serde(default)]
    pub active_health: RawActiveHealth,
}

/// `upstream.passive_health`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPassiveHealth {
    /// Consecutive failures (connect errors, timeouts, 5xx) before the backend is marked unhealthy.
    /// Default 3; 0 disables passive health.
    pub failures: Option<u32>,
    /// How long a passively unhealthy backend is skipped. Default `30s`.
    pub unhealthy_for: Option<String>,
}

/// `upstream.active_health`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawActiveHealth {
    /// Run active checks. Default false.
    pub enabled: Option<bool>,
    /// `http` or `https`; replaces the scheme of the backend endpoint for checks. Default: the endpoint's.
    pub scheme: Option<String>,
    /// Path probed with GET (the backend's api-key is sent). Default `/openai/v1/models`.
    pub path: Option<String>,
    /// Timeout of one probe. Default `1s`.
    pub timeout: Option<String>,
    /// Interval between probes of a healthy backend. Default `10s`.
    pub healthy_interval: Option<String>,
    /// Interval between probes of an unhealthy backend. Default `5s`.
    pub unhealthy_interval: Option<String>,
    /// Statuses that mark the backend unhealthy. Default 401, 403, 429, 500, 502, 503, 504.
    pub unhealthy_statuses: Option<Vec<u16>>,
    /// Verify the TLS certificate of https probes. Default true; false is rejected (not supported).
    pub verify_cert: Option<bool>,
}

/// `balancer`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBalancer {
    /// `roundrobin` (smooth weighted) or `chash` (consistent hashing with bounded load). Default `roundrobin`.
    pub algorithm: Option<String>,
    /// For `chash`: `consumer`, `header`, `cookie` or `vars` (`remote_addr`).
    pub hash_on: Option<String>,
    /// For `chash` with `header`/`cookie`/`vars`: the header name, cookie name or variable (`remote_addr`).
    pub hash_key: Option<String>,
    /// For `chash`: a backend takes at most this factor times the average in-flight load. Default 1.25.
    pub bounded_load: Option<f64>,
}

/// One entry of `backends`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    /// Unique id used in metrics, logs and `x-gateway-backend`.
    pub name: String,
    /// Base URL, e.g. `https://eus.openai.azure.com` (any path is ignored).
    pub endpoint: String,
    /// Priority tier; higher is tried first. Default 5.
    pub priority: Option<i64>,
    /// Weight inside the tier; 0 = only by affinity. Default 1.
    pub weight: Option<u32>,
    /// How the gateway authenticates to this backend.
    pub auth: RawBackendAuth,
    /// Deployment aliases: `alias: real-deployment`. Rewrites the legacy deployment segment and the v1 `model`.
    #[serde(default)]
    pub deployments: BTreeMap<String, String>,
    /// Forces this `api-version` on legacy paths sent to this backend.
    pub api_version: Option<String>,
}

/// `backends[].auth`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBackendAuth {
    /// `api-key` (only mode in this build).
    pub mode: String,
    /// The backend's api-key (secret).
    pub api_key: Option<String>,
}

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
    pub key: String,
    /// Default lane: `high` or `low`. Default `high`.
    pub lane: Option<String>,
}

/// `responses`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawResponses {
    /// How long a response id stays pinned to its backend. Default `86400s`.
    pub affinity_ttl: Option<String>,
    /// Most response ids remembered (in-process store). Default 100000.
    pub affinity_capacity: Option<u64>,
}

/// `log`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `error`, `warn`, `info`, `debug`. Default `info`.
    pub level: Option<String>,
    /// One JSON access record per request. Default false.
    pub access: Option<bool>,
    /// Lines queued for stdout at most; when stdout is not read fast enough, further lines are
    /// dropped (and counted) instead of stalling requests. Read at start only. Default 8192.
    pub queue_lines: Option<u32>,
}
