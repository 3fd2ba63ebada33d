//! Tokens-per-minute limit over a sliding 60 s window per deployment, as Azure enforces it (a
//! quota belongs to a deployment, not to the resource): a request that does not fit gets a 429
//! telling it how long until enough tokens free up.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);

/// Requests per minute Azure grants per 1000 tokens per minute.
const REQUESTS_PER_THOUSAND_TOKENS: u64 = 6;

/// Outcome of asking the window for tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Admitted {
        remaining_tokens: u64,
        remaining_requests: u64,
    },
    Throttled {
        retry_after: Duration,
    },
}

/// Tokens spent in the last minute, per deployment.
#[derive(Debug, Default)]
pub(crate) struct TokenWindows {
    deployments: Mutex<HashMap<String, WindowInner>>,
}

#[derive(Debug, Default)]
struct WindowInner {
    spent: VecDeque<(Instant, u64)>,
    total: u64,
}

impl WindowInner {
    fn expire(&mut self, now: Instant) {
        while let Some(&(at, tokens)) = self.spent.front() {
            if now.saturating_duration_since(at) < WINDOW {
                break;
            }
            self.total -= tokens;
            self.spent.pop_front();
        }
    }
}

impl TokenWindows {
    /// Spends `cost` tokens of `deployment`'s window if they fit in `limit`. A request larger
    /// than the whole limit is let through when the window is empty, so that it cannot be
    /// refused forever.
    pub(crate) fn admit(&self, deployment: &str, limit: u64, cost: u64, now: Instant) -> Admission {
        let mut deployments = self
            .deployments
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let inner = deployments.entry(deployment.to_owned()).or_default();
        inner.expire(now);
        if inner.total == 0 || inner.total.saturating_add(cost) <= limit {
            inner.total = inner.total.saturating_add(cost);
            inner.spent.push_back((now, cost));
            let request_limit = (limit.saturating_mul(REQUESTS_PER_THOUSAND_TOKENS) / 1000).max(1);
            return Admission::Admitted {
                remaining_tokens: limit.saturating_sub(inner.total),
                remaining_requests: request_limit.saturating_sub(inner.spent.len() as u64),
            };
        }
        let mut still_spent = inner.total;
        let mut free_at = now;
        for &(at, tokens) in &inner.spent {
            still_spent -= tokens;
            free_at = at + WINDOW;
            if still_spent == 0 || still_spent.saturating_add(cost) <= limit {
                break;
            }
        }
        let retry_after = free_at
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        Admission::Throttled { retry_after }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_until_the_oldest_spend_expires() {
        let window = TokenWindows::default();
        let start = Instant::now();
        assert!(matches!(
            window.admit("d", 100, 60, start),
            Admission::Admitted {
                remaining_tokens: 40,
                ..
            }
        ));
        let later = start + Duration::from_secs(10);
        assert!(matches!(
            window.admit("d", 100, 30, later),
            Admission::Admitted {
                remaining_tokens: 10,
                ..
            }
        ));
        // 90 spent; 20 more only fits once the first 60 expire, 50 s from `later`.
        let now = later;
        assert_eq!(
            window.admit("d", 100, 20, now),
            Admission::Throttled {
                retry_after: Duration::from_secs(50)
            }
        );
        let after_expiry = start + WINDOW;
        assert!(matches!(
            window.admit("d", 100, 20, after_expiry),
            Admission::Admitted {
                remaining_tokens: 50,
                ..
            }
        ));
    }

    #[test]
    fn each_deployment_has_its_own_window() {
        let window = TokenWindows::default();
        let now = Instant::now();
        assert!(matches!(
            window.admit("a", 100, 100, now),
            Admission::Admitted { .. }
        ));
        assert!(matches!(
            window.admit("a", 100, 1, now),
            Admission::Throttled { .. }
        ));
        assert!(matches!(
            window.admit("b", 100, 60, now),
            Admission::Admitted {
                remaining_tokens: 40,
                ..
            }
        ));
    }

    #[test]
    fn oversized_request_passes_an_empty_window() {
        let window = TokenWindows::default();
        let now = Instant::now();
        assert!(matches!(
            window.admit("d", 10, 50, now),
            Admission::Admitted {
                remaining_tokens: 0,
                ..
            }
        ));
        assert!(matches!(
            window.admit("d", 10, 1, now),
            Admission::Throttled { .. }
        ));
    }
}
