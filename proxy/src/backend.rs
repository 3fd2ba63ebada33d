//! A backend at run time: its resolved config, pre-built header values and lock-free health state.
//!
//! Everything a request reads on the hot path is either immutable or an atomic here: cooldowns,
//! passive failure counts, active health and in-flight load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use http::HeaderValue;

use crate::clock::now_ms;
use crate::config::{BackendConfig, GatewayConfig, PassiveHealth};
use crate::upstream::{Pool, default_tls};

/// Why a backend cannot take an attempt right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// Cooling down after a 429 until this clock time (ms).
    CoolingDown { until_ms: u64 },
    /// Marked unhealthy by passive or active health.
    Unhealthy,
}

/// Mutable, lock-free state of one backend.
#[derive(Debug, Default)]
pub struct BackendState {
    cooldown_until_ms: AtomicU64,
    consecutive_failures: AtomicU32,
    passive_unhealthy_until_ms: AtomicU64,
    active_unhealthy: AtomicBool,
    in_flight: AtomicI64,
    /// Last `x-ratelimit-remaining-tokens` seen; -1 = unknown.
    remaining_tokens: AtomicI64,
    /// Last `x-ratelimit-remaining-requests` seen; -1 = unknown.
    remaining_requests: AtomicI64,
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
/// idle connections of any old backend with the same endpoint.
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

impl BackendState {
    pub fn new() -> Self {
        Self {
            remaining_tokens: AtomicI64::new(-1),
            remaining_requests: AtomicI64::new(-1),
            ..Self::default()
        }
    }

    /// Whether the backend may take an attempt now, and if not why.
    pub fn availability(&self) -> Result<(), Unavailable> {
        let cooldown = self.cooldown_until_ms.load(Ordering::Relaxed);
        let unhealthy_until = self.passive_unhealthy_until_ms.load(Ordering::Relaxed);
        let active_unhealthy = self.active_unhealthy.load(Ordering::Relaxed);
        // The clock is read only when a cooldown or passive mark was ever set (0 = never).
        if cooldown == 0 && unhealthy_until == 0 {
            return match active_unhealthy {
                true => Err(Unavailable::Unhealthy),
                false => Ok(()),
            };
        }
        let now = now_ms();
        if cooldown > now {
            return Err(Unavailable::CoolingDown { until_ms: cooldown });
        }
        if active_unhealthy || unhealthy_until > now {
            return Err(Unavailable::Unhealthy);
        }
        // Both are over: forget them, so later requests skip the clock again (a concurrent
        // new mark is larger and survives the exchange).
        let _ = self.cooldown_until_ms.compare_exchange(
            cooldown,
            0,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        let _ = self.passive_unhealthy_until_ms.compare_exchange(
            unhealthy_until,
            0,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        Ok(())
    }

    /// Starts (or extends) a cooldown; returns the clock time it ends.
    pub fn cool_down(&self, duration: Duration) -> u64 {
        let until = now_ms() + duration.as_millis() as u64;
        self.cooldown_until_ms.fetch_max(until, Ordering::Relaxed);
        until
    }

    /// Remaining cooldown, zero when none.
    pub fn cooldown_remaining(&self) -> Duration {
        crate::clock::until(self.cooldown_until_ms.load(Ordering::Relaxed))
    }

    /// Records a connect error, timeout or 5xx for passive health.
    pub fn record_failure(&self, policy: &PassiveHealth) {
        if policy.failures == 0 {
            return;
        }
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= policy.failures {
            let until = now_ms() + policy.unhealthy_for.as_millis() as u64;
            self.passive_unhealthy_until_ms
                .store(until, Ordering::Relaxed);
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// Records an answer that proves the backend works (any non-5xx status): the failure count
    /// starts over and a passive unhealthy mark is lifted (a last-resort attempt found the
    /// backend answering again).
    pub fn record_success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        if self.passive_unhealthy_until_ms.load(Ordering::Relaxed) != 0 {
            self.passive_unhealthy_until_ms.store(0, Ordering::Relaxed);
        }
    }

    pub fn set_active_healthy(&self, healthy: bool) {
        self.active_unhealthy.store(!healthy, Ordering::Relaxed);
    }

    pub fn is_healthy(&self) -> bool {
        !self.active_unhealthy.load(Ordering::Relaxed)
            && self.passive_unhealthy_until_ms.load(Ordering::Relaxed) <= now_ms()
    }

    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts one in-flight request until the guard is dropped (bounded-load hashing uses it).
    pub fn track(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Notes what the backend says is left. Unchanged values are not written again: every
    /// worker answers through this state, and a write takes the cache line from all of them.
    pub fn set_remaining(&self, tokens: Option<i64>, requests: Option<i64>) {
        for (value, slot) in [
            (tokens, &self.remaining_tokens),
            (requests, &self.remaining_requests),
        ] {
            if let Some(value) = value
                && slot.load(Ordering::Relaxed) != value
            {
                slot.store(value, Ordering::Relaxed);
            }
        }
    }

    /// Last remaining tokens/requests reported by the backend (None = never seen).
    pub fn remaining(&self) -> (Option<i64>, Option<i64>) {
        let known = |v: i64| (v >= 0).then_some(v);
        (
            known(self.remaining_tokens.load(Ordering::Relaxed)),
            known(self.remaining_requests.load(Ordering::Relaxed)),
        )
    }
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

    #[test]
    fn cooldown_makes_backend_unavailable_until_it_ends() {
        let state = BackendState::new();
        assert_eq!(state.availability(), Ok(()));
        let until = state.cool_down(Duration::from_secs(60));
        assert_eq!(
            state.availability(),
            Err(Unavailable::CoolingDown { until_ms: until })
        );
        // A shorter cooldown never shortens a longer one.
        state.cool_down(Duration::from_millis(1));
        assert_eq!(
            state.availability(),
            Err(Unavailable::CoolingDown { until_ms: until })
        );
    }

    #[test]
    fn passive_health_trips_after_consecutive_failures_only() {
        let policy = PassiveHealth {
            failures: 2,
            unhealthy_for: Duration::from_secs(60),
        };
        let state = BackendState::new();
        state.record_failure(&policy);
        state.record_success();
        state.record_failure(&policy);
        assert_eq!(state.availability(), Ok(()));
        state.record_failure(&policy);
        assert_eq!(state.availability(), Err(Unavailable::Unhealthy));
    }
}
