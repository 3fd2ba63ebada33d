//! Every environment variable hydrenv knows: name, default, what it controls, whether it is a
//! secret, and whether its feature is built. `explain`, `docs/configuration.md` and the checks
//! for not-yet-built features are all generated from this one table.
//!
//! Which variables are secret, whatever their status: every name containing `KEY`, `SECRET`,
//! `PASSWORD`, `TOKEN` or `CONNECTION_STRING`, and every URL that may carry credentials (a name
//! ending in `_URL` or `_URI`, or containing `ENDPOINT`: `redis://:password@host`), except the
//! ones listed with a reason in `tests/it/secrets.rs`. A new such variable fails that test until
//! it is marked [`Var::secret`] or added to the exceptions with its reason.

mod var;

pub use var::{Status, Target, Var};
use var::{later, var};

use Target::*;

const ENTRA: &str = "Entra ID (managed identity) backend authentication";
const AFFINITY_REDIS: &str = "the shared Responses affinity store in Redis";
const SHED: &str = "priority shedding of the low lane";
const IP: &str = "IP restriction";
const CORS: &str = "CORS";
const REWRITE: &str = "security response headers";
const OIDC: &str = "OIDC client authentication";
const TRACES: &str = "trace export from the gateway";
const COST: &str = "the cost metric";
const APIM: &str = "APIM-style logs to Log Analytics";

/// Keys of the indexed backend group `AZURE_OPENAI_<KEY>_<N>`.
pub const BACKEND_KEYS: &[&str] = &[
    "ENDPOINT",
    "KEY",
    "NAME",
    "PRIORITY",
    "WEIGHT",
    "AUTH_MODE",
    "TOKEN_RESOURCE",
    "MSI_CLIENT_ID",
    "DEPLOYMENTS",
    "API_VERSION",
];

/// Keys of the sequential client group `GATEWAY_CLIENT_<KEY>_<N>`.
pub const CLIENT_KEYS: &[&str] = &["NAME", "KEY", "PRIORITY", "TOKEN_QUOTA"];

/// The table.
pub const VARS: &[Var] = &[
    // Backends (indexed group).
    var(
        "AZURE_OPENAI_ENDPOINT_N",
        "required",
        Gateway,
        "Base URL of backend N, e.g. https://eus.openai.azure.com: http or https, a host, no user:password@, query or fragment (path ignored)",
    ),
    var(
        "AZURE_OPENAI_KEY_N",
        "",
        Gateway,
        "api-key of backend N, sent as is: a line break, control character, non-ASCII character or edge whitespace is refused",
    )
    .secret(),
    var(
        "AZURE_OPENAI_NAME_N",
        "backend-N",
        Gateway,
        "Backend id in metrics, logs and x-gateway-backend; unique, visible ASCII without spaces",
    ),
    var(
        "AZURE_OPENAI_PRIORITY_N",
        "5",
        Gateway,
        "Priority tier; higher is tried first, lower tiers only when every higher backend is unavailable",
    ),
    var(
        "AZURE_OPENAI_WEIGHT_N",
        "1",
        Gateway,
        "Weight inside the tier (0 = never picked unless named by affinity)",
    ),
    var(
        "AZURE_OPENAI_AUTH_MODE_N",
        "api-key if KEY set",
        Gateway,
        "api-key (entra and its aliases are not built yet)",
    ),
    later(
        "AZURE_OPENAI_TOKEN_RESOURCE_N",
        "",
        ENTRA,
        "Entra resource/scope for backend N",
    ),
    later(
        "AZURE_OPENAI_MSI_CLIENT_ID_N",
        "",
        ENTRA,
        "User-assigned identity for backend N",
    ),
    var(
        "AZURE_OPENAI_DEPLOYMENTS_N",
        "",
        Gateway,
        "Aliases alias=deployment,alias2=deployment2 (names without spaces, /, ? or #): rewrites the deployment segment / model for backend N",
    ),
    var(
        "AZURE_OPENAI_API_VERSION_N",
        "",
        Gateway,
        "Forces this api-version on legacy paths to backend N",
    ),
    later(
        "AZURE_OPENAI_TOKEN_RESOURCE",
        "https://cognitiveservices.azure.com/",
        ENTRA,
        "Default Entra resource for entra backends",
    ),
    later(
        "AZURE_OPENAI_MSI_CLIENT_ID",
        "",
        ENTRA,
        "Default user-assigned identity for entra backends",
    ),
    // Upstream behaviour.
    var(
        "AI_PROXY_CONNECT_TIMEOUT",
        "60",
        Gateway,
        "Seconds to open a connection to a backend",
    ),
    var(
        "AI_PROXY_SEND_TIMEOUT",
        "300",
        Gateway,
        "Seconds to send a request to a backend and get its response headers",
    ),
    var(
        "AI_PROXY_READ_TIMEOUT",
        "300",
        Gateway,
        "Seconds of silence allowed while reading a backend response",
    ),
    var(
        "AI_PROXY_FALLBACK_STRATEGY",
        "http_429,http_5xx,connect_error,timeout",
        Gateway,
        "Failover triggers, CSV or JSON list of http_429, http_5xx, connect_error, timeout",
    ),
    var(
        "AI_PROXY_MAX_ATTEMPTS",
        "number of backends",
        Gateway,
        "Most backends tried for one request",
    ),
    var(
        "AI_PROXY_REQUEST_DEADLINE",
        "240",
        Gateway,
        "Seconds for all attempts of one request",
    ),
    var(
        "AI_PROXY_PASSIVE_HEALTH_FAILURES",
        "3",
        Gateway,
        "Consecutive connect errors, timeouts or 5xx answers that mark a backend unhealthy (0 = passive health off)",
    ),
    var(
        "AI_PROXY_UNHEALTHY_SECONDS",
        "30",
        Gateway,
        "Seconds a passively unhealthy backend is skipped; then it takes requests again (FAILURES more in a row mark it again)",
    ),
    var(
        "LB_ALG",
        "roundrobin",
        Gateway,
        "roundrobin or chash (latency and headroom are not built yet)",
    ),
    var(
        "LB_HASH_ON",
        "consumer",
        Gateway,
        "chash key: consumer, header, cookie or vars",
    ),
    var(
        "LB_HASH_KEY",
        "",
        Gateway,
        "Header name, cookie name or variable (remote_addr) for LB_HASH_ON=header/cookie/vars",
    ),
    var(
        "APISIX_ACTIVE_HEALTH_CHECKS",
        "false",
        Gateway,
        "Probe every backend actively",
    ),
    var(
        "APISIX_ACTIVE_HEALTH_CHECK_SCHEME",
        "the endpoint's",
        Gateway,
        "Scheme of health probes (http or https); unset, each backend's own",
    ),
    var(
        "APISIX_ACTIVE_HEALTH_CHECK_TIMEOUT",
        "1",
        Gateway,
        "Seconds before a probe counts as failed",
    ),
    var(
        "APISIX_ACTIVE_HEALTH_CHECK_PATH",
        "/openai/v1/models",
        Gateway,
        "Path probed with GET",
    ),
    var(
        "APISIX_ACTIVE_HEALTH_CHECK_VERIFY_CERT",
        "true",
        Gateway,
        "Verify TLS certificates of probes (false is refused)",
    ),
    var(
        "APISIX_ACTIVE_HEALTH_CHECK_HEALTHY_INTERVAL",
        "10",
        Gateway,
        "Seconds between probes of a healthy backend",
    ),
    var(
        "APISIX_ACTIVE_HEALTH_CHECK_UNHEALTHY_INTERVAL",
        "5",
        Gateway,
        "Seconds between probes of an unhealthy backend",
    ),
    // Clients (sequential group).
    var(
        "GATEWAY_CLIENT_NAME_N",
        "required",
        Gateway,
        "Consumer name (metrics/log label, hash key)",
    ),
    var(
        "GATEWAY_CLIENT_KEY_N",
        "",
        Gateway,
        "The key consumer N presents: visible ASCII, no whitespace",
    )
    .secret(),
    var(
        "GATEWAY_CLIENT_PRIORITY_N",
        "high",
        Gateway,
        "Default lane of consumer N (high/low)",
    ),
    var(
        "GATEWAY_CLIENT_TOKEN_QUOTA_N",
        "",
        Gateway,
        "Tokens (total) consumer N may spend per QUOTA_TIME_WINDOW, > 0 (needs QUOTA_TIME_WINDOW)",
    ),
    var(
        "GATEWAY_REQUIRE_AUTH",
        "false",
        Gateway,
        "Require a client key on every AI route (needs at least one client)",
    ),
    // Guardrails.
    var(
        "ENABLE_AI_RATE_LIMIT",
        "false",
        Gateway,
        "Token-aware limit per route (or consumer) and lane, in fixed windows of AI_RATE_LIMIT_WINDOW_SECONDS",
    ),
    var(
        "AI_RATE_LIMIT_STRATEGY",
        "total_tokens",
        Gateway,
        "What the token-aware limit counts: total_tokens, prompt_tokens, completion_tokens or req (requests)",
    ),
    var(
        "AI_RATE_LIMIT_WINDOW_SECONDS",
        "60",
        Gateway,
        "Window of the token-aware limit, whole seconds (> 0, at most 366 days)",
    ),
    var(
        "AI_RATE_LIMIT_HIGH_LIMIT",
        "200",
        Gateway,
        "Limit per window of the high lane (standard traffic), > 0",
    ),
    var(
        "AI_RATE_LIMIT_LOW_LIMIT",
        "20",
        Gateway,
        "Limit per window of the low lane (x-priority: low, low consumers), > 0",
    ),
    var(
        "AI_RATE_LIMIT_REJECT_CODE",
        "503",
        Gateway,
        "Status of a rejection by the token-aware limit (400-599)",
    ),
    var(
        "AI_RATE_LIMIT_REJECT_MESSAGE",
        "rate limited",
        Gateway,
        "error.message of a rejection by the token-aware limit (no line breaks or other control characters)",
    ),
    var(
        "AI_RATE_LIMIT_KEY",
        "route",
        Gateway,
        "route (one bucket per route and lane) or consumer (one per consumer and lane)",
    ),
    var(
        "ENABLE_RATE_LIMIT",
        "false",
        Gateway,
        "Request-rate limit per client address (leaky bucket); needs RATE_LIMIT_RATE",
    ),
    var(
        "RATE_LIMIT_RATE",
        "",
        Gateway,
        "Requests per second per client address, > 0, may be fractional (required with ENABLE_RATE_LIMIT=true)",
    ),
    var(
        "RATE_LIMIT_BURST",
        "0",
        Gateway,
        "Requests beyond RATE_LIMIT_RATE a client may send at once",
    ),
    var(
        "ENABLE_QUOTA",
        "false",
        Gateway,
        "Request quota: QUOTA_COUNT requests per QUOTA_TIME_WINDOW per consumer (per client address without a key)",
    ),
    var(
        "QUOTA_COUNT",
        "",
        Gateway,
        "Requests per window, > 0 (required with ENABLE_QUOTA=true)",
    ),
    var(
        "QUOTA_TIME_WINDOW",
        "",
        Gateway,
        "Window of the request quota and of every GATEWAY_CLIENT_TOKEN_QUOTA_N, whole seconds > 0 (required with either)",
    ),
    var(
        "RATE_LIMIT_REDIS_URL",
        "",
        Gateway,
        "redis://[:password@]host[:port][/db] or rediss:// (TLS): every limit counter is shared by all replicas (unset: per replica); needs a limit on",
    )
    .secret(),
    var(
        "RATE_LIMIT_REDIS_TIMEOUT_MS",
        "50",
        Gateway,
        "Longest wait for one Redis call of the limits, milliseconds (> 0, at most 10000)",
    ),
    var(
        "RATE_LIMIT_REDIS_FAILURE",
        "open",
        Gateway,
        "When Redis is slow or down: open admits (metric and warning), closed rejects with 503",
    ),
    later(
        "PRIORITY_SHED_BELOW_TOKENS",
        "",
        SHED,
        "Low-lane requests get 429 while every backend that can serve them reports fewer remaining tokens",
    ),
    later(
        "PRIORITY_SHED_BELOW_REQUESTS",
        "",
        SHED,
        "Low-lane requests get 429 while every backend that can serve them reports fewer remaining requests",
    ),
    later("ENABLE_IP_RESTRICTION", "false", IP, "Allow/deny lists"),
    later("IP_WHITELIST", "", IP, "Allowed IPs/CIDRs"),
    later("IP_BLACKLIST", "", IP, "Denied IPs/CIDRs"),
    later(
        "TRUSTED_PROXIES",
        "",
        IP,
        "CIDRs whose X-Forwarded-For is believed",
    ),
    later("ENABLE_CORS", "false", CORS, "CORS on AI routes"),
    later("CORS_ALLOW_ORIGINS", "", CORS, "Allowed origins"),
    later("CORS_ALLOW_METHODS", "", CORS, "Allowed methods"),
    later("CORS_ALLOW_HEADERS", "", CORS, "Allowed headers"),
    later("CORS_EXPOSE_HEADERS", "", CORS, "Exposed headers"),
    later("CORS_MAX_AGE", "86400", CORS, "Preflight cache seconds"),
    later("CORS_ALLOW_CREDENTIALS", "false", CORS, "Allow credentials"),
    later(
        "ENABLE_RESPONSE_REWRITE",
        "false",
        REWRITE,
        "Security headers on responses",
    ),
    var(
        "ENABLE_CACHE",
        "false",
        Gateway,
        "Exact-match response cache for non-streaming embeddings and temperature-0 chat",
    ),
    var(
        "CACHE_TTL",
        "300",
        Gateway,
        "Seconds an answer is served from the cache, whole seconds (> 0, at most 366 days)",
    ),
    var(
        "CACHE_MAX_BYTES",
        "67108864",
        Gateway,
        "Most bytes of answers (bodies and keys) the cache holds (> 0)",
    ),
    later("ENABLE_OIDC", "false", OIDC, "Bearer JWT validation"),
    later("OIDC_CLIENT_ID", "", OIDC, "Audience"),
    later("OIDC_CLIENT_SECRET", "", OIDC, "Client secret").secret(),
    later("OIDC_DISCOVERY_URL", "", OIDC, "Issuer discovery URL"),
    later("OIDC_REDIRECT_URI", "", OIDC, "Redirect URI"),
    // Responses API affinity.
    var(
        "RESPONSES_AFFINITY_TTL_SECONDS",
        "86400",
        Gateway,
        "How long a response id stays pinned to the backend that created it (in-process store; at most 366 days)",
    ),
    later(
        "RESPONSES_AFFINITY_REDIS_HOST",
        "",
        AFFINITY_REDIS,
        "Share the affinity store through Redis",
    ),
    later(
        "RESPONSES_AFFINITY_REDIS_PORT",
        "6379",
        AFFINITY_REDIS,
        "Redis port",
    ),
    later(
        "RESPONSES_AFFINITY_REDIS_PASSWORD",
        "",
        AFFINITY_REDIS,
        "Redis password",
    )
    .secret(),
    later(
        "RESPONSES_AFFINITY_REDIS_TIMEOUT_MS",
        "1000",
        AFFINITY_REDIS,
        "Redis timeout",
    ),
    // Observability.
    later(
        "OTEL_COLLECTOR_ENDPOINT",
        "",
        TRACES,
        "OTLP/HTTP host:port the gateway exports traces to",
    ),
    later(
        "OTEL_SAMPLE_RATE",
        "by mode",
        TRACES,
        "Trace sampling ratio",
    ),
    var(
        "OTEL_SERVICE_NAME",
        "genai-gateway",
        Collector,
        "service.name resource attribute",
    ),
    var(
        "GATEWAY_LOG_MODE",
        "prod",
        Gateway,
        "prod, test or dev; test/dev write one JSON access record per request",
    ),
    var(
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "",
        Collector,
        "Application Insights connection string (azuremonitor exporter)",
    )
    .secret(),
    var(
        "AZURE_MONITOR_WORKSPACE_ENDPOINT",
        "",
        Collector,
        "Azure Monitor workspace remote-write endpoint (prometheusremotewrite + azureauth); no user:password@",
    ),
    var(
        "ENABLE_DEBUG_EXPORTER",
        "true in dev",
        Collector,
        "Add the debug exporter",
    ),
    var(
        "SERVICE_VERSION",
        "0.1.0",
        Collector,
        "service.version resource attribute",
    ),
    var(
        "ENVIRONMENT",
        "dev",
        Collector,
        "deployment.environment resource attribute; dev turns the debug exporter on",
    ),
    var(
        "CLOUD_PLATFORM",
        "azure_container_apps",
        Collector,
        "cloud.platform resource attribute",
    ),
    var(
        "CLUSTER_NAME",
        "",
        Collector,
        "k8s.cluster.name resource attribute when set",
    ),
    var(
        "OTEL_MEMORY_LIMIT_MIB",
        "512",
        Collector,
        "memory_limiter limit",
    ),
    var(
        "OTEL_MEMORY_SPIKE_MIB",
        "128",
        Collector,
        "memory_limiter spike limit",
    ),
    var(
        "OTEL_BATCH_TIMEOUT",
        "10s",
        Collector,
        "batch processor timeout",
    ),
    var("OTEL_BATCH_SIZE", "1024", Collector, "batch processor size"),
    var(
        "PROMETHEUS_SCRAPE_INTERVAL",
        "30s",
        Collector,
        "Scrape interval of the gateway admin port",
    ),
    var(
        "PROMETHEUS_SCRAPE_TIMEOUT",
        "10s",
        Collector,
        "Scrape timeout",
    ),
    var(
        "PROMETHEUS_REMOTE_WRITE_TIMEOUT",
        "30s",
        Collector,
        "Remote-write request timeout",
    ),
    var(
        "PROMETHEUS_REMOTE_WRITE_QUEUE_SIZE",
        "10000",
        Collector,
        "Remote-write queue size",
    ),
    var(
        "PROMETHEUS_REMOTE_WRITE_NUM_CONSUMERS",
        "5",
        Collector,
        "Remote-write consumers",
    ),
    var(
        "PROMETHEUS_REMOTE_WRITE_RETRY_INITIAL_INTERVAL",
        "5s",
        Collector,
        "Remote-write first retry",
    ),
    var(
        "PROMETHEUS_REMOTE_WRITE_RETRY_MAX_INTERVAL",
        "30s",
        Collector,
        "Remote-write longest retry interval",
    ),
    var(
        "PROMETHEUS_REMOTE_WRITE_RETRY_MAX_ELAPSED_TIME",
        "300s",
        Collector,
        "Remote-write retry budget",
    ),
    var("OTEL_LOG_LEVEL", "info", Collector, "Collector log level"),
    later("LLM_PRICES", "", COST, "model=in_per_1M:out_per_1M,..."),
    later(
        "APIM_GATEWAY_LOGS_INGEST_URI",
        "",
        APIM,
        "Log Analytics data collection endpoint",
    ),
    later("APIM_GATEWAY_ID", "", APIM, "GatewayId column"),
    later("GATEWAY_PRODUCT_ID", "", APIM, "ProductId column"),
    // Runtime and test mode.
    var("GATEWAY_LISTEN", "0.0.0.0:8080", Gateway, "API listener"),
    var(
        "GATEWAY_ADMIN_LISTEN",
        "0.0.0.0:9091",
        Gateway,
        "Admin listener (/healthz, /readyz, /metrics)",
    ),
    var(
        "GATEWAY_MAX_BODY_BYTES",
        "16777216",
        Gateway,
        "Largest request body accepted (413 above)",
    ),
    var(
        "GATEWAY_MAX_CONNECTIONS",
        "10000",
        Gateway,
        "Client connections served at once, over every worker (503 + Retry-After past it)",
    ),
    var(
        "GATEWAY_MAX_BUFFERED_BODY_BYTES",
        "536870912",
        Gateway,
        "Request-body bytes buffered at once by every request in flight (503 + Retry-After past it)",
    ),
    var(
        "GATEWAY_KEEPALIVE_TIMEOUT",
        "75",
        Gateway,
        "Seconds an idle client connection stays open for its next request",
    ),
    var(
        "GATEWAY_SLOW_CLIENT_TIMEOUT",
        "60",
        Gateway,
        "Seconds a client may take to send a request head, stay silent mid-body (408) or leave its answer unread (closed)",
    ),
    var(
        "SHARED_ROOT",
        "/shared-configs",
        Hydrenv,
        "Shared volume holding config releases",
    ),
    var(
        "GATEWAY_E2E_TEST_MODE",
        "false",
        Gateway,
        "Test-prefixed routes and the x-gw-* header shim",
    ),
    // Key Vault and hydrenv.
    var(
        "KEY_VAULT_URI",
        "",
        Hydrenv,
        "Default vault for kv:// references and HYDRENV_KEY_VAULT_SECRETS",
    ),
    var(
        "KEY_VAULT_NAME",
        "",
        Hydrenv,
        "Vault name, when KEY_VAULT_URI is not set",
    ),
    var(
        "HYDRENV_KEY_VAULT_SECRETS",
        "",
        Hydrenv,
        "CSV of secret names imported as variables (gateway-client-key-0 -> GATEWAY_CLIENT_KEY_0)",
    ),
    var(
        "ACA_MANAGED_IDENTITY_CLIENT_ID",
        "",
        Hydrenv,
        "User-assigned identity used to read the vault",
    ),
    var(
        "AZURE_CLIENT_ID",
        "",
        Runtime,
        "User-assigned identity (fallback)",
    ),
    var(
        "IDENTITY_ENDPOINT",
        "",
        Runtime,
        "Managed identity endpoint (injected by Container Apps)",
    ),
    var(
        "IDENTITY_HEADER",
        "",
        Runtime,
        "Managed identity header secret (injected by Container Apps)",
    )
    .secret(),
    var(
        "HYDRENV_REFRESH_SECONDS",
        "300",
        Hydrenv,
        "supervise: how often Key Vault secret versions are polled",
    ),
    var(
        "HYDRENV_ENV_DIR",
        "",
        Hydrenv,
        "supervise/render: directory of files NAME containing the value, layered over the environment and watched",
    ),
    var(
        "HYDRENV_KEEP_RELEASES",
        "5",
        Hydrenv,
        "Releases kept under SHARED_ROOT/releases",
    ),
];

/// Looks a variable up by exact name (group variables by their `_N` form).
pub fn find(name: &str) -> Option<&'static Var> {
    VARS.iter().find(|v| v.name == name)
}

/// The documented form of a name: `AZURE_OPENAI_KEY_3` → `AZURE_OPENAI_KEY_N`.
pub fn documented_form(name: &str) -> String {
    match name.rsplit_once('_') {
        Some((head, index))
            if !index.is_empty()
                && index.bytes().all(|b| b.is_ascii_digit())
                && (head.starts_with("AZURE_OPENAI_") || head.starts_with("GATEWAY_CLIENT_")) =>
        {
            format!("{head}_N")
        }
        _ => name.to_owned(),
    }
}

/// Whether the value of this variable is a secret (redacted everywhere but the 0600 files).
pub fn is_secret(name: &str) -> bool {
    find(&documented_form(name)).is_some_and(|v| v.secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_group_forms_resolve() {
        let mut names: Vec<&str> = VARS.iter().map(|v| v.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
        assert!(is_secret("AZURE_OPENAI_KEY_12"));
        assert!(is_secret("GATEWAY_CLIENT_KEY_0"));
        assert!(!is_secret("AZURE_OPENAI_NAME_0"));
        assert_eq!(
            documented_form("AZURE_OPENAI_ENDPOINT_7"),
            "AZURE_OPENAI_ENDPOINT_N"
        );
        assert_eq!(documented_form("LB_ALG"), "LB_ALG");
        for key in BACKEND_KEYS {
            assert!(find(&format!("AZURE_OPENAI_{key}_N")).is_some(), "{key}");
        }
        for key in CLIENT_KEYS {
            assert!(find(&format!("GATEWAY_CLIENT_{key}_N")).is_some(), "{key}");
        }
    }
}
