//! `AI_PROXY_*`, `LB_*` and `APISIX_ACTIVE_HEALTH_CHECK*`: how the gateway talks to backends,
//! picks one, and checks their health (passively from real traffic, actively by probes).

use std::time::Duration;

use super::{Balancer, Health, PassiveHealth, Reader, Upstream};

pub(super) fn upstream(r: &mut Reader<'_>) -> Upstream {
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
        Some(v) => match r.u32("AI_PROXY_MAX_ATTEMPTS", v) {
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
        passive_health: PassiveHealth {
            failures: r.u32_or("AI_PROXY_PASSIVE_HEALTH_FAILURES", 3),
            unhealthy_for: r
                .nonzero_seconds_or("AI_PROXY_UNHEALTHY_SECONDS", Duration::from_secs(30)),
        },
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
            let quoted = r.quote(NAME, item);
            r.error(
                NAME,
                format!("unknown trigger `{quoted}` (known: {})", KNOWN.join(", ")),
            );
        }
    }
    items
}

pub(super) fn balancer(r: &mut Reader<'_>) -> Balancer {
    let algorithm = r.value_or("LB_ALG", "roundrobin").to_ascii_lowercase();
    match algorithm.as_str() {
        "roundrobin" => {}
        "chash" => {}
        "latency" | "headroom" => r.error(
            "LB_ALG",
            format!(
                "`{algorithm}` balancing is not built in this version yet; use roundrobin or chash"
            ),
        ),
        other => {
            let quoted = r.quote("LB_ALG", other);
            r.error("LB_ALG", format!("`{quoted}` is not roundrobin or chash"));
        }
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
                        let quoted = r.quote("LB_HASH_KEY", key);
                        r.error(
                            "LB_HASH_KEY",
                            format!(
                                "`{quoted}` is not supported with LB_HASH_ON=vars (use remote_addr)"
                            ),
                        );
                    }
                    hash_key = Some(r.shown("LB_HASH_KEY", key));
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

pub(super) fn health(r: &mut Reader<'_>) -> Option<Health> {
    const P: &str = "APISIX_ACTIVE_HEALTH_CHECK";
    let enabled = r.bool_or("APISIX_ACTIVE_HEALTH_CHECKS", false);
    if !r.bool_or(&format!("{P}_VERIFY_CERT"), true) {
        r.error(
            &format!("{P}_VERIFY_CERT"),
            "false is not supported: health probes always verify certificates",
        );
    }
    let path_var = format!("{P}_PATH");
    let path = r.value_or(&path_var, "/openai/v1/models");
    if !path.starts_with('/') {
        let quoted = r.quote(&path_var, &path);
        r.error(&path_var, format!("`{quoted}` is not an absolute path"));
    }
    let health = Health {
        // Unset: the endpoint's own scheme (plain-http probes to an https Azure endpoint would
        // mark every backend unhealthy).
        scheme: r
            .get(&format!("{P}_SCHEME"))
            .is_some()
            .then(|| r.one_of(&format!("{P}_SCHEME"), "", &["http", "https"])),
        path: r.shown(&path_var, &path),
        timeout: r.nonzero_seconds_or(&format!("{P}_TIMEOUT"), Duration::from_secs(1)),
        healthy_interval: r
            .nonzero_seconds_or(&format!("{P}_HEALTHY_INTERVAL"), Duration::from_secs(10)),
        unhealthy_interval: r
            .nonzero_seconds_or(&format!("{P}_UNHEALTHY_INTERVAL"), Duration::from_secs(5)),
    };
    enabled.then_some(health)
}
