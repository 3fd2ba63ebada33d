//! A backend at run time: its resolved config, pre-built header values and lock-free state.
//!
//! Everything a request reads on the hot path is either immutable or an atomic here: health
//! (passive failure counts and marks, active health) and in-flight load per backend, cooldowns
//! and remaining capacity per deployment ([`quota`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use http::HeaderValue;

use crate::clock::now_ms;
use crate::config::{BackendConfig, GatewayConfig, PassiveHealth};
use crate::upstream::{Pool, default_tls};

mod quota;

pub use quota::{MAX_DEPLOYMENTS, OVERFLOW_LABEL, Quota, Quotas};

/// Why a backend cannot take an attempt for a deployment right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The deployment is cooling down after a 429 until this clock time (ms).
    CoolingDown { until_ms: u64 },
    /// Marked unhealthy by passive or active health.
    Unhealthy,
}

/// Mutable, lock-free state of one backend: its health (per backend) and its deployments'
/// quotas (per deployment, [`Quotas`]).
#[derive(Debug, Default)]
pub struct BackendState {
    consecutive_failures: AtomicU32,
    /// Consecutive failures without an answer (connect errors, timeouts), for readiness.
    consecutive_unreachable: AtomicU32,
    /// Passive mark: skipped until this clock time (ms); 0 = not marked. When the window is
    /// over, one request claims a half-open trial (the mark moves on by a window while it runs)
    /// and its outcome decides: healthy again, or marked for another window.
    passive_unhealthy_until_ms: AtomicU64,
    /// The passive mark came from the backend not answering at all (not from 5xx answers).
    unreachable: AtomicBool,
    active_unhealthy: AtomicBool,
    in_flight: AtomicI64,
    /// Cooldowns and remaining capacity, per deployment.
    pub quotas: Quotas,
}

/// One backend as requests see it.
#[derive(Debug)]
pub struct Backend {
    pub config: BackendConfig,
    /// `api-key` header value, marked sensitive so it is never logged by hyper/h2.
    pub api_key_header: HeaderValue,
    /// `x-gateway-backend` header value.
    pub name_header: HeaderValue,
    pub state: Arc<BackendState>,
    /// Keep-alive connections to it (carried over by reloads that keep its endpoint).
    pub pool: Arc<Pool>,
}

impl Backend {
    pub fn new(config: BackendConfig, state: Arc<BackendState>, pool: Arc<Pool>) -> Self {
        let mut api_key_header =
            HeaderValue::from_str(config.api_key.expose()).unwrap_or(HeaderValue::from_static(""));
        api_key_header.set_sensitive(true);
        let name_header =
            HeaderValue::from_str(&config.name).unwrap_or(HeaderValue::from_static("invalid"));
        Self {
            config,
            api_key_header,
            name_header,
            state,
            pool,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }
}

/// The backends of a new config. From `previous` (a reload) each keeps what describes the outside
/// world: the state (cooldowns, health) of a backend that keeps its name and endpoint, and the
/// idle connections of any old backend with the same endpoint. An active probe's verdict is kept
/// only while active checks stay on (the new probes then confirm or lift it).
pub fn carry_over(config: &GatewayConfig, previous: Option<&[Backend]>) -> Vec<Backend> {
    let connect_timeout = config.upstream.connect_timeout;
    let old = previous.unwrap_or_default();
    config
        .backends
        .iter()
        .map(|b| {
            let state = old
                .iter()
                .find(|o| {
                    o.config.name == b.name
                        && o.config.scheme == b.scheme
                        && o.config.authority == b.authority
                })
                .map_or_else(|| Arc::new(BackendState::new()), |o| o.state.clone());
            if config.upstream.active_health.is_none() {
                state.forget_active_verdict();
            }
            let pool = old
                .iter()
                .find(|o| o.pool.serves(&b.scheme, &b.authority, connect_timeout))
                .map_or_else(
                    || {
                        Arc::new(Pool::new(
                            &b.scheme,
                            &b.authority,
                            connect_timeout,
                            default_tls(),
                        ))
                    },
                    |o| o.pool.clone(),
                );
            Backend::new(b.clone(), state, pool)
        })
        .collect()
}

/// How a failed attempt failed, for passive health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection: connect error, connect timeout, TLS error. Only these make the backend
    /// count as unreachable for readiness.
    Unreachable,
    /// A connection that did not answer in time, closed before its response, or answered
    /// garbage.
    Timeout,
    /// An answer of 500-599.
    ServerError,
}

impl BackendState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the backend may take an attempt for the deployment in `quota` (its slot, if it has
    /// one) now,
    /// and if not why. When a
    /// passive mark's window is over, the first caller gets `Ok` as the half-open trial and the
    /// others keep seeing `Unhealthy` until the trial's outcome is recorded (or another window
    /// has passed, if it never is).
    pub fn availability(
        &self,
        quota: Option<usize>,
        policy: &PassiveHealth,
    ) -> Result<(), Unavailable> {
        if let Some(until_ms) = quota.and_then(|slot| self.quotas.at(slot).cooling_until()) {
            return Err(Unavailable::CoolingDown { until_ms });
        }
        if self.active_unhealthy.load(Ordering::Relaxed) {
            return Err(Unavailable::Unhealthy);
        }
        // The clock is read only while a passive mark is set (0 = none).
        let marked = self.passive_unhealthy_until_ms.load(Ordering::Relaxed);
        if marked == 0 {
            return Ok(());
        }
        let now = now_ms();
        if marked > now {
            return Err(Unavailable::Unhealthy);
        }
        let trial_until = now.saturating_add(millis(policy.unhealthy_for));
        match self.passive_unhealthy_until_ms.compare_exchange(
            marked,
            trial_until,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => Ok(()),
            Err(_) => Err(Unavailable::Unhealthy),
        }
    }

    /// Records a failed attempt for passive health: `policy.failures` in a row mark the backend
    /// for `policy.unhealthy_for`; a failure while it is marked (a half-open trial, a last-resort
    /// attempt) marks it for another window at once.
    pub fn record_failure(&self, policy: &PassiveHealth, failure: Failure, name: &str) {
        if policy.failures == 0 {
            return;
        }
        let unreachable = match failure {
            Failure::Unreachable => {
                self.consecutive_unreachable.fetch_add(1, Ordering::Relaxed) + 1
            }
            Failure::Timeout | Failure::ServerError => {
                self.consecutive_unreachable.store(0, Ordering::Relaxed);
                0
            }
        };
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let was_marked = self.passive_unhealthy_until_ms.load(Ordering::Relaxed) != 0;
        if !was_marked && failures < policy.failures {
            return;
        }
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.unreachable
            .store(unreachable >= policy.failures, Ordering::Relaxed);
        let until = now_ms().saturating_add(millis(policy.unhealthy_for));
        self.passive_unhealthy_until_ms
            .store(until, Ordering::Relaxed);
        if !was_marked {
            tracing::warn!(
                backend = name,
                failures,
                unreachable = unreachable >= policy.failures,
                unhealthy_for_ms = millis(policy.unhealthy_for),
                "passive health: backend marked unhealthy"
            );
        }
    }

    /// Records an answer that proves the backend works (any non-5xx status): the failure counts
    /// start over and a passive mark is lifted (the half-open trial, or a last-resort attempt,
    /// found the backend answering again).
    pub fn record_success(&self, name: &str) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        if self.consecutive_unreachable.load(Ordering::Relaxed) != 0 {
            self.consecutive_unreachable.store(0, Ordering::Relaxed);
        }
        if self.passive_unhealthy_until_ms.swap(0, Ordering::Relaxed) != 0 {
            self.unreachable.store(false, Ordering::Relaxed);
            tracing::info!(backend = name, "passive health: backend answers again");
        }
    }

    /// An active probe's verdict. A healthy probe also lifts a passive mark: it decides as a
    /// half-open trial would.
    pub fn set_active_healthy(&self, healthy: bool, name: &str) {
        self.active_unhealthy.store(!healthy, Ordering::Relaxed);
        if healthy {
            self.record_success(name);
        }
    }

    /// Drops an active probe's mark: no probe will ever lift it once active checks are off.
    pub fn forget_active_verdict(&self) {
        self.active_unhealthy.store(false, Ordering::Relaxed);
    }

    /// Healthy: no active or passive mark in force.
    pub fn is_healthy(&self) -> bool {
        !self.active_unhealthy.load(Ordering::Relaxed)
            && self.passive_unhealthy_until_ms.load(Ordering::Relaxed) <= now_ms()
    }

    /// Whether the backend can be counted on for readiness: neither active checks nor connect
    /// failures have shown it dead. Passive marks from 5xx answers never count here: an
    /// orchestrator pulls an unready replica, and 5xx answers (often caused by the requests
    /// themselves) say the backend is there.
    pub fn reachable(&self) -> bool {
        let active_dead = self.active_unhealthy.load(Ordering::Relaxed);
        let passive_dead = self.unreachable.load(Ordering::Relaxed)
            && self.passive_unhealthy_until_ms.load(Ordering::Relaxed) > now_ms();
        !active_dead && !passive_dead
    }

    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts one in-flight request until the guard is dropped (bounded-load hashing uses it).
    pub fn track(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// A duration in clock milliseconds, saturating (durations from backends can be huge).
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Guard returned by [`BackendState::track`].
#[derive(Debug)]
pub struct InFlight(Arc<BackendState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(failures: u32, unhealthy_for: Duration) -> PassiveHealth {
        PassiveHealth {
            failures,
            unhealthy_for,
        }
    }

    #[test]
    fn a_cooldown_closes_its_deployment_only() {
        let state = BackendState::new();
        let policy = policy(3, Duration::from_secs(30));
        let (small, large) = (state.quotas.slot("small"), state.quotas.slot("large"));
        let until = state.quotas.at(small).cool_down(Duration::from_secs(60));
        assert_eq!(
            state.availability(Some(small), &policy),
            Err(Unavailable::CoolingDown { until_ms: until })
        );
        assert_eq!(state.availability(Some(large), &policy), Ok(()));
        assert!(state.is_healthy() && state.reachable());
    }

    #[test]
    fn passive_health_trips_after_consecutive_failures_only() {
        let policy = policy(2, Duration::from_secs(60));
        let state = BackendState::new();
        state.record_failure(&policy, Failure::ServerError, "a");
        state.record_success("a");
        state.record_failure(&policy, Failure::ServerError, "a");
        assert_eq!(state.availability(None, &policy), Ok(()));
        state.record_failure(&policy, Failure::ServerError, "a");
        assert_eq!(
            state.availability(None, &policy),
            Err(Unavailable::Unhealthy)
        );
        // 5xx answers say the backend is there: readiness is not touched.
        assert!(!state.is_healthy() && state.reachable());
    }

    #[test]
    fn after_its_window_one_trial_decides() {
        let policy = policy(1, Duration::from_millis(2));
        let wait_window = || std::thread::sleep(Duration::from_millis(5));
        let state = BackendState::new();
        state.record_failure(&policy, Failure::Unreachable, "a");
        assert_eq!(
            state.availability(None, &policy),
            Err(Unavailable::Unhealthy)
        );
        assert!(!state.reachable());
        wait_window();
        // The first request is the trial; the others are still kept away from it.
        assert_eq!(state.availability(None, &policy), Ok(()));
        assert_eq!(
            state.availability(None, &policy),
            Err(Unavailable::Unhealthy)
        );
        // A failed trial marks it again at once (one failure, not `failures` in a row).
        state.record_failure(&policy, Failure::Unreachable, "a");
        assert_eq!(
            state.availability(None, &policy),
            Err(Unavailable::Unhealthy)
        );
        wait_window();
        assert!(
            state.reachable(),
            "a window without a trial counts as reachable again"
        );
        assert_eq!(state.availability(None, &policy), Ok(()));
        state.record_success("a");
        assert_eq!(state.availability(None, &policy), Ok(()));
        assert_eq!(state.availability(None, &policy), Ok(()));
        assert!(state.is_healthy() && state.reachable());
    }

    #[test]
    fn a_healthy_probe_lifts_a_passive_mark() {
        let policy = policy(1, Duration::from_secs(60));
        let state = BackendState::new();
        state.record_failure(&policy, Failure::Unreachable, "a");
        assert!(!state.reachable());
        state.set_active_healthy(false, "a");
        assert!(!state.reachable());
        state.set_active_healthy(true, "a");
        assert!(state.reachable() && state.is_healthy());
        assert_eq!(state.availability(None, &policy), Ok(()));
    }
}
