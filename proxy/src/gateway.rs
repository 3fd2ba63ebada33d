//! The runtime built from one config: backends with their state, balancer, client auth, the
//! upstream connection pools, metric handles and the Responses affinity store. Requests take an `Arc` of it
//! once and use it lock-free; a new config builds a new one.

use std::collections::HashMap;
use std::sync::Arc;

use crate::auth::ClientAuth;
use crate::backend::{Backend, BackendState};
use crate::balancer::Balancer;
use crate::config::GatewayConfig;
use crate::health::HealthChecks;
use crate::metrics::{BackendMetrics, Metrics};
use crate::upstream::{Pool, default_tls};

/// Response id → name of the backend that created it (Responses API state lives there).
#[derive(Debug)]
pub struct Affinity {
    cache: moka::sync::Cache<Box<str>, Arc<str>>,
}

impl Affinity {
    fn new(config: &GatewayConfig) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(config.responses.affinity_capacity)
                .time_to_live(config.responses.affinity_ttl)
                .build(),
        }
    }

    pub fn remember(&self, response_id: &str, backend: &Arc<str>) {
        self.cache.insert(response_id.into(), backend.clone());
    }

    pub fn lookup(&self, response_id: &str) -> Option<Arc<str>> {
        self.cache.get(response_id)
    }
}

/// Everything a request needs, for one config generation.
#[derive(Debug)]
pub struct Gateway {
    pub config: GatewayConfig,
    pub backends: Vec<Backend>,
    pub backend_metrics: Vec<BackendMetrics>,
    pub balancer: Balancer,
    pub auth: ClientAuth,
    pub metrics: Arc<Metrics>,
    pub affinity: Arc<Affinity>,
    by_name: HashMap<Arc<str>, usize>,
    _health: Option<HealthChecks>,
}

impl Gateway {
    /// Builds the runtime and starts active health checks (they stop when it is dropped).
    /// With `previous` (a reload), what describes the outside world carries over: the state of
    /// backends that keep their name and endpoint (cooldowns, health), the connection pools of
    /// unchanged endpoints, and the Responses affinity store. Must run inside a Tokio runtime.
    pub fn new(
        config: GatewayConfig,
        metrics: Arc<Metrics>,
        previous: Option<&Gateway>,
    ) -> Arc<Self> {
        let connect_timeout = config.upstream.connect_timeout;
        let backends: Vec<Backend> = config
            .backends
            .iter()
            .map(|b| {
                let same = previous
                    .and_then(|p| p.backend_index(&b.name).map(|i| &p.backends[i]))
                    .filter(|old| {
                        old.config.scheme == b.scheme && old.config.authority == b.authority
                    });
                let state =
                    same.map_or_else(|| Arc::new(BackendState::new()), |old| old.state.clone());
                // Connections carry over to any backend of the new config with the same endpoint.
                let pool = previous
                    .and_then(|p| {
                        p.backends
                            .iter()
                            .find(|old| old.pool.serves(&b.scheme, &b.authority, connect_timeout))
                    })
                    .map_or_else(
                        || {
                            Arc::new(Pool::new(
                                &b.scheme,
                                &b.authority,
                                connect_timeout,
                                default_tls(),
                            ))
                        },
                        |old| old.pool.clone(),
                    );
                Backend::new(b.clone(), state, pool)
            })
            .collect();
        let backend_metrics = backends
            .iter()
            .map(|b| metrics.backend(&b.config.name))
            .collect();
        let by_name = backends
            .iter()
            .enumerate()
            .map(|(i, b)| (b.config.name.clone(), i))
            .collect();
        let affinity = previous
            .filter(|p| {
                p.config.responses.affinity_ttl == config.responses.affinity_ttl
                    && p.config.responses.affinity_capacity == config.responses.affinity_capacity
            })
            .map_or_else(|| Arc::new(Affinity::new(&config)), |p| p.affinity.clone());
        let mut gateway = Self {
            balancer: Balancer::new(&config),
            auth: ClientAuth::new(&config.clients),
            affinity,
            backends,
            backend_metrics,
            metrics,
            by_name,
            config,
            _health: None,
        };
        let health = gateway
            .config
            .upstream
            .active_health
            .clone()
            .map(|policy| HealthChecks::start(&gateway, policy));
        gateway._health = health;
        Arc::new(gateway)
    }

    pub fn backend_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Ready = at least one backend could take a request now.
    pub fn ready(&self) -> bool {
        self.backends.iter().any(|b| b.state.is_healthy())
    }
}
