//! The OpenTelemetry Collector's settings: resource attributes, exporters, batching, scraping.

use std::time::Duration;

use super::{Otel, Reader, RemoteWrite};

const APP_INSIGHTS: &str = "APPLICATIONINSIGHTS_CONNECTION_STRING";
const MONITOR_WORKSPACE: &str = "AZURE_MONITOR_WORKSPACE_ENDPOINT";

pub(super) fn otel(r: &mut Reader<'_>) -> Otel {
    let debug_exporter = r.bool_or(
        "ENABLE_DEBUG_EXPORTER",
        r.value_or("ENVIRONMENT", "dev") == "dev",
    );
    // The collector scrapes the admin listener's port on loopback.
    let admin_listen = r.value_or("GATEWAY_ADMIN_LISTEN", "0.0.0.0:9091");
    let port = admin_listen.rsplit_once(':').map_or("9091", |(_, p)| p);
    let scrape_target = if r.hides("GATEWAY_ADMIN_LISTEN") {
        format!(
            "127.0.0.1:{}",
            crate::redact::placeholder("GATEWAY_ADMIN_LISTEN")
        )
    } else {
        format!("127.0.0.1:{port}")
    };
    if let Some(endpoint) = r.get(MONITOR_WORKSPACE)
        && let Err(why) =
            super::checks::no_userinfo(endpoint, &r.quote_url(MONITOR_WORKSPACE, endpoint))
    {
        r.error(MONITOR_WORKSPACE, why);
    }
    Otel {
        service_name: r.text_or("OTEL_SERVICE_NAME", "genai-gateway"),
        service_version: r.text_or("SERVICE_VERSION", env!("CARGO_PKG_VERSION")),
        cloud_platform: r.text_or("CLOUD_PLATFORM", "azure_container_apps"),
        cluster_name: r.get("CLUSTER_NAME").map(|v| r.shown("CLUSTER_NAME", v)),
        app_insights_connection_string: r.get(APP_INSIGHTS).map(|v| r.secret(APP_INSIGHTS, v)),
        monitor_workspace_endpoint: r
            .get(MONITOR_WORKSPACE)
            .map(|v| r.shown(MONITOR_WORKSPACE, v)),
        identity_client_id: ["ACA_MANAGED_IDENTITY_CLIENT_ID", "AZURE_CLIENT_ID"]
            .into_iter()
            .find_map(|name| r.get(name).map(|v| r.shown(name, v))),
        debug_exporter,
        memory_limit_mib: r.uint_or("OTEL_MEMORY_LIMIT_MIB", 512),
        memory_spike_mib: r.uint_or("OTEL_MEMORY_SPIKE_MIB", 128),
        batch_timeout: r.seconds_or("OTEL_BATCH_TIMEOUT", Duration::from_secs(10)),
        batch_size: r.uint_or("OTEL_BATCH_SIZE", 1024),
        scrape_interval: r.seconds_or("PROMETHEUS_SCRAPE_INTERVAL", Duration::from_secs(30)),
        scrape_timeout: r.seconds_or("PROMETHEUS_SCRAPE_TIMEOUT", Duration::from_secs(10)),
        scrape_target,
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
        environment: r.text_or("ENVIRONMENT", "dev"),
    }
}
