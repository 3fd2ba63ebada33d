//! `upstream`: timeouts, attempts, failover triggers, cooldowns and health checking of backends.

use std::time::Duration;

use http::uri::{PathAndQuery, Scheme};
use schemars::JsonSchema;
use serde::Deserialize;

use super::Problems;

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_REQUEST_DEADLINE: Duration = Duration::from_secs(240);
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(10);
pub const DEFAULT_PASSIVE_FAILURES: u32 = 3;
pub const DEFAULT_UNHEALTHY_FOR: Duration = Duration::from_secs(30);
pub const DEFAULT_HEALTH_PATH: &str = "/openai/v1/models";
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_HEALTHY_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_UNHEALTHY_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_UNHEALTHY_STATUSES: [u16; 7] = [401, 403, 429, 500, 502, 503, 504];

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
    /// Which failures move a request to the next backend. Default all four.
    pub failover_on: Option<Vec<RawTrigger>>,
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

/// A failure that moves a request to the next backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawTrigger {
    /// The backend answered 429.
    #[serde(rename = "http_429")]
    Http429,
    /// The backend answered 500-599.
    #[serde(rename = "http_5xx")]
    Http5xx,
    /// Connect or TLS error, or the connection closed before a response.
    ConnectError,
    /// Connect timeout, or `read_timeout` of silence before the response is committed.
    Timeout,
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
    /// Replaces the scheme of the backend endpoint for checks. Default: the endpoint's.
    pub scheme: Option<RawScheme>,
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

/// `http` or `https`.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawScheme {
    Http,
    Https,
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

pub(super) fn resolve(
    raw: RawUpstream,
    backend_count: usize,
    problems: &mut Problems,
) -> UpstreamConfig {
    let RawUpstream {
        connect_timeout,
        send_timeout,
        read_timeout,
        request_deadline,
        max_attempts,
        failover_on,
        default_cooldown,
        stream_usage,
        passive_health,
        active_health,
    } = raw;
    let failover = match failover_on {
        None => FailoverTriggers {
            http_429: true,
            http_5xx: true,
            connect_error: true,
            timeout: true,
        },
        Some(list) => FailoverTriggers {
            http_429: list.contains(&RawTrigger::Http429),
            http_5xx: list.contains(&RawTrigger::Http5xx),
            connect_error: list.contains(&RawTrigger::ConnectError),
            timeout: list.contains(&RawTrigger::Timeout),
        },
    };
    let max_attempts = match max_attempts {
        None => backend_count.max(1),
        Some(0) => {
            problems.push("upstream.max_attempts", "must be at least 1");
            1
        }
        Some(n) => n as usize,
    };
    let RawPassiveHealth {
        failures,
        unhealthy_for,
    } = passive_health;
    UpstreamConfig {
        connect_timeout: problems.positive_duration(
            "upstream.connect_timeout",
            connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
        ),
        send_timeout: problems.positive_duration(
            "upstream.send_timeout",
            send_timeout,
            DEFAULT_SEND_TIMEOUT,
        ),
        read_timeout: problems.positive_duration(
            "upstream.read_timeout",
            read_timeout,
            DEFAULT_READ_TIMEOUT,
        ),
        request_deadline: problems.positive_duration(
            "upstream.request_deadline",
            request_deadline,
            DEFAULT_REQUEST_DEADLINE,
        ),
        max_attempts,
        failover,
        default_cooldown: problems.duration(
            "upstream.default_cooldown",
            default_cooldown,
            DEFAULT_COOLDOWN,
        ),
        stream_usage: stream_usage.unwrap_or(true),
        passive_health: PassiveHealth {
            failures: failures.unwrap_or(DEFAULT_PASSIVE_FAILURES),
            unhealthy_for: problems.positive_duration(
                "upstream.passive_health.unhealthy_for",
                unhealthy_for,
                DEFAULT_UNHEALTHY_FOR,
            ),
        },
        active_health: resolve_active_health(active_health, problems),
    }
}

fn resolve_active_health(raw: RawActiveHealth, problems: &mut Problems) -> Option<ActiveHealth> {
    let RawActiveHealth {
        enabled,
        scheme,
        path,
        timeout,
        healthy_interval,
        unhealthy_interval,
        unhealthy_statuses,
        verify_cert,
    } = raw;
    let base = "upstream.active_health";
    if verify_cert == Some(false) {
        problems.push(
            format!("{base}.verify_cert"),
            "false is not supported: health checks always verify TLS certificates",
        );
    }
    let scheme = scheme.map(|scheme| match scheme {
        RawScheme::Http => Scheme::HTTP,
        RawScheme::Https => Scheme::HTTPS,
    });
    let path_text = path.unwrap_or_else(|| DEFAULT_HEALTH_PATH.to_owned());
    let path = if path_text.starts_with('/') {
        PathAndQuery::try_from(path_text.as_str()).ok()
    } else {
        None
    };
    let path = path.unwrap_or_else(|| {
        problems.push(
            format!("{base}.path"),
            format!("`{path_text}` is not an absolute path"),
        );
        PathAndQuery::from_static("/")
    });
    let unhealthy_statuses =
        unhealthy_statuses.unwrap_or_else(|| DEFAULT_UNHEALTHY_STATUSES.into());
    for (i, status) in unhealthy_statuses.iter().enumerate() {
        if !(100..=599).contains(status) {
            problems.push(
                format!("{base}.unhealthy_statuses[{i}]"),
                format!("{status} is not an HTTP status"),
            );
        }
    }
    let health = ActiveHealth {
        scheme,
        path,
        timeout: problems.positive_duration(
            &format!("{base}.timeout"),
            timeout,
            DEFAULT_HEALTH_TIMEOUT,
        ),
        healthy_interval: problems.positive_duration(
            &format!("{base}.healthy_interval"),
            healthy_interval,
            DEFAULT_HEALTHY_INTERVAL,
        ),
        unhealthy_interval: problems.positive_duration(
            &format!("{base}.unhealthy_interval"),
            unhealthy_interval,
            DEFAULT_UNHEALTHY_INTERVAL,
        ),
        unhealthy_statuses,
    };
    enabled.unwrap_or(false).then_some(health)
}
