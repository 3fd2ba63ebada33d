//! What a backend's deployments say of their quota. Azure enforces quotas per deployment, not per
//! resource: a 429 for one deployment says nothing of the others, so cooldowns and the last
//! `x-ratelimit-remaining-*` seen are kept per backend *and* deployment (the real deployment name
//! on that backend, after alias rewriting).
//!
//! A deployment's name is looked up once per attempt, before the request goes out ([`Quotas::find`]:
//! a lock-free copy-on-write map behind an `ArcSwap`, read without a lock); what the answer says is
//! then written through the slot number ([`Quotas::at`]), without hashing the name again (its bytes
//! are cold by the time the answer is in). Deployment names come from clients, so a name gets a
//! slot ([`Quotas::slot`]) only once its backend has answered for it with a success or a 429
//! (a name the backend does not know never takes one), and a backend keeps at most
//! [`MAX_DEPLOYMENTS`]; any further name shares one overflow slot, shown as [`OVERFLOW_LABEL`]
//! (not a valid deployment name). Slots are never freed while the backend lives, so a slot number
//! stays good.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustc_hash::FxBuildHasher;

use crate::clock::now_ms;

/// Deployments tracked per backend at most.
pub const MAX_DEPLOYMENTS: usize = 256;
/// The slot the deployments beyond [`MAX_DEPLOYMENTS`] share.
const OVERFLOW: usize = MAX_DEPLOYMENTS;
/// How the overflow slot is named in metrics: parentheses are not allowed in deployment names.
pub const OVERFLOW_LABEL: &str = "(other)";

/// One deployment's quota state.
#[derive(Debug)]
pub struct Quota {
    cooldown_until_ms: AtomicU64,
    /// Last `x-ratelimit-remaining-tokens` seen; -1 = unknown.
    remaining_tokens: AtomicI64,
    /// Last `x-ratelimit-remaining-requests` seen; -1 = unknown.
    remaining_requests: AtomicI64,
}

impl Default for Quota {
    fn default() -> Self {
        Self {
            cooldown_until_ms: AtomicU64::new(0),
            remaining_tokens: AtomicI64::new(-1),
            remaining_requests: AtomicI64::new(-1),
        }
    }
}

impl Quota {
    /// When its cooldown ends (clock ms), if it is cooling down. The clock is read only when a
    /// cooldown was ever set; an expired one is forgotten, so later calls skip the clock again.
    pub fn cooling_until(&self) -> Option<u64> {
        let until = self.cooldown_until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return None;
        }
        if until > now_ms() {
            return Some(until);
        }
        // Over: forget it (a concurrent new cooldown is larger and survives the exchange).
        let _ =
            self.cooldown_until_ms
                .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed);
        None
    }

    /// Starts (or extends) a cooldown; returns the clock time it ends.
    pub fn cool_down(&self, duration: Duration) -> u64 {
        let until = now_ms().saturating_add(duration.as_millis().min(u64::MAX as u128) as u64);
        self.cooldown_until_ms.fetch_max(until, Ordering::Relaxed);
        self.cooldown_until_ms.load(Ordering::Relaxed)
    }

    /// Remaining cooldown, zero when none.
    pub fn cooldown_remaining(&self) -> Duration {
        crate::clock::until(self.cooldown_until_ms.load(Ordering::Relaxed))
    }

    /// Notes what the deployment says is left. Unchanged values are not written again: every
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

    /// Last remaining tokens/requests reported (None = never seen).
    pub fn remaining(&self) -> (Option<i64>, Option<i64>) {
        let known = |v: i64| (v >= 0).then_some(v);
        (
            known(self.remaining_tokens.load(Ordering::Relaxed)),
            known(self.remaining_requests.load(Ordering::Relaxed)),
        )
    }
}

type Names = HashMap<Box<str>, usize, FxBuildHasher>;

/// The quotas of one backend's deployments.
#[derive(Debug)]
pub struct Quotas {
    names: ArcSwap<Names>,
    /// One per name in `names`, plus the overflow slot; filled once, never emptied.
    slots: Box<[OnceLock<Quota>]>,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            names: ArcSwap::default(),
            slots: (0..=MAX_DEPLOYMENTS).map(|_| OnceLock::new()).collect(),
        }
    }
}

impl Quotas {
    /// The slot of `deployment`, if it has one (a lookup only: nothing is created).
    pub fn find(&self, deployment: &str) -> Option<usize> {
        self.names.load().get(deployment).copied()
    }

    /// The slot of `deployment`, given one the first time it is asked for.
    pub fn slot(&self, deployment: &str) -> usize {
        if let Some(slot) = self.find(deployment) {
            return slot;
        }
        let mut given = OVERFLOW;
        self.names.rcu(|names| {
            if let Some(&slot) = names.get(deployment) {
                given = slot;
                return Arc::clone(names);
            }
            if names.len() >= MAX_DEPLOYMENTS {
                given = OVERFLOW;
                return Arc::clone(names);
            }
            given = names.len();
            let mut names = Names::clone(names);
            names.insert(deployment.into(), given);
            Arc::new(names)
        });
        given
    }

    /// The quota in `slot` (from [`Quotas::slot`]).
    pub fn at(&self, slot: usize) -> &Quota {
        self.slots[slot.min(OVERFLOW)].get_or_init(Quota::default)
    }

    /// Runs `use_it` on the quota of `deployment`.
    pub fn with<R>(&self, deployment: &str, use_it: impl FnOnce(&Quota) -> R) -> R {
        use_it(self.at(self.slot(deployment)))
    }

    /// Every deployment seen, with its quota (for the metrics).
    pub fn each(&self, mut visit: impl FnMut(&str, &Quota)) {
        for (name, &slot) in self.names.load().iter() {
            visit(name, self.at(slot));
        }
        if let Some(overflow) = self.slots[OVERFLOW].get() {
            visit(OVERFLOW_LABEL, overflow);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cooldown_of_one_deployment_leaves_the_others_open() {
        let quotas = Quotas::default();
        let until = quotas.with("small", |q| q.cool_down(Duration::from_secs(60)));
        assert_eq!(quotas.with("small", Quota::cooling_until), Some(until));
        assert_eq!(quotas.with("large", Quota::cooling_until), None);
        // A shorter cooldown never shortens a longer one.
        quotas.with("small", |q| q.cool_down(Duration::from_millis(1)));
        assert_eq!(quotas.with("small", Quota::cooling_until), Some(until));
        quotas.with("large", |q| q.set_remaining(Some(5), None));
        assert_eq!(quotas.with("large", Quota::remaining), (Some(5), None));
        assert_eq!(quotas.with("small", Quota::remaining), (None, None));
        // A slot number stays the deployment's.
        let slot = quotas.slot("large");
        assert_eq!(quotas.at(slot).remaining(), (Some(5), None));
    }

    #[test]
    fn client_chosen_names_are_bounded() {
        let quotas = Quotas::default();
        for i in 0..MAX_DEPLOYMENTS + 50 {
            quotas.with(&format!("d{i}"), |q| q.set_remaining(Some(i as i64), None));
        }
        let mut seen = 0;
        quotas.each(|_, _| seen += 1);
        assert_eq!(seen, MAX_DEPLOYMENTS + 1);
        // The names beyond the bound share one slot; the first ones keep theirs.
        assert_eq!(quotas.with("d0", Quota::remaining), (Some(0), None));
        let last = (MAX_DEPLOYMENTS + 49) as i64;
        assert_eq!(quotas.with("d999999", Quota::remaining), (Some(last), None));
    }

    #[test]
    fn a_huge_retry_hint_does_not_overflow() {
        let quota = Quota::default();
        quota.cool_down(Duration::MAX);
        assert!(quota.cooling_until().is_some());
    }
}
