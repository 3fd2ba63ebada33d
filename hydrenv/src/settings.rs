//! Group and type the environment: every variable of `vars::VARS` that this build implements is
//! read here with its default; every problem is collected with the variable it concerns.

mod backends;
mod checks;
mod clients;
mod groups;
mod guardrails;
mod otel;
mod reader;
mod upstream;

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

pub use backends::{Alias, Backend};
pub use clients::Client;
pub use guardrails::{Cache, Limits, Quota, RateLimit, Redis, TokenLimit};

use crate::env::{self, Env, EnvError};
use crate::vars::{self, Status};
use reader::Reader;

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
    /// None: no limit is on.
    pub limits: Option<Limits>,
    /// None: no response cache.
    pub cache: Option<Cache>,
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
    pub max_connections: u64,
    pub max_buffered_body_bytes: u64,
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
    pub max_attempts: Option<u32>,
    pub failover_on: Vec<String>,
    pub passive_health: PassiveHealth,
}

#[derive(Debug, Clone, Serialize)]
pub struct PassiveHealth {
    /// 0: off.
    pub failures: u32,
    pub unhealthy_for: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Balancer {
    pub algorithm: String,
    pub hash_on: Option<String>,
    pub hash_key: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// None: the endpoint's scheme.
    pub scheme: Option<String>,
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
/// context is the one place that needs the value), and in the settings read for showing
/// ([`read_shown`]) it already is `<redacted:VARIABLE>`.
#[derive(Clone, Serialize)]
#[serde(transparent)]
pub struct SecretText(pub String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Reads settings from a (secret-resolved) environment: the real values, for the release. All
/// errors of this stage come back together; none quotes the value of a `hidden` variable (the
/// ones from Key Vault; secret variables are hidden whether listed or not).
pub fn read(env: &Env, hidden: &BTreeSet<&str>) -> Result<Settings, Vec<EnvError>> {
    read_pass(Reader::new(env, hidden, false))
}

/// [`read`], with the free text of every `hidden` variable as `<redacted:VARIABLE>`: the
/// settings the dry run, `diff` and `check` show (see [`reader`] for what stays visible).
/// Accepts and refuses exactly what [`read`] does, with the same messages.
pub fn read_shown(env: &Env, hidden: &BTreeSet<&str>) -> Result<Settings, Vec<EnvError>> {
    read_pass(Reader::new(env, hidden, true))
}

/// An unsigned integer that must not be 0 (a limit of nothing would refuse everything).
fn positive(r: &mut Reader<'_>, name: &str, default: u64) -> u64 {
    let value = r.uint_or(name, default);
    if value == 0 {
        r.error(name, "must be greater than 0");
        return default;
    }
    value
}

fn read_pass(mut r: Reader<'_>) -> Result<Settings, Vec<EnvError>> {
    reject_unbuilt(&mut r);
    let backends = backends::read(&mut r);
    let clients = clients::read(&mut r);
    let require_auth = r.bool_or("GATEWAY_REQUIRE_AUTH", false);
    if require_auth && clients.is_empty() {
        r.error("GATEWAY_REQUIRE_AUTH", "true, but no client is configured (set GATEWAY_CLIENT_NAME_0 and GATEWAY_CLIENT_KEY_0)");
    }
    let limits = guardrails::limits(&mut r, &clients);
    let cache = guardrails::cache(&mut r);
    let server = Server {
        listen: r.text_or("GATEWAY_LISTEN", "0.0.0.0:8080"),
        admin_listen: r.text_or("GATEWAY_ADMIN_LISTEN", "0.0.0.0:9091"),
        max_body_bytes: r.uint_or("GATEWAY_MAX_BODY_BYTES", 16 * 1024 * 1024),
        max_connections: positive(&mut r, "GATEWAY_MAX_CONNECTIONS", 10_000),
        max_buffered_body_bytes: positive(&mut r, "GATEWAY_MAX_BUFFERED_BODY_BYTES", 512 << 20),
        keepalive_timeout: r
            .nonzero_seconds_or("GATEWAY_KEEPALIVE_TIMEOUT", Duration::from_secs(75)),
        client_timeout: r
            .nonzero_seconds_or("GATEWAY_SLOW_CLIENT_TIMEOUT", Duration::from_secs(60)),
        test_mode: r.bool_or("GATEWAY_E2E_TEST_MODE", false),
    };
    let upstream = upstream::upstream(&mut r);
    let balancer = upstream::balancer(&mut r);
    let health = upstream::health(&mut r);
    let log_mode = r.one_of("GATEWAY_LOG_MODE", "prod", &["prod", "test", "dev"]);
    let otel = otel::otel(&mut r);
    let affinity_ttl = r.seconds_or(
        "RESPONSES_AFFINITY_TTL_SECONDS",
        Duration::from_secs(86_400),
    );
    let shared_root = r.value_or("SHARED_ROOT", "/shared-configs").into();
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
        limits,
        cache,
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
