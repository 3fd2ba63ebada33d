//! `server`: listeners, request limits and shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::Problems;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_ADMIN_LISTEN: &str = "0.0.0.0:9091";
pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub const DEFAULT_MAX_BUFFERED_BODY_BYTES: u64 = 512 * 1024 * 1024;

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
    /// Client connections the API listener serves at once (over every worker); a connection
    /// past it gets 503 with `Retry-After` for its first request, then a close. Default 10000.
    pub max_connections: Option<usize>,
    /// Request-body bytes buffered at once by every request in flight; a request whose body
    /// would take the total past it gets 503 with `Retry-After`. Default 512 MiB.
    pub max_buffered_body_bytes: Option<u64>,
    /// Enables the test-prefixed route aliases (`/round-robin-simple/openai/...`). Default false.
    pub test_mode: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub max_body_bytes: u64,
    pub drain_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub client_timeout: Duration,
    pub max_connections: usize,
    pub max_buffered_body_bytes: u64,
    pub test_mode: bool,
}

pub(super) fn resolve(raw: RawServer, problems: &mut Problems) -> ServerConfig {
    let RawServer {
        listen,
        admin_listen,
        max_body_bytes,
        drain_timeout,
        keepalive_timeout,
        client_timeout,
        max_connections,
        max_buffered_body_bytes,
        test_mode,
    } = raw;
    let max_connections = max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 {
        problems.push("server.max_connections", "must be greater than 0");
    }
    let max_buffered_body_bytes =
        max_buffered_body_bytes.unwrap_or(DEFAULT_MAX_BUFFERED_BODY_BYTES);
    if max_buffered_body_bytes == 0 {
        problems.push("server.max_buffered_body_bytes", "must be greater than 0");
    }
    let max_body_bytes = max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes == 0 {
        problems.push("server.max_body_bytes", "must be greater than 0");
    }
    ServerConfig {
        listen: problems.addr("server.listen", listen, DEFAULT_LISTEN),
        admin_listen: problems.addr("server.admin_listen", admin_listen, DEFAULT_ADMIN_LISTEN),
        max_body_bytes,
        drain_timeout: problems.duration(
            "server.drain_timeout",
            drain_timeout,
            DEFAULT_DRAIN_TIMEOUT,
        ),
        keepalive_timeout: problems.positive_duration(
            "server.keepalive_timeout",
            keepalive_timeout,
            DEFAULT_KEEPALIVE_TIMEOUT,
        ),
        client_timeout: problems.positive_duration(
            "server.client_timeout",
            client_timeout,
            DEFAULT_CLIENT_TIMEOUT,
        ),
        max_connections,
        max_buffered_body_bytes,
        test_mode: test_mode.unwrap_or(false),
    }
}
