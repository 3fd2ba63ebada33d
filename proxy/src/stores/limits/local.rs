//! In-process counters: one atomic per rate key, one window (an atomic counter behind an
//! `ArcSwap`) per window key; lock-free. Keys the config bounds (routes and lanes, consumers)
//! live in a copy-on-write map; keys clients choose (their addresses) in bounded caches that
//! forget keys idle for longer than any window could last, so a flood of client addresses costs
//! memory only up to the bound (a forgotten bucket starts again from zero).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::collections::HashMap;

use arc_swap::ArcSwap;
use rustc_hash::FxBuildHasher;

use super::{Charge, Check, Granted, Key, PerRequest, Rule, Ticket, Verdict, update};

/// Buckets kept per cache at most.
const CAPACITY: u64 = 200_000;
/// A bucket idle this long is forgotten (longer than a window may be).
const IDLE: Duration = Duration::from_secs(367 * 86_400);

pub struct Local {
    /// GCRA: each key's theoretical arrival time (µs on the process clock).
    rates: moka::sync::Cache<Key, Arc<AtomicU64>>,
    /// Windows of keys the config bounds (routes, lanes, consumers): a copy-on-write map read
    /// without a lock or any bookkeeping (a new key copies it, a handful of times per config),
    /// never evicting (there are only so many).
    windows: ArcSwap<HashMap<Key, Arc<Bucket>, FxBuildHasher>>,
    /// Windows of client addresses (request quotas without a known key): kept apart, so a
    /// flood of addresses can evict only other addresses' buckets, never a consumer's.
    addresses: moka::sync::Cache<Key, Arc<Bucket>>,
    /// Tells this store's entries of [`LAST_RATE`] from another's (a store made after this
    /// one was dropped may sit at the same address).
    id: u64,
}

thread_local! {
    /// The rate bucket this thread looked up last ([`Local::rate_bucket`]).
    static LAST_RATE: std::cell::RefCell<Option<LastRate>> = const { std::cell::RefCell::new(None) };
}

struct LastRate {
    store: u64,
    key: Key,
    tat: Arc<AtomicU64>,
    /// Process-clock µs until which it is used without asking moka again.
    until_us: u64,
}

/// How long a thread uses the rate bucket it looked up last without asking moka again.
const LAST_RATE_FOR_US: u64 = 1_000_000;

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local")
            .field("rates", &self.rates.entry_count())
            .field("windows", &self.windows.load().len())
            .field("addresses", &self.addresses.entry_count())
            .finish()
    }
}

/// A window key's current window; a new one replaces it when it has ended.
#[derive(Debug)]
pub struct Bucket {
    current: ArcSwap<Window>,
}

#[derive(Debug)]
pub struct Window {
    end_us: u64,
    /// Units used plus units reserved by requests still in flight.
    committed: AtomicU64,
}

/// A reservation's bucket and the window it was made in, by its end (a bucket's windows end
/// one after the other, so the end tells them apart; no reference to the window is kept).
#[derive(Debug)]
pub struct Held {
    bucket: Arc<Bucket>,
    end_us: u64,
}

/// Microseconds on the process clock (monotonic, never 0).
fn now_us() -> u64 {
    crate::clock::now_us()
}

impl Bucket {
    fn new() -> Self {
        Self {
            current: ArcSwap::from_pointee(Window {
                end_us: 0,
                committed: AtomicU64::new(0),
            }),
        }
    }

    /// The window running at `now`, starting one if the last has ended (when two requests
    /// start one at once, both use the one that was stored first).
    /// Read through a guard (no reference count taken) while the window runs.
    fn live(
        &self,
        now: u64,
        window_us: u64,
        committed: u64,
    ) -> (arc_swap::Guard<Arc<Window>>, bool) {
        let current = self.current.load();
        if now < current.end_us {
            return (current, false);
        }
        let fresh = Arc::new(Window {
            end_us: now.saturating_add(window_us),
            committed: AtomicU64::new(committed),
        });
        let previous = self.current.compare_and_swap(&*current, fresh.clone());
        if Arc::ptr_eq(&previous, &current) {
            (arc_swap::Guard::from_inner(fresh), true)
        } else {
            (previous, false)
        }
    }
}

fn bounded<V: Clone + Send + Sync + 'static>() -> moka::sync::Cache<Key, V> {
    moka::sync::Cache::builder()
        .max_capacity(CAPACITY)
        .time_to_idle(IDLE)
        .build()
}

impl Default for Local {
    fn default() -> Self {
        Self {
            rates: bounded(),
            windows: ArcSwap::from_pointee(HashMap::default()),
            addresses: bounded(),
            id: {
                static STORES: AtomicU64 = AtomicU64::new(0);
                STORES.fetch_add(1, Ordering::Relaxed)
            },
        }
    }
}

impl Local {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn admit(&self, checks: &[Check<'_>]) -> Verdict {
        let now = now_us();
        let mut granted: PerRequest<Granted> = PerRequest::new();
        for (index, check) in checks.iter().enumerate() {
            let result = match check.rule {
                Rule::Rate {
                    interval_us,
                    tolerance_us,
                } => self.rate(&check.key, interval_us, tolerance_us, now),
                Rule::Window { limit, window_us } => self.window(check, limit, window_us, now),
            };
            match result {
                Ok(grant) => granted.push(grant),
                Err(retry_us) => {
                    // All or nothing: give back what the checks before this one took.
                    for (check, grant) in checks.iter().zip(granted) {
                        self.undo(check, grant);
                    }
                    return Verdict::Refused {
                        index,
                        retry_us: retry_us.max(1),
                    };
                }
            }
        }
        Verdict::Admitted(granted)
    }

    /// The rate bucket of `key`: this thread's last one when it is the same address, of this
    /// store, looked up less than a second ago; else moka's (its lookup, SipHash and read
    /// recording included, was the largest part of an in-process admission: ~1.3 % of a
    /// limited request's samples; a keep-alive connection asks for one address again and
    /// again). Should moka evict that bucket meanwhile (only beyond `CAPACITY` addresses),
    /// this thread counts on the old one for at most that second: the loose side, in a flood.
    fn rate_bucket(&self, key: &Key, now: u64) -> Arc<AtomicU64> {
        LAST_RATE.with_borrow_mut(|last| {
            if let Some(last) = last
                && last.store == self.id
                && now < last.until_us
                && last.key == *key
            {
                return last.tat.clone();
            }
            let tat = self
                .rates
                .get_with_by_ref(key, || Arc::new(AtomicU64::new(0)));
            *last = Some(LastRate {
                store: self.id,
                key: key.clone(),
                tat: tat.clone(),
                until_us: now.saturating_add(LAST_RATE_FOR_US),
            });
            tat
        })
    }

    fn rate(&self, key: &Key, interval: u64, tolerance: u64, now: u64) -> Result<Granted, u64> {
        let tat = self.rate_bucket(key, now);
        let mut seen = tat.load(Ordering::Acquire);
        loop {
            let base = seen.max(now);
            if base - now > tolerance {
                return Err(base - now - tolerance);
            }
            let next = base.saturating_add(interval);
            match tat.compare_exchange_weak(seen, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    return Ok(Granted {
                        remaining: tolerance
                            .saturating_add(interval)
                            .saturating_sub(next - now)
                            / interval,
                        reset_us: next - now,
                        ticket: Ticket::Rate,
                    });
                }
                Err(current) => seen = current,
            }
        }
    }

    fn window(
        &self,
        check: &Check<'_>,
        limit: u64,
        window_us: u64,
        now: u64,
    ) -> Result<Granted, u64> {
        let (key, cost) = (&check.key, check.cost);
        let bucket = match (check.slot, key) {
            // Found once per config, not per request (a map lookup was most of a window's cost).
            (Some(slot), _) => slot.get_or_init(|| self.bounded_bucket(key)).clone(),
            (None, Key::Quota(super::Who::Address(_))) => self
                .addresses
                .get_with_by_ref(key, || Arc::new(Bucket::new())),
            (None, _) => self.bounded_bucket(key),
        };
        let (window, _) = bucket.live(now, window_us, 0);
        let mut seen = window.committed.load(Ordering::Acquire);
        loop {
            if seen >= limit {
                return Err(window.end_us.saturating_sub(now));
            }
            let next = seen.saturating_add(cost);
            match window.committed.compare_exchange_weak(
                seen,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    let end_us = window.end_us;
                    drop(window);
                    return Ok(Granted {
                        remaining: limit.saturating_sub(next),
                        reset_us: end_us.saturating_sub(now),
                        ticket: Ticket::Local(Held { bucket, end_us }),
                    });
                }
                Err(current) => seen = current,
            }
        }
    }

    /// The bucket of a key the config bounds, made the first time it is asked for.
    fn bounded_bucket(&self, key: &Key) -> Arc<Bucket> {
        if let Some(bucket) = self.windows.load().get(key) {
            return bucket.clone();
        }
        let fresh = Arc::new(Bucket::new());
        self.windows.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.entry(key.clone()).or_insert_with(|| fresh.clone());
            map
        });
        // The one stored first, should two threads have made one at once.
        self.windows.load().get(key).cloned().unwrap_or(fresh)
    }

    /// Gives back what an admitted check took, when a later check of the request refused.
    fn undo(&self, check: &Check<'_>, grant: Granted) {
        match (check.rule, grant.ticket) {
            (Rule::Rate { interval_us, .. }, _) => {
                let tat = self.rate_bucket(&check.key, now_us());
                update(&tat, |t| t.saturating_sub(interval_us));
            }
            (Rule::Window { .. }, Ticket::Local(held)) => {
                let current = held.bucket.current.load();
                // Else that window has ended meanwhile, its reservation with it.
                if current.end_us == held.end_us {
                    update(&current.committed, |c| c.saturating_sub(check.cost));
                }
            }
            _ => {}
        }
    }

    pub fn settle(&self, charges: impl IntoIterator<Item = Charge>) {
        // Whether a window (seconds long) is over, to within a kernel tick: a settlement at the
        // very end of its window may count in it rather than in the next.
        let now = crate::clock::coarse_us();
        for charge in charges {
            let Ticket::Local(held) = charge.ticket else {
                continue;
            };
            if charge.reserved == charge.actual {
                // What was reserved was used: it counts in the window it was admitted in.
                continue;
            }
            let current = held.bucket.current.load();
            if current.end_us == held.end_us && now < held.end_us {
                // The window it was reserved in: the reservation becomes what was used.
                update(&current.committed, |c| {
                    c.saturating_sub(charge.reserved)
                        .saturating_add(charge.actual)
                });
            } else if charge.actual > 0 {
                // That window is over (its reservation went with it): what was used counts in
                // the window running now, which it may start.
                drop(current);
                let (live, started) = held.bucket.live(now, charge.window_us, charge.actual);
                if !started {
                    live.committed.fetch_add(charge.actual, Ordering::AcqRel);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Lane;
    use crate::stores::limits::{Scope, Who};

    fn window(limit: u64, cost: u64) -> Check<'static> {
        Check {
            key: Key::Tokens(Scope::Consumer(None), Lane::High),
            rule: Rule::Window {
                limit,
                window_us: 3_600_000_000,
            },
            cost,
            slot: None,
        }
    }

    fn settle_all(local: &Local, verdict: Verdict, checks: &[Check<'_>], actual: u64) {
        let Verdict::Admitted(grants) = verdict else {
            panic!("refused")
        };
        let charges: Vec<Charge> = checks
            .iter()
            .zip(grants)
            .map(|(check, grant)| Charge {
                key: check.key.clone(),
                window_us: 3_600_000_000,
                reserved: check.cost,
                actual,
                ticket: grant.ticket,
            })
            .collect();
        local.settle(charges);
    }

    #[test]
    fn a_window_admits_while_committed_is_below_the_limit_and_settles_to_real_use() {
        // 40 tokens, requests that reserve 25 and use 17: three pass, the fourth is refused.
        let local = Local::new();
        let checks = [window(40, 25)];
        for _ in 0..3 {
            let verdict = local.admit(&checks);
            settle_all(&local, verdict, &checks, 17);
        }
        assert!(matches!(
            local.admit(&checks),
            Verdict::Refused { index: 0, .. }
        ));
    }

    #[test]
    fn reservations_in_flight_bound_concurrent_admissions() {
        // Nothing settled yet: reservations alone fill the window.
        let local = Local::new();
        let checks = [window(100, 30)];
        let admitted = (0..10)
            .filter(|_| matches!(local.admit(&checks), Verdict::Admitted(_)))
            .count();
        assert_eq!(admitted, 4, "0, 30, 60, 90 are below 100; 120 is not");
    }

    #[test]
    fn a_refusal_charges_none_of_the_requests_other_checks() {
        let local = Local::new();
        let quota = Check {
            key: Key::Quota(Who::Consumer("a".into())),
            rule: Rule::Window {
                limit: 2,
                window_us: 3_600_000_000,
            },
            cost: 1,
            slot: None,
        };
        let full = window(1, 1);
        assert!(matches!(
            local.admit(std::slice::from_ref(&full)),
            Verdict::Admitted(_)
        ));
        for _ in 0..5 {
            assert!(matches!(
                local.admit(&[quota.clone(), full.clone()]),
                Verdict::Refused { index: 1, .. }
            ));
        }
        // The quota was given back every time: both of its requests are still there.
        for _ in 0..2 {
            assert!(matches!(
                local.admit(std::slice::from_ref(&quota)),
                Verdict::Admitted(_)
            ));
        }
        assert!(matches!(
            local.admit(std::slice::from_ref(&quota)),
            Verdict::Refused { .. }
        ));
    }

    #[test]
    fn gcra_lets_a_burst_through_then_one_request_per_interval() {
        let local = Local::new();
        let check = Check {
            key: Key::Rate("127.0.0.1".parse().unwrap()),
            // One request per hour, burst 2: three at once, then none for an hour.
            rule: Rule::Rate {
                interval_us: 3_600_000_000,
                tolerance_us: 2 * 3_600_000_000,
            },
            cost: 1,
            slot: None,
        };
        let remaining: Vec<u64> = (0..3)
            .map(|_| match local.admit(std::slice::from_ref(&check)) {
                Verdict::Admitted(grants) => grants[0].remaining,
                Verdict::Refused { .. } => panic!("refused within the burst"),
            })
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        match local.admit(std::slice::from_ref(&check)) {
            Verdict::Refused { retry_us, .. } => {
                assert!(retry_us > 3_500_000_000 && retry_us <= 3_600_000_000)
            }
            Verdict::Admitted(_) => panic!("admitted beyond the burst"),
        }
    }

    #[test]
    fn a_threads_last_rate_bucket_is_never_another_stores() {
        // One request an hour, no burst: a store's second request is refused, a new store's
        // first (same thread, same address) is not.
        let check = Check {
            key: Key::Rate("10.1.2.3".parse().unwrap()),
            rule: Rule::Rate {
                interval_us: 3_600_000_000,
                tolerance_us: 0,
            },
            cost: 1,
            slot: None,
        };
        let admits = |store: &Local| {
            matches!(
                store.admit(std::slice::from_ref(&check)),
                Verdict::Admitted(_)
            )
        };
        let one = Local::new();
        assert!(admits(&one) && !admits(&one));
        drop(one);
        let two = Local::new();
        assert!(admits(&two), "a new store's first request is its own");
        assert!(!admits(&two));
    }

    #[test]
    fn settlement_after_the_window_ended_counts_in_the_next_one() {
        let local = Local::new();
        let check = Check {
            key: Key::TokenQuota("a".into()),
            rule: Rule::Window {
                limit: 10,
                window_us: 1,
            },
            cost: 5,
            slot: None,
        };
        let Verdict::Admitted(mut grants) = local.admit(std::slice::from_ref(&check)) else {
            panic!()
        };
        // The window (1 µs) is over by now, also for the settlement's clock (a kernel tick, a
        // few ms); the 12 tokens used start the next one, full.
        std::thread::sleep(Duration::from_millis(30));
        let Ticket::Local(held) = grants.remove(0).ticket else {
            panic!()
        };
        let bucket = held.bucket.clone();
        local.settle([Charge {
            key: check.key.clone(),
            window_us: 3_600_000_000,
            reserved: 5,
            actual: 12,
            ticket: Ticket::Local(held),
        }]);
        assert_eq!(bucket.current.load().committed.load(Ordering::Acquire), 12);
    }
}
