//! The runtime built from one config: backends with their state, the balancer, the stages, metric
//! handles and active health checks. Requests take an `Arc` of it once and use it lock-free; a
//! new config builds a new one, and each part takes over from its predecessor what describes the
//! outside world (backend state and pools, stores): [`Gateway::new`] only delegates.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::backend::{self, Backend};
use crate::balancer::Balancer;
use crate::config::GatewayConfig;
use crate::health::HealthChecks;
use crate::metrics::{BackendMetrics, Metrics};
use crate::server::drain::{Drain, DrainWatch};
use crate::stages::Stages;

/// State of the running process that every config generation shares.
#[derive(Debug, Default)]
pub struct RunState {
    /// Begun when the drain deadline passed: what is still running is cut. Streams watch it.
    cut: Arc<Drain>,
    /// Client connections open on the API listener, over every worker.
    connections: AtomicUsize,
    /// Bytes of request bodies buffered by requests in flight, over every worker.
    buffered: AtomicU64,
}

/// A client connection counted against `server.max_connections`; uncounted when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    run: Arc<RunState>,
    /// Within the limit: served. Over it: its first request is refused with 503.
    pub admitted: bool,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.run.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Request-body bytes a request holds against `server.max_buffered_body_bytes`; the request's
/// end gives them back ([`RunState::give_back`]: the context holds the run state already).
#[derive(Debug, Default)]
pub struct BodyBudget {
    pub held: u64,
}

impl BodyBudget {
    /// Holds `bytes` more, unless that takes every request's bodies together past `limit`.
    pub fn take(&mut self, run: &RunState, bytes: u64, limit: u64) -> bool {
        let before = run.buffered.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > limit {
            run.buffered.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        self.held += bytes;
        true
    }
}

impl RunState {
    /// Counts a new client connection; `admitted` is false past `max`.
    pub fn connection(self: &Arc<Self>, max: usize) -> ConnectionSlot {
        let open = self.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionSlot {
            run: self.clone(),
            admitted: open < max,
        }
    }

    /// Gives back what a request's body held.
    pub fn give_back(&self, budget: &BodyBudget) {
        if budget.held > 0 {
            self.buffered.fetch_sub(budget.held, Ordering::Relaxed);
        }
    }

    /// Request-body bytes buffered right now (for the metrics).
    pub fn buffered_body_bytes(&self) -> u64 {
        self.buffered.load(Ordering::Relaxed)
    }

    /// Client connections open right now.
    pub fn open_connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Whether the drain deadline passed and requests still running are being cut.
    pub fn is_cut(&self) -> bool {
        self.cut.is_begun()
    }

    /// Cuts what is still running (the drain deadline passed): streams waiting for their next
    /// piece are woken and end with an error event.
    pub fn cut(&self) {
        self.cut.begin();
    }

    /// A stream's watch on the cut.
    pub fn watch_cut(&self) -> DrainWatch {
        DrainWatch::new(self.cut.clone())
    }
}

/// Everything a request needs, for one config generation.
#[derive(Debug)]
pub struct Gateway {
    pub config: GatewayConfig,
    pub backends: Vec<Backend>,
    pub backend_metrics: Vec<BackendMetrics>,
    pub balancer: Balancer,
    pub stages: Stages,
    pub metrics: Arc<Metrics>,
    pub run: Arc<RunState>,
    by_name: HashMap<Arc<str>, usize>,
    health: Option<HealthChecks>,
}

impl Gateway {
    /// Builds the runtime and starts active health checks (on the background runtime; they stop
    /// when this is dropped, or when a next generation is built from this one). With `previous` (a reload), each part carries over what it keeps:
    /// backends their state and pools ([`backend::carry_over`]), stages their stores
    /// ([`Stages::new`]); metrics and the run state are the process's.
    pub fn new(
        config: GatewayConfig,
        metrics: Arc<Metrics>,
        previous: Option<&Gateway>,
    ) -> Arc<Self> {
        let backends = backend::carry_over(&config, previous.map(|p| p.backends.as_slice()));
        let backend_metrics = backends
            .iter()
            .map(|b| metrics.backend(&b.config.name))
            .collect();
        let by_name = backends
            .iter()
            .enumerate()
            .map(|(i, b)| (b.config.name.clone(), i))
            .collect();
        // The previous generation's probes stop now, not when its last request ends (a long
        // stream keeps it alive): they would probe with the old path and key, and write the
        // state the new generation shares.
        if let Some(health) = previous.and_then(|p| p.health.as_ref()) {
            health.stop();
        }
        let health = config
            .upstream
            .active_health
            .clone()
            .map(|policy| HealthChecks::start(&backends, &config, policy));
        Arc::new(Self {
            balancer: Balancer::new(&config),
            stages: Stages::new(&config, previous.map(|p| &p.stages)),
            run: previous.map_or_else(Arc::default, |p| p.run.clone()),
            backends,
            backend_metrics,
            metrics,
            by_name,
            config,
            health,
        })
    }

    pub fn backend_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Ready = at least one backend that neither active checks nor connect failures have shown
    /// dead. Passive marks from 5xx answers never make the replica unready: an orchestrator
    /// pulls unready replicas, and a backend that answers 5xx is there.
    pub fn ready(&self) -> bool {
        self.backends.iter().any(|b| b.state.reachable())
    }
}
