//! Prometheus metrics (`gateway_*`), one registry per process so counters survive config reloads.
//! Per-backend handles are resolved once per config so an attempt only bumps an atomic.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, LazyLock, OnceLock};

use arc_swap::ArcSwap;
use rustc_hash::FxBuildHasher;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::backend::Backend;
use crate::error::Outcome;
use crate::usage::Usage;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub operation: &'static str,
    pub consumer: Arc<str>,
    pub model: Arc<str>,
    pub backend: Arc<str>,
    pub status: u16,
    pub stream: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    backend: Arc<str>,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailoverLabels {
    from_backend: Arc<str>,
    to_backend: Arc<str>,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    consumer: Arc<str>,
    model: Arc<str>,
    backend: Arc<str>,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeploymentLabels {
    backend: Arc<str>,
    deployment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreErrorLabels {
    op: &'static str,
    error: &'static str,
    policy: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// Counters already resolved for a label set, read without a lock: a copy-on-write map behind an
/// `ArcSwap`, keyed with a fast hasher (`rustc-hash`: label keys are short and not
/// attacker-chosen in bulk, the cache being bounded, so SipHash's flood resistance is not needed).
/// The family's own map (a `RwLock` and SipHash) is only visited the first time a label set is
/// seen, or when the cache is full (label sets come partly from clients, e.g. `model`, so the
/// cache is bounded).
struct Resolved<K, V> {
    map: ArcSwap<HashMap<K, V, FxBuildHasher>>,
}

/// Label sets kept in a [`Resolved`] cache at most.
const RESOLVED_MAX: usize = 4096;

impl<K: Clone + Eq + Hash, V: Clone> Resolved<K, V> {
    fn new() -> Self {
        Self {
            map: ArcSwap::from_pointee(HashMap::default()),
        }
    }

    /// Runs `use_it` on the value for `key`, resolving (and caching) it the first time.
    fn with<R>(&self, key: &K, resolve: impl FnOnce() -> V, use_it: impl FnOnce(&V) -> R) -> R {
        if let Some(value) = self.map.load().get(key) {
            return use_it(value);
        }
        let value = resolve();
        if self.map.load().len() < RESOLVED_MAX {
            self.map.rcu(|map| {
                let mut map = HashMap::clone(map);
                map.insert(key.clone(), value.clone());
                map
            });
        }
        use_it(&value)
    }
}

impl<K, V> std::fmt::Debug for Resolved<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("len", &self.map.load().len())
            .finish()
    }
}

/// Distinct `model` label values per process; see [`model_label`].
const MODEL_LABELS: usize = 64;
/// The `model` label of models beyond the first [`MODEL_LABELS`].
static OTHER_MODEL: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("other"));

/// The `model` label of a model or deployment name. Names come from clients, and every distinct
/// value becomes time series kept for the life of the process, so the process gives its first
/// [`MODEL_LABELS`] names a label each and counts any further one as `other`. The grant is
/// process-wide (one model has one label on every worker); each worker keeps the labels it used
/// (so the usual few cost no lock and no allocation per request) and asks the shared list, under
/// a lock, only for a name it has not seen.
pub fn model_label(name: Option<&str>) -> Arc<str> {
    thread_local! {
        static SEEN: std::cell::RefCell<Vec<Arc<str>>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    static GRANTED: std::sync::Mutex<Vec<Arc<str>>> = std::sync::Mutex::new(Vec::new());
    static EMPTY: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(""));
    let Some(model) = name else {
        return EMPTY.clone();
    };
    SEEN.with_borrow_mut(|seen| {
        if let Some(known) = seen.iter().find(|known| ***known == *model) {
            return known.clone();
        }
        let label = {
            let mut granted = GRANTED.lock().unwrap_or_else(|e| e.into_inner());
            match granted.iter().find(|known| ***known == *model) {
                Some(known) => known.clone(),
                None if granted.len() < MODEL_LABELS => {
                    let label: Arc<str> = Arc::from(model);
                    granted.push(label.clone());
                    label
                }
                None => OTHER_MODEL.clone(),
            }
        };
        // `other` is not kept: the shared answer for that name is final, but a worker's list
        // stays as short as the labels in use.
        if !Arc::ptr_eq(&label, &OTHER_MODEL) && seen.len() < MODEL_LABELS {
            seen.push(label.clone());
        }
        label
    })
}

/// Everything a finished request counts, resolved once per label set: its request counter and
/// the token counters (by kind) of its consumer, model and backend.
#[derive(Clone)]
struct RequestHandles {
    requests: Counter,
    /// Resolved on the first request of the set that reports usage (no empty series for the
    /// others, e.g. errors).
    tokens: OnceLock<[Counter; 4]>,
}
const TOKEN_KINDS: [&str; 4] = ["prompt", "completion", "cached", "reasoning"];

/// All metric families of the process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    attempts: Family<AttemptLabels, Counter>,
    failovers: Family<FailoverLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    backend_up: Family<BackendLabels, Gauge>,
    cooldown: Family<DeploymentLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    remaining_tokens: Family<DeploymentLabels, Gauge>,
    remaining_requests: Family<DeploymentLabels, Gauge>,
    active_streams: Family<BackendLabels, Gauge>,
    reloads: Family<ResultLabels, Counter>,
    accept_errors: Counter,
    overloaded: Family<LimitLabels, Counter>,
    limit_refusals: Family<LimitLabels, Counter>,
    limit_store_errors: Family<StoreErrorLabels, Counter>,
    usage_estimates: Counter,
    limit_store_up: Gauge,
    log_lines_dropped: Counter,
    /// `gateway_cache_lookups_total{result="hit"}` and `{result="miss"}`, resolved once.
    cache_lookups: [Counter; 2],
    resolved: Resolved<RequestLabels, RequestHandles>,
}

/// Counters of one backend, resolved once per config.
#[derive(Debug, Clone)]
pub struct BackendMetrics {
    attempts: [Counter; Outcome::ALL.len()],
    pub active_streams: Gauge,
}

impl BackendMetrics {
    pub fn attempt(&self, outcome: Outcome) {
        let slot = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.attempts[slot].inc();
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gateway");
        let requests = Family::default();
        registry.register("requests", "Final outcome per request", requests.clone());
        let attempts = Family::default();
        registry.register(
            "backend_attempts",
            "Every backend attempt and skip, by outcome",
            attempts.clone(),
        );
        let failovers = Family::default();
        registry.register(
            "failovers",
            "Moves from one backend to the next within a request",
            failovers.clone(),
        );
        let tokens = Family::default();
        registry.register("tokens", "Tokens reported by backends", tokens.clone());
        let backend_up = Family::default();
        registry.register(
            "backend_up",
            "1 when the backend is healthy",
            backend_up.clone(),
        );
        let cooldown = Family::default();
        registry.register(
            "backend_cooldown_seconds",
            "Seconds until a throttled deployment of a backend reopens (Azure quotas are per deployment)",
            cooldown.clone(),
        );
        let remaining_tokens = Family::default();
        registry.register(
            "backend_remaining_tokens",
            "Last x-ratelimit-remaining-tokens seen, per backend and deployment",
            remaining_tokens.clone(),
        );
        let remaining_requests = Family::default();
        registry.register(
            "backend_remaining_requests",
            "Last x-ratelimit-remaining-requests seen, per backend and deployment",
            remaining_requests.clone(),
        );
        let active_streams = Family::default();
        registry.register(
            "active_streams",
            "Streams being relayed now",
            active_streams.clone(),
        );
        let reloads = Family::default();
        registry.register(
            "config_reloads",
            "Config reload attempts by result",
            reloads.clone(),
        );
        let accept_errors = Counter::default();
        registry.register(
            "accept_errors",
            "Connections the listeners could not accept for want of file descriptors or memory (accepting pauses briefly after each)",
            accept_errors.clone(),
        );
        let overloaded = Family::<LimitLabels, Counter>::default();
        registry.register(
            "overload_refusals",
            "Requests refused with 503 because a process-wide limit was reached (limit: connections = server.max_connections, body_memory = server.max_buffered_body_bytes)",
            overloaded.clone(),
        );
        let limit_refusals = Family::<LimitLabels, Counter>::default();
        registry.register(
            "limit_refusals",
            "Requests refused by one of the gateway's own limits (limit: its x-gateway-error code)",
            limit_refusals.clone(),
        );
        let limit_store_errors = Family::<StoreErrorLabels, Counter>::default();
        registry.register(
            "limit_store_errors",
            "Calls to the shared limit counters (Redis) that failed (op: admit or settle; error: down, timeout or error; policy: what the request got, open = admitted, closed = refused)",
            limit_store_errors.clone(),
        );
        let usage_estimates = Counter::default();
        registry.register(
            "usage_estimates",
            "Answers whose backend reported no usage, counted with the gateway's estimate instead (limits and token metrics)",
            usage_estimates.clone(),
        );
        let limit_store_up = Gauge::default();
        registry.register(
            "limit_store_up",
            "1 while the shared limit counters (Redis) are connected; 0 while the gateway reconnects (absent without limits.redis: reads as 0)",
            limit_store_up.clone(),
        );
        let log_lines_dropped = Counter::default();
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because stdout was not read fast enough (requests never wait for it)",
            log_lines_dropped.clone(),
        );
        let cache = Family::<ResultLabels, Counter>::default();
        let cache_lookups =
            ["hit", "miss"].map(|result| cache.get_or_create(&ResultLabels { result }).clone());
        registry.register(
            "cache_lookups",
            "Response cache lookups of requests the cache may answer, by result",
            cache,
        );
        let build_info = Family::<VersionLabels, Gauge>::default();
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "Build of this gateway", build_info);
        Self {
            registry,
            requests,
            attempts,
            failovers,
            tokens,
            backend_up,
            cooldown,
            remaining_tokens,
            remaining_requests,
            active_streams,
            reloads,
            accept_errors,
            overloaded,
            limit_refusals,
            limit_store_errors,
            usage_estimates,
            limit_store_up,
            log_lines_dropped,
            cache_lookups,
            resolved: Resolved::new(),
        }
    }

    /// Handles for one backend.
    pub fn backend(&self, name: &Arc<str>) -> BackendMetrics {
        let attempts = Outcome::ALL.map(|outcome| {
            self.attempts
                .get_or_create(&AttemptLabels {
                    backend: name.clone(),
                    outcome: outcome.label(),
                })
                .clone()
        });
        BackendMetrics {
            attempts,
            active_streams: self
                .active_streams
                .get_or_create(&BackendLabels {
                    backend: name.clone(),
                })
                .clone(),
        }
    }

    /// Counts a finished request and the tokens it used: one lookup of pre-resolved handles.
    pub fn request(&self, labels: &RequestLabels, usage: Option<&Usage>) {
        let resolve = || RequestHandles {
            requests: self.requests.get_or_create(labels).clone(),
            tokens: OnceLock::new(),
        };
        self.resolved.with(labels, resolve, |handles| {
            handles.requests.inc();
            if let Some(usage) = usage {
                let tokens = handles.tokens.get_or_init(|| {
                    TOKEN_KINDS.map(|kind| {
                        self.tokens
                            .get_or_create(&TokenLabels {
                                consumer: labels.consumer.clone(),
                                model: labels.model.clone(),
                                backend: labels.backend.clone(),
                                kind,
                            })
                            .clone()
                    })
                });
                let values = [
                    usage.prompt,
                    usage.completion,
                    usage.cached,
                    usage.reasoning,
                ];
                for (counter, value) in tokens.iter().zip(values) {
                    if value > 0 {
                        counter.inc_by(value);
                    }
                }
            }
        });
    }

    pub fn failover(&self, from: &Arc<str>, to: &Arc<str>, reason: Outcome) {
        self.failovers
            .get_or_create(&FailoverLabels {
                from_backend: from.clone(),
                to_backend: to.clone(),
                reason: reason.label(),
            })
            .inc();
    }

    /// A listener's accept failed for want of resources.
    pub fn accept_failed(&self) {
        self.accept_errors.inc();
    }

    /// A request refused because `limit` (a process-wide limit's label) was reached.
    pub fn overloaded(&self, limit: &'static str) {
        self.overloaded.get_or_create(&LimitLabels { limit }).inc();
    }

    /// A request refused by a limit (`code`: its `x-gateway-error`).
    pub fn limit_refused(&self, code: &'static str) {
        self.limit_refusals
            .get_or_create(&LimitLabels { limit: code })
            .inc();
    }

    /// A call to the shared limit counters failed.
    pub fn limit_store_error(&self, op: &'static str, error: &'static str, policy: &'static str) {
        self.limit_store_errors
            .get_or_create(&StoreErrorLabels { op, error, policy })
            .inc();
    }

    /// Whether the shared limit counters are connected (refreshed when metrics are read).
    pub fn limit_store(&self, connected: Option<bool>) {
        self.limit_store_up.set(i64::from(connected == Some(true)));
    }

    /// An answer counted with estimated usage.
    pub fn usage_estimated(&self) {
        self.usage_estimates.inc();
    }

    /// A response cache lookup: an answer was stored for the request, or not.
    pub fn cache_lookup(&self, hit: bool) {
        self.cache_lookups[usize::from(!hit)].inc();
    }

    pub fn reload(&self, ok: bool) {
        self.reloads
            .get_or_create(&ResultLabels {
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// Text exposition, after refreshing the gauges that mirror backend state.
    pub fn encode(&self, backends: &[Backend]) -> String {
        for b in backends {
            let labels = BackendLabels {
                backend: b.config.name.clone(),
            };
            self.backend_up
                .get_or_create(&labels)
                .set(i64::from(b.state.is_healthy()));
            b.state.quotas.each(|deployment, quota| {
                let labels = DeploymentLabels {
                    backend: b.config.name.clone(),
                    deployment: deployment.to_owned(),
                };
                self.cooldown
                    .get_or_create(&labels)
                    .set(quota.cooldown_remaining().as_secs_f64());
                let (tokens, requests) = quota.remaining();
                if let Some(t) = tokens {
                    self.remaining_tokens.get_or_create(&labels).set(t);
                }
                if let Some(r) = requests {
                    self.remaining_requests.get_or_create(&labels).set(r);
                }
            });
        }
        self.log_lines_dropped.inner().fetch_max(
            crate::logging::dropped_lines(),
            std::sync::atomic::Ordering::Relaxed,
        );
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod label_tests {
    use super::model_label;

    /// Two workers that meet the same names in a different order give them the same labels,
    /// and the bound holds for the process, not per worker.
    #[test]
    fn model_labels_are_granted_once_for_the_process() {
        let names: Vec<String> = (0..100).map(|i| format!("m-{i}")).collect();
        let label_all = |order: Vec<String>| {
            std::thread::spawn(move || {
                order
                    .iter()
                    .map(|name| (name.clone(), model_label(Some(name)).to_string()))
                    .collect::<std::collections::HashMap<_, _>>()
            })
        };
        let forward = label_all(names.clone()).join().unwrap();
        let backward = label_all(names.iter().rev().cloned().collect())
            .join()
            .unwrap();
        assert_eq!(forward, backward);
        let own = forward.values().filter(|label| *label != "other").count();
        assert_eq!(own, 64);
        assert_eq!(forward["m-0"], "m-0");
        assert_eq!(forward["m-99"], "other");
    }
}
