//! Active health checks: one task per backend probing `GET <path>` on its interval, on the
//! background runtime ([`crate::background`]) with connections of its own (never a worker's). A
//! probe that times out or answers an unhealthy status marks the backend unhealthy until a probe
//! succeeds.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use http_body_util::BodyExt;
use tokio::task::JoinHandle;

use crate::backend::{Backend, BackendState};
use crate::config::{ActiveHealth, GatewayConfig};
use crate::upstream::{Pool, default_tls};

const API_KEY: HeaderName = HeaderName::from_static("api-key");
const USER_AGENT: HeaderValue = HeaderValue::from_static("genai-gateway-health");

/// The running probe tasks; dropping this stops them.
#[derive(Debug)]
pub struct HealthChecks {
    tasks: Vec<JoinHandle<()>>,
}

impl HealthChecks {
    pub fn start(backends: &[Backend], config: &GatewayConfig, policy: ActiveHealth) -> Self {
        let policy = Arc::new(policy);
        let runtime = crate::background::handle();
        let tasks = backends
            .iter()
            .map(|backend| {
                // Probes have connections of their own: a worker's idle connections belong to
                // the worker's runtime, and a probe must not keep one warm that looks healthier
                // than the backend is.
                let scheme = policy.scheme.as_ref().unwrap_or(&backend.config.scheme);
                let pool = Arc::new(Pool::new(
                    scheme,
                    &backend.config.authority,
                    config.upstream.connect_timeout,
                    default_tls(),
                ));
                let probe = Probe {
                    pool,
                    api_key: backend.api_key_header.clone(),
                    state: backend.state.clone(),
                    policy: policy.clone(),
                    name: backend.config.name.clone(),
                };
                runtime.spawn(probe.run())
            })
            .collect();
        Self { tasks }
    }
}

impl HealthChecks {
    /// Stops the probes (also when dropped).
    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for HealthChecks {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Probe {
    pool: Arc<Pool>,
    api_key: http::HeaderValue,
    state: Arc<BackendState>,
    policy: Arc<ActiveHealth>,
    name: Arc<str>,
}

impl Probe {
    async fn run(self) {
        loop {
            let healthy = self.check().await;
            let was_healthy = self.state.is_healthy();
            self.state.set_active_healthy(healthy, &self.name);
            if healthy != was_healthy {
                tracing::warn!(backend = %self.name, healthy, "active health changed");
            }
            let wait = if healthy {
                self.policy.healthy_interval
            } else {
                self.policy.unhealthy_interval
            };
            tokio::time::sleep(wait).await;
        }
    }

    async fn check(&self) -> bool {
        let mut head = self.pool.request(&Method::GET, self.policy.path.as_str());
        head.header(&API_KEY, &self.api_key);
        head.header(&http::header::USER_AGENT, &USER_AGENT);
        let probe = async {
            let (head, body) = self.pool.send(head, Bytes::new()).await.ok()?;
            // Read to the end so the connection goes back to the pool.
            let _ = body.collect().await;
            Some(head.status.as_u16())
        };
        match tokio::time::timeout(self.policy.timeout, probe).await {
            Ok(Some(status)) => !self.policy.unhealthy_statuses.contains(&status),
            _ => false,
        }
    }
}
