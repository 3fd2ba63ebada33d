//! Active health checks: one task per backend probing `GET <path>` on its interval. A probe that
//! times out or answers an unhealthy status marks the backend unhealthy until a probe succeeds.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use tokio::task::JoinHandle;

use crate::backend::BackendState;
use crate::config::ActiveHealth;
use crate::gateway::Gateway;
use crate::upstream::UpstreamClient;

/// The running probe tasks; dropping this stops them.
#[derive(Debug)]
pub struct HealthChecks {
    tasks: Vec<JoinHandle<()>>,
}

impl HealthChecks {
    pub fn start(gateway: &Gateway, policy: ActiveHealth) -> Self {
        let policy = Arc::new(policy);
        let tasks = gateway
            .backends
            .iter()
            .filter_map(|backend| {
                let scheme = policy
                    .scheme
                    .clone()
                    .unwrap_or(backend.config.scheme.clone());
                let uri = Uri::builder()
                    .scheme(scheme)
                    .authority(backend.config.authority.clone())
                    .path_and_query(policy.path.clone())
                    .build()
                    .ok()?;
                let probe = Probe {
                    uri,
                    api_key: backend.api_key_header.clone(),
                    state: backend.state.clone(),
                    client: gateway.client.clone(),
                    policy: policy.clone(),
                    name: backend.config.name.clone(),
                };
                Some(tokio::spawn(probe.run()))
            })
            .collect();
        Self { tasks }
    }
}

impl Drop for HealthChecks {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

struct Probe {
    uri: Uri,
    api_key: http::HeaderValue,
    state: Arc<BackendState>,
    client: UpstreamClient,
    policy: Arc<ActiveHealth>,
    name: Arc<str>,
}

impl Probe {
    async fn run(self) {
        loop {
            let healthy = self.check().await;
            let was_healthy = self.state.is_healthy();
            self.state.set_active_healthy(healthy);
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
        let request = Request::builder()
            .method(Method::GET)
            .uri(self.uri.clone())
            .header("api-key", self.api_key.clone())
            .header("user-agent", "genai-gateway-health")
            .body(Full::new(Bytes::new()));
        let Ok(request) = request else {
            return false;
        };
        let probe = async {
            let response = self.client.request(request).await.ok()?;
            let status = response.status().as_u16();
            // Drain so the connection returns to the pool.
            let _ = response.into_body().collect().await;
            Some(status)
        };
        match tokio::time::timeout(self.policy.timeout, probe).await {
            Ok(Some(status)) => !self.policy.unhealthy_statuses.contains(&status),
            _ => false,
        }
    }
}
