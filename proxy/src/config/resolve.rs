//! Raw file types → runtime config. Every semantic problem is collected with its field path, so a
//! user sees all of them at once (`backends[2].endpoint: ...`).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use http::uri::{PathAndQuery, Scheme};

use super::raw::*;
use super::*;

/// Collects problems while resolving.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, path: impl AsRef<str>, message: impl AsRef<str>) {
        self.0
            .push(format!("{}: {}", path.as_ref(), message.as_ref()));
    }

    fn duration(&mut self, path: &str, value: Option<String>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(text) => parse_duration(&text).unwrap_or_else(|e| {
                self.push(path, e);
                default
            }),
        }
    }

    /// A duration that must not be zero (a zero timeout fails everything it guards at once).
    fn positive_duration(
        &mut self,
        path: &str,
        value: Option<String>,
        default: Duration,
    ) -> Duration {
        let duration = self.duration(path, value, default);
        if duration.is_zero() {
            self.push(path, "must be greater than 0");
        }
        duration
    }

    fn addr(&mut self, path: &str, value: Option<String>, default: &str) -> SocketAddr {
        let text = value.unwrap_or_else(|| default.to_owned());
        text.parse().unwrap_or_else(|_| {
            self.push(
                path,
                format!("`{text}` is not an address like `0.0.0.0:8080`"),
            );
            SocketAddr::from(([0, 0, 0, 0], 0))
        })
    }
}

pub(super) fn resolve(raw: RawConfig) -> Result<GatewayConfig, Vec<String>> {
    let RawConfig {
        version,
        server,
        upstream,
        balancer,
        backends,
        clients,
        responses,
        log,
    } = raw;
    let mut problems = Problems::default();
    if version != CONFIG_VERSION {
        problems.push(
            "version",
            format!("unsupported version {version} (this build reads version {CONFIG_VERSION})"),
        );
    }
    let server = resolve_server(server, &mut problems);
    let backends = resolve_backends(backends, &mut problems);
    let upstream = resolve_upstream(upstream, backends.len(), &mut problems);
    let balancer = resolve_balancer(balancer, &mut problems);
    let clients = resolve_clients(clients, &mut problems);
    let responses = resolve_responses(responses, &mut problems);
    let log = resolve_log(log, &mut problems);
    if let BalancerConfig::ConsistentHash {
        on: HashOn::Consumer,
        ..
    } = balancer
        && clients.consumers.is_empty()
    {
        problems.push(
            "balancer.hash_on",
            "`consumer` needs at least one entry in clients.consumers",
        );
    }
    if !problems.0.is_empty() {
        return Err(problems.0);
    }
    Ok(GatewayConfig {
        server,
        upstream,
        balancer,
        backends,
        clients,
        responses,
        log,
    })
}

fn resolve_server(raw: RawServer, problems: &mut Problems) -> ServerConfig {
    let RawServer {
        listen,
        admin_listen,
        max_body_bytes,
        drain_timeout,
        keepalive_timeout,
        client_timeout,
        test_mode,
    } = raw;
    let max_body_bytes = max_body_bytes.unwrap_or(16 * 1024 * 1024);
    if max_body_bytes == 0 {
        problems.push("server.max_body_bytes", "must be greater than 0");
    }
    let keepalive_timeout = problems.positive_duration(
        "server.keepalive_timeout",
        keepalive_timeout,
        Duration::from_secs(75),
    );
    let client_timeout = problems.positive_duration(
        "server.client_timeout",
        client_timeout,
        Duration::from_secs(60),
    );
    ServerConfig {
        listen: problems.addr("server.listen", listen, "0.0.0.0:8080"),
        admin_listen: problems.addr("server.admin_listen", admin_listen, "0.0.0.0:9091"),
        max_body_bytes,
        drain_timeout: problems.duration(
            "server.drain_timeout",
            drain_timeout,
            Duration::from_secs(30),
        ),
        keepalive_timeout,
        client_timeout,
        test_mode: test_mode.unwrap_or(false),
    }
}

fn resolve_upstream(
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
        Some(list) => {
            let mut triggers = FailoverTriggers {
                http_429: false,
                http_5xx: false,
                connect_error: false,
                timeout: false,
            };
            for (i, item) in list.iter().enumerate() {
                match item.as_str() {
                    "http_429" => triggers.http_429 = true,
                    "http_5xx" => triggers.http_5xx = true,
                    "connect_error" => triggers.connect_error = true,
                    "timeout" => triggers.timeout = true,
                    other => problems.push(
                        format!("upstream.failover_on[{i}]"),
                        format!(
                            "unknown trigger `{other}` (known: http_429, http_5xx, connect_error, timeout)"
                        ),
                    ),
                }
            }
            triggers
        }
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
            Duration::from_secs(60),
        ),
        send_timeout: problems.positive_duration(
            "upstream.send_timeout",
            send_timeout,
            Duration::from_secs(300),
        ),
        read_timeout: problems.positive_duration(
            "upstream.read_timeout",
            read_timeout,
            Duration::from_secs(300),
        ),
        request_deadline: problems.positive_duration(
            "upstream.request_deadline",
            request_deadline,
            Duration::from_secs(240),
        ),
        max_attempts,
        failover,
        default_cooldown: problems.duration(
            "upstream.default_cooldown",
            default_cooldown,
            Duration::from_secs(10),
        ),
        stream_usage: stream_usage.unwrap_or(true),
        passive_health: PassiveHealth {
            failures: failures.unwrap_or(3),
            unhealthy_for: problems.duration(
                "upstream.passive_health.unhealthy_for",
                unhealthy_for,
                Duration::from_secs(30),
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
    let scheme = match scheme.as_deref() {
        None => None,
        Some("http") => Some(Scheme::HTTP),
        Some("https") => Some(Scheme::HTTPS),
        Some(other) => {
            problems.push(
                format!("{base}.scheme"),
                format!("`{other}` is not http or https"),
            );
            None
        }
    };
    let path_text = path.unwrap_or_else(|| "/openai/v1/models".to_owned());
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
        unhealthy_statuses.unwrap_or_else(|| vec![401, 403, 429, 500, 502, 503, 504]);
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
        timeout: problems.duration(&format!("{base}.timeout"), timeout, Duration::from_secs(1)),
        healthy_interval: problems.duration(
            &format!("{base}.healthy_interval"),
            healthy_interval,
            Duration::from_secs(10),
        ),
        unhealthy_interval: problems.duration(
            &format!("{base}.unhealthy_interval"),
            unhealthy_interval,
            Duration::from_secs(5),
        ),
        unhealthy_statuses,
    };
    for (field, value) in [
        ("healthy_interval", health.healthy_interval),
        ("unhealthy_interval", health.unhealthy_interval),
        ("timeout", health.timeout),
    ] {
        if value.is_zero() {
            problems.push(format!("{base}.{field}"), "must be greater than 0");
        }
    }
    enabled.unwrap_or(false).then_some(health)
}

fn resolve_balancer(raw: RawBalancer, problems: &mut Problems) -> BalancerConfig {
    let RawBalancer {
        algorithm,
        hash_on,
        hash_key,
        bounded_load,
    } = raw;
    match algorithm.as_deref().unwrap_or("roundrobin") {
        "roundrobin" => BalancerConfig::RoundRobin,
        "chash" => {
            let bounded_load = bounded_load.unwrap_or(1.25);
            if !(bounded_load >= 1.0 && bounded_load.is_finite()) {
                problems.push("balancer.bounded_load", "must be a number >= 1.0");
            }
            let key = hash_key.filter(|k| !k.trim().is_empty());
            let need_key = |problems: &mut Problems| {
                problems.push(
                    "balancer.hash_key",
                    "required when hash_on is header, cookie or vars",
                );
            };
            let on = match hash_on.as_deref().unwrap_or("consumer") {
                "consumer" => HashOn::Consumer,
                "header" => match key.as_deref().map(http::HeaderName::try_from) {
                    Some(Ok(name)) => HashOn::Header(name),
                    Some(Err(_)) => {
                        problems.push("balancer.hash_key", "not a valid header name");
                        HashOn::Consumer
                    }
                    None => {
                        need_key(problems);
                        HashOn::Consumer
                    }
                },
                "cookie" => match key {
                    Some(name) => HashOn::Cookie(name),
                    None => {
                        need_key(problems);
                        HashOn::Consumer
                    }
                },
                "vars" => match key.as_deref() {
                    Some("remote_addr") => HashOn::RemoteAddr,
                    Some(other) => {
                        problems.push(
                            "balancer.hash_key",
                            format!("unsupported variable `{other}` (supported: remote_addr)"),
                        );
                        HashOn::Consumer
                    }
                    None => {
                        need_key(problems);
                        HashOn::Consumer
                    }
                },
                other => {
                    problems.push(
                        "balancer.hash_on",
                        format!("unknown value `{other}` (known: consumer, header, cookie, vars)"),
                    );
                    HashOn::Consumer
                }
            };
            BalancerConfig::ConsistentHash { on, bounded_load }
        }
        other => {
            problems.push(
                "balancer.algorithm",
                format!("unknown algorithm `{other}` (known: roundrobin, chash)"),
            );
            BalancerConfig::RoundRobin
        }
    }
}

fn resolve_backends(raw: Vec<RawBackend>, problems: &mut Problems) -> Vec<BackendConfig> {
    if raw.is_empty() {
        problems.push("backends", "at least one backend is required");
    }
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, backend) in raw.into_iter().enumerate() {
        let RawBackend {
            name,
            endpoint,
            priority,
            weight,
            auth,
            deployments,
            api_version,
        } = backend;
        let path = format!("backends[{i}]");
        if name.trim().is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            problems.push(format!("{path}.name"), "must be non-empty without spaces");
        } else if !names.insert(name.clone()) {
            problems.push(
                format!("{path}.name"),
                format!("`{name}` is used by another backend"),
            );
        }
        let (scheme, authority) = match endpoint.parse::<Uri>() {
            Ok(uri) => match (uri.scheme(), uri.authority()) {
                (Some(s), Some(a)) if *s == Scheme::HTTP || *s == Scheme::HTTPS => {
                    (s.clone(), a.clone())
                }
                (Some(s), Some(_)) => {
                    problems.push(
                        format!("{path}.endpoint"),
                        format!("scheme `{s}` is not http or https"),
                    );
                    (Scheme::HTTP, http::uri::Authority::from_static("invalid"))
                }
                _ => {
                    problems.push(
                        format!("{path}.endpoint"),
                        format!("`{endpoint}` is a relative URL: give scheme and host, e.g. https://eus.openai.azure.com"),
                    );
                    (Scheme::HTTP, http::uri::Authority::from_static("invalid"))
                }
            },
            Err(e) => {
                problems.push(
                    format!("{path}.endpoint"),
                    format!("`{endpoint}` is not a URL: {e}"),
                );
                (Scheme::HTTP, http::uri::Authority::from_static("invalid"))
            }
        };
        let RawBackendAuth { mode, api_key } = auth;
        let api_key = match (mode.as_str(), api_key) {
            ("api-key", Some(key)) if !key.is_empty() => Secret::new(key),
            ("api-key", _) => {
                problems.push(
                    format!("{path}.auth.api_key"),
                    "required when auth.mode is api-key",
                );
                Secret::new("")
            }
            ("entra", _) => {
                problems.push(
                    format!("{path}.auth.mode"),
                    "`entra` is not supported by this build yet; use api-key",
                );
                Secret::new("")
            }
            (other, _) => {
                problems.push(
                    format!("{path}.auth.mode"),
                    format!("unknown mode `{other}` (known: api-key)"),
                );
                Secret::new("")
            }
        };
        for (alias, target) in &deployments {
            if alias.is_empty() || target.is_empty() || target.contains(['/', '?', '#']) {
                problems.push(
                    format!("{path}.deployments.{alias}"),
                    "alias and deployment must be non-empty names without `/`, `?` or `#`",
                );
            }
        }
        if let Some(version) = &api_version
            && (version.is_empty()
                || !version
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        {
            problems.push(
                format!("{path}.api_version"),
                format!("`{version}` is not an api-version"),
            );
        }
        out.push(BackendConfig {
            name: Arc::from(name),
            scheme,
            authority,
            priority: priority.unwrap_or(5),
            weight: weight.unwrap_or(1),
            api_key,
            deployments: deployments.into_iter().collect::<HashMap<_, _>>(),
            api_version,
        });
    }
    if !out.is_empty() && out.iter().all(|b| b.weight == 0) {
        problems.push(
            "backends",
            "every backend has weight 0: none could ever be picked",
        );
    }
    out
}

fn resolve_clients(raw: RawClients, problems: &mut Problems) -> ClientsConfig {
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
        let RawConsumer { name, key, lane } = consumer;
        let path = format!("clients.consumers[{i}]");
        if name.trim().is_empty() {
            problems.push(format!("{path}.name"), "must not be empty");
        } else if !names.insert(name.clone()) {
            problems.push(
                format!("{path}.name"),
                format!("`{name}` is used by another consumer"),
            );
        }
        if key.is_empty() {
            problems.push(format!("{path}.key"), "must not be empty");
        } else if !keys.insert(key.clone()) {
            // Never print the key itself.
            problems.push(
                format!("{path}.key"),
                "the same key is given to another consumer",
            );
        }
        let lane = match lane.as_deref().unwrap_or("high") {
            "high" => Lane::High,
            "low" => Lane::Low,
            other => {
                problems.push(
                    format!("{path}.lane"),
                    format!("`{other}` is not high or low"),
                );
                Lane::High
            }
        };
        out.push(ConsumerConfig {
            name: Arc::from(name),
            key: Secret::new(key),
            lane,
        });
    }
    ClientsConfig {
        require_auth,
        consumers: out,
    }
}

fn resolve_responses(raw: RawResponses, problems: &mut Problems) -> ResponsesConfig {
    let RawResponses {
        affinity_ttl,
        affinity_capacity,
    } = raw;
    ResponsesConfig {
        affinity_ttl: problems.duration(
            "responses.affinity_ttl",
            affinity_ttl,
            Duration::from_secs(86_400),
        ),
        affinity_capacity: affinity_capacity.unwrap_or(100_000),
    }
}

fn resolve_log(raw: RawLog, problems: &mut Problems) -> LogConfig {
    let RawLog {
        level,
        access,
        queue_lines,
    } = raw;
    let queue_lines = queue_lines.unwrap_or(8192);
    if queue_lines == 0 {
        problems.push("log.queue_lines", "must be at least 1");
    }
    let level = level.unwrap_or_else(|| "info".to_owned());
    if !matches!(
        level.as_str(),
        "error" | "warn" | "info" | "debug" | "trace"
    ) {
        problems.push(
            "log.level",
            format!("`{level}` is not error, warn, info, debug or trace"),
        );
    }
    LogConfig {
        level,
        access: access.unwrap_or(false),
        queue_lines: queue_lines as usize,
    }
}
