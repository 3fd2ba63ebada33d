//! Group and type the environment: every variable of `vars::VARS` that this build implements is
//! read here with its default; every problem is collected with the variable it concerns.

mod backends;
mod clients;
mod groups;

use std::time::Duration;

use serde::Serialize;

pub use backends::{Alias, Backend};
pub use clients::Client;

use crate::env::{self, Env, EnvError};
use crate::vars::{self, Status};

/// Everything the templates need, typed and validated.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub server: Server,
    pub upstream: Upstream,
    pub balancer: Balancer,
    pub health: Option<Health>,
    pub backends: Vec<Backend>,
    pub require_auth: bool,
    pub clients: Vec<Client>,
    pub affinity_ttl: String,
    pub log: Log,
    pub otel: Otel,
    /// Not rendered: where releases go.
    #[serde(skip)]
    pub shared_root: std::path::PathBuf,
    #[serde(skip)]
    pub keep_releases: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Server {
    pub listen: String,
    pub admin_listen: String,
    pub max_body_bytes: u64,
    pub keepalive_timeout: String,
    pub client_timeout: String,
    pub test_mode: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Upstream {
    pub connect_timeout: String,
    pub send_timeout: String,
    pub read_timeout: String,
    pub request_deadline: String,
    pub max_attempts: Option<u64>,
    pub failover_on: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Balancer {
    pub algorithm: String,
    pub hash_on: Option<String>,
    pub hash_key: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub scheme: String,
    pub path: String,
    pub timeout: String,
    pub healthy_interval: String,
    pub unhealthy_interval: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Log {
    pub mode: String,
    pub access: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Otel {
    pub service_name: String,
    pub service_version: String,
    pub environment: String,
    pub cloud_platform: String,
    pub cluster_name: Option<String>,
    pub app_insights_connection_string: Option<SecretText>,
    pub monitor_workspace_endpoint: Option<String>,
    pub identity_client_id: Option<String>,
    pub debug_exporter: bool,
    pub memory_limit_mib: u64,
    pub memory_spike_mib: u64,
    pub batch_timeout: String,
    pub batch_size: u64,
    pub scrape_interval: String,
    pub scrape_timeout: String,
    pub scrape_target: String,
    pub remote_write: RemoteWrite,
    pub log_level: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RemoteWrite {
    pub timeout: String,
    pub queue_size: u64,
    pub num_consumers: u64,
    pub retry_initial_interval: String,
    pub retry_max_interval: String,
    pub retry_max_elapsed_time: String,
}

/// A secret value on its way into a template: `Debug` redacts it; it serializes (the template
/// context is the one place that needs the value), and the dry run renders from an environment
/// whose secrets are already replaced by `<redacted:VARIABLE>`.
#[derive(Clone, Serialize)]
#[serde(transparent)]
pub struct SecretText(pub String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Reads variables and collects errors.
pub struct Reader<'a> {
    env: &'a Env,
    errors: Vec<EnvError>,
}

impl<'a> Reader<'a> {
    fn get(&self, name: &str) -> Option<&'a str> {
        self.env
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    fn error(&mut self, name: &str, message: impl Into<String>) {
        self.errors.push(EnvError::new(name, message));
    }

    fn keep<T>(&mut self, result: Result<T, EnvError>) -> Option<T> {
        result.map_err(|e| self.errors.push(e)).ok()
    }

    fn int(&mut self, name: &str, value: &str) -> Option<i64> {
        self.keep(env::parse_i64(name, value))
    }

    fn uint(&mut self, name: &str, value: &str) -> Option<u64> {
        self.keep(env::parse_u64(name, value))
    }

    fn bool_or(&mut self, name: &str, default: bool) -> bool {
        match self.get(name) {
            None => default,
            Some(v) => self.keep(env::parse_bool(name, v)).unwrap_or(default),
        }
    }

    fn uint_or(&mut self, name: &str, default: u64) -> u64 {
        match self.get(name) {
            None => default,
            Some(v) => self.uint(name, v).unwrap_or(default),
        }
    }

    fn duration_or(&mut self, name: &str, default: Duration) -> Duration {
        match self.get(name) {
            None => default,
            Some(v) => self.keep(env::parse_seconds(name, v)).unwrap_or(default),
        }
    }

    /// Seconds (number or with unit) rendered to the millisecond: `60s`, or `250ms` when not
    /// whole seconds.
    fn seconds_or(&mut self, name: &str, default: Duration) -> String {
        format_seconds(self.duration_or(name, default))
    }

    /// [`Self::seconds_or`] for a timeout or an interval, which zero would make fail (or fire)
    /// at once; what renders as `0ms` is zero too.
    fn nonzero_seconds_or(&mut self, name: &str, default: Duration) -> String {
        let duration = self.duration_or(name, default);
        if duration.as_millis() == 0 {
            self.error(name, "must be at least 1 ms");
        }
        format_seconds(duration)
    }

    fn text_or(&self, name: &str, default: &str) -> String {
        self.get(name)
            .map_or_else(|| default.to_owned(), |v| v.trim().to_owned())
    }

    fn one_of(&mut self, name: &str, default: &str, allowed: &[&str]) -> String {
        let value = self.text_or(name, default).to_ascii_lowercase();
        if !allowed.contains(&value.as_str()) {
            self.error(
                name,
                format!("`{value}` is not one of {}", allowed.join(", ")),
            );
        }
        value
    }
}

/// Reads settings from a (secret-resolved) environment. All errors of this stage come back together.
pub fn read(env: &Env) -> Result<Settings, Vec<EnvError>> {
    let mut r = Reader {
        env,
        errors: Vec::new(),
    };
    reject_unbuilt(&mut r);
    let backends = backends::read(&mut r);
    let clients = clients::read(&mut r);
    let require_auth = r.bool_or("GATEWAY_REQUIRE_AUTH", false);
    if require_auth && clients.is_empty() {
        r.error("GATEWAY_REQUIRE_AUTH", "true, but no client is configured (set GATEWAY_CLIENT_NAME_0 and GATEWAY_CLIENT_KEY_0)");
    }
    let server = Server {
        listen: r.text_or("GATEWAY_LISTEN", "0.0.0.0:8080"),
        admin_listen: r.text_or("GATEWAY_ADMIN_LISTEN", "0.0.0.0:9091"),
        max_body_bytes: r.uint_or("GATEWAY_MAX_BODY_BYTES", 16 * 1024 * 1024),
        keepalive_timeout: r
            .nonzero_seconds_or("GATEWAY_KEEPALIVE_TIMEOUT", Duration::from_secs(75)),
        client_timeout: r
            .nonzero_seconds_or("GATEWAY_SLOW_CLIENT_TIMEOUT", Duration::from_secs(60)),
        test_mode: r.bool_or("GATEWAY_E2E_TEST_MODE", false),
    };
    let upstream = upstream(&mut r);
    let balancer = balancer(&mut r);
    let health = health(&mut r);
    let log_mode = r.one_of("GATEWAY_LOG_MODE", "prod", &["prod", "test", "dev"]);
    let otel = otel(&mut r, &server.admin_listen);
    let affinity_ttl = r.seconds_or(
        "RESPONSES_AFFINITY_TTL_SECONDS",
        Duration::from_secs(86_400),
    );
    let shared_root = r.text_or("SHARED_ROOT", "/shared-configs").into();
    let keep_releases = r.uint_or("HYDRENV_KEEP_RELEASES", 5).max(1) as usize;
    if !r.errors.is_empty() {
        return Err(r.errors);
    }
    Ok(Settings {
        server,
        upstream,
        balancer,
        health,
        backends,
        require_auth,
        clients,
        affinity_ttl,
        log: Log {
            access: log_mode != "prod",
            mode: log_mode,
        },
        otel,
        shared_root,
        keep_releases,
    })
}

/// A duration as the gateway config writes it (`30s`, `2500ms`).
fn format_seconds(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The message for a variable whose feature is not built yet.
pub fn not_built(feature: &str) -> String {
    format!("not built in this version yet ({feature}); unset this variable")
}

/// A set variable whose feature is not built is an error (an `ENABLE_*` flag may say `false`).
fn reject_unbuilt(r: &mut Reader<'_>) {
    for var in vars::VARS {
        let Status::NotBuilt(feature) = var.status else {
            continue;
        };
        if var.name.ends_with("_N") {
            continue; // group keys are checked by their group
        }
        let Some(value) = r.get(var.name) else {
            continue;
        };
        if var.name.starts_with("ENABLE_") && env::parse_bool(var.name, value) == Ok(false) {
            continue;
        }
        r.error(var.name, not_built(feature));
    }
}

fn upstream(r: &mut Reader<'_>) -> Upstream {
    let failover_on = match r.get("AI_PROXY_FALLBACK_STRATEGY") {
        None => vec![
            "http_429".into(),
            "http_5xx".into(),
            "connect_error".into(),
            "timeout".into(),
        ],
        Some(value) => fallback_list(r, value),
    };
    let max_attempts = match r.get("AI_PROXY_MAX_ATTEMPTS") {
        None => None,
        Some(v) => match r.uint("AI_PROXY_MAX_ATTEMPTS", v) {
            Some(0) => {
                r.error("AI_PROXY_MAX_ATTEMPTS", "must be at least 1");
                None
            }
            n => n,
        },
    };
    Upstream {
        connect_timeout: r.nonzero_seconds_or("AI_PROXY_CONNECT_TIMEOUT", Duration::from_secs(60)),
        send_timeout: r.nonzero_seconds_or("AI_PROXY_SEND_TIMEOUT", Duration::from_secs(300)),
        read_timeout: r.nonzero_seconds_or("AI_PROXY_READ_TIMEOUT", Duration::from_secs(300)),
        request_deadline: r
            .nonzero_seconds_or("AI_PROXY_REQUEST_DEADLINE", Duration::from_secs(240)),
        max_attempts,
        failover_on,
    }
}

/// CSV (`http_429,http_5xx`) or a JSON list (`["http_429"]`).
fn fallback_list(r: &mut Reader<'_>, value: &str) -> Vec<String> {
    const NAME: &str = "AI_PROXY_FALLBACK_STRATEGY";
    const KNOWN: [&str; 4] = ["http_429", "http_5xx", "connect_error", "timeout"];
    let items: Vec<String> = if value.trim_start().starts_with('[') {
        match serde_json::from_str::<Vec<String>>(value) {
            Ok(list) => list,
            Err(_) => {
                r.error(NAME, "not a JSON list of strings");
                return Vec::new();
            }
        }
    } else {
        value
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    for item in &items {
        if !KNOWN.contains(&item.as_str()) {
            r.error(
                NAME,
                format!("unknown trigger `{item}` (known: {})", KNOWN.join(", ")),
            );
        }
    }
    items
}

fn balancer(r: &mut Reader<'_>) -> Balancer {
    let algorithm = r.text_or("LB_ALG", "roundrobin").to_ascii_lowercase();
    match algorithm.as_str() {
        "roundrobin" => {}
        "chash" => {}
        "latency" | "headroom" => r.error(
            "LB_ALG",
            format!(
                "`{algorithm}` balancing is not built in this version yet; use roundrobin or chash"
            ),
        ),
        other => r.error("LB_ALG", format!("`{other}` is not roundrobin or chash")),
    }
    let (mut hash_on, mut hash_key) = (None, None);
    if algorithm == "chash" {
        let on = r.one_of(
            "LB_HASH_ON",
            "consumer",
            &["consumer", "header", "cookie", "vars", "vars_combinations"],
        );
        if on == "vars_combinations" {
            r.error(
                "LB_HASH_ON",
                "`vars_combinations` is not supported; use vars with LB_HASH_KEY=remote_addr",
            );
        }
        if on != "consumer" {
            match r.get("LB_HASH_KEY") {
                None => r.error("LB_HASH_KEY", format!("required when LB_HASH_ON={on}")),
                Some(key) => {
                    if on == "vars" && key.trim() != "remote_addr" {
                        r.error(
                            "LB_HASH_KEY",
                            format!(
                                "`{}` is not supported with LB_HASH_ON=vars (use remote_addr)",
                                key.trim()
                            ),
                        );
                    }
                    hash_key = Some(key.trim().to_owned());
                }
            }
        }
        hash_on = Some(on);
    }
    Balancer {
        algorithm,
        hash_on,
        hash_key,
    }
}

fn health(r: &mut Reader<'_>) -> Option<Health> {
    const P: &str = "APISIX_ACTIVE_HEALTH_CHECK";
    let enabled = r.bool_or("APISIX_ACTIVE_HEALTH_CHECKS", false);
    if !r.bool_or(&format!("{P}_VERIFY_CERT"), true) {
        r.error(
            &format!("{P}_VERIFY_CERT"),
            "false is not supported: health probes always verify certificates",
        );
    }
    let health = Health {
        scheme: r.one_of(&format!("{P}_SCHEME"), "http", &["http", "https"]),
        path: r.text_or(&format!("{P}_PATH"), "/openai/v1/models"),
        timeout: r.nonzero_seconds_or(&format!("{P}_TIMEOUT"), Duration::from_secs(1)),
        healthy_interval: r
            .nonzero_seconds_or(&format!("{P}_HEALTHY_INTERVAL"), Duration::from_secs(10)),
        unhealthy_interval: r
            .nonzero_seconds_or(&format!("{P}_UNHEALTHY_INTERVAL"), Duration::from_secs(5)),
    };
    if !health.path.starts_with('/') {
        r.error(
            &format!("{P}_PATH"),
            format!("`{}` is not an absolute path", health.path),
        );
    }
    enabled.then_some(health)
}

fn otel(r: &mut Reader<'_>, admin_listen: &str) -> Otel {
    let environment = r.text_or("ENVIRONMENT", "dev");
    let debug_exporter = r.bool_or("ENABLE_DEBUG_EXPORTER", environment == "dev");
    let port = admin_listen.rsplit_once(':').map_or("9091", |(_, p)| p);
    Otel {
        service_name: r.text_or("OTEL_SERVICE_NAME", "genai-gateway"),
        service_version: r.text_or("SERVICE_VERSION", env!("CARGO_PKG_VERSION")),
        cloud_platform: r.text_or("CLOUD_PLATFORM", "azure_container_apps"),
        cluster_name: r.get("CLUSTER_NAME").map(|v| v.trim().to_owned()),
        app_insights_connection_string: r
            .get("APPLICATIONINSIGHTS_CONNECTION_STRING")
            .map(|v| SecretText(v.to_owned())),
        monitor_workspace_endpoint: r
            .get("AZURE_MONITOR_WORKSPACE_ENDPOINT")
            .map(|v| v.trim().to_owned()),
        identity_client_id: r
            .get("ACA_MANAGED_IDENTITY_CLIENT_ID")
            .or_else(|| r.get("AZURE_CLIENT_ID"))
            .map(|v| v.trim().to_owned()),
        debug_exporter,
        memory_limit_mib: r.uint_or("OTEL_MEMORY_LIMIT_MIB", 512),
        memory_spike_mib: r.uint_or("OTEL_MEMORY_SPIKE_MIB", 128),
        batch_timeout: r.seconds_or("OTEL_BATCH_TIMEOUT", Duration::from_secs(10)),
        batch_size: r.uint_or("OTEL_BATCH_SIZE", 1024),
        scrape_interval: r.seconds_or("PROMETHEUS_SCRAPE_INTERVAL", Duration::from_secs(30)),
        scrape_timeout: r.seconds_or("PROMETHEUS_SCRAPE_TIMEOUT", Duration::from_secs(10)),
        scrape_target: format!("127.0.0.1:{port}"),
        remote_write: RemoteWrite {
            timeout: r.seconds_or("PROMETHEUS_REMOTE_WRITE_TIMEOUT", Duration::from_secs(30)),
            queue_size: r.uint_or("PROMETHEUS_REMOTE_WRITE_QUEUE_SIZE", 10_000),
            num_consumers: r.uint_or("PROMETHEUS_REMOTE_WRITE_NUM_CONSUMERS", 5),
            retry_initial_interval: r.seconds_or(
                "PROMETHEUS_REMOTE_WRITE_RETRY_INITIAL_INTERVAL",
                Duration::from_secs(5),
            ),
            retry_max_interval: r.seconds_or(
                "PROMETHEUS_REMOTE_WRITE_RETRY_MAX_INTERVAL",
                Duration::from_secs(30),
            ),
            retry_max_elapsed_time: r.seconds_or(
                "PROMETHEUS_REMOTE_WRITE_RETRY_MAX_ELAPSED_TIME",
                Duration::from_secs(300),
            ),
        },
        log_level: r.one_of(
            "OTEL_LOG_LEVEL",
            "info",
            &["debug", "info", "warn", "error"],
        ),
        environment,
    }
}
