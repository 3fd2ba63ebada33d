//! In-process counters: one atomic per rate key, two per window key (the window's end and its
//! count, tagged with the window's generation); lock-free. Keys the config bounds (routes and
//! lanes, consumers) live in a copy-on-write map; keys clients choose (their addresses) in
//! bounded caches that forget keys idle for longer than any window could last, so a flood of
//! client addresses costs memory only up to the bound (a forgotten bucket starts again from
//! zero).

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
    /// The rate bucket this thread looked up last ([`Local::with_rate_bucket`]).
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

/// A window key's counter: the running window's end and what is committed in it, each tagged
/// with the window's generation, so that one compare-and-swap of `state` counts in exactly the
/// window it read, and an ended window is replaced without a lock or an allocation. Each word
/// holds a 48-bit value above a 16-bit generation (see [`pack`]).
#[derive(Debug)]
pub struct Bucket {
    /// The running window's end (µs on the process clock) and generation.
    end: AtomicU64,
    /// Units used plus units reserved by requests still in flight in that window, and the
    /// window's generation. A window's end is stored first: a state one generation behind is
    /// the new window's, not reset yet ([`Bucket::live`] finishes that).
    state: AtomicU64,
}

/// Bits of a word's generation; the value takes the rest.
const GEN_BITS: u32 = 16;
const GEN_MASK: u64 = (1 << GEN_BITS) - 1;
/// The largest value a word holds: counts saturate there (2.8 × 10^14 units a window), and a
/// window's end is at most that many µs after the process started (8.9 years).
const VALUE_MAX: u64 = u64::MAX >> GEN_BITS;

/// A word of a [`Bucket`]: `value` (saturated at [`VALUE_MAX`]) above generation `generation`.
fn pack(generation: u64, value: u64) -> u64 {
    (value.min(VALUE_MAX) << GEN_BITS) | (generation & GEN_MASK)
}

fn generation(word: u64) -> u64 {
    word & GEN_MASK
}

fn value(word: u64) -> u64 {
    word >> GEN_BITS
}

/// The window of a bucket running at some instant, as read.
struct Live {
    generation: u64,
    end_us: u64,
    /// The bucket's state as read (of this generation).
    state: u64,
}

/// A reservation's bucket and the window it was made in: its generation (which tells a
/// bucket's windows apart for 65 536 windows in a row) and its end.
#[derive(Debug, Clone)]
pub struct Held {
    bucket: Arc<Bucket>,
    generation: u64,
    end_us: u64,
}

/// Microseconds on the process clock (monotonic, never 0).
fn now_us() -> u64 {
    crate::clock::now_us()
}

impl Bucket {
    fn new() -> Self {
        // Generation 0 ended at 0: the first request starts generation 1.
        Self {
            end: AtomicU64::new(pack(0, 0)),
            state: AtomicU64::new(pack(0, 0)),
        }
    }

    /// The window running at `now`, starting one (ending `window_us` later) if the last has
    /// ended: the first thread to store the new end starts it, and any thread that sees the
    /// end ahead of the count resets the count for it.
    fn live(&self, now: u64, window_us: u64) -> Live {
        loop {
            let end = self.end.load(Ordering::Acquire);
            let state = self.state.load(Ordering::Acquire);
            let running = generation(end);
            if generation(state) != running {
                if running == (generation(state) + 1) & GEN_MASK {
                    // The new window's end is stored, its count not reset yet.
                    let fresh = pack(running, 0);
                    let _ = self.state.compare_exchange(
                        state,
                        fresh,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                }
                // Else the end was read before a new window started and the count after.
                continue;
            }
            let end_us = value(end);
            if now < end_us {
                return Live {
                    generation: running,
                    end_us,
                    state,
                };
            }
            // At least a µs: a window that ended as it started would be started again forever.
            let next = pack(running + 1, now.saturating_add(window_us.max(1)));
            let _ = self
                .end
                .compare_exchange(end, next, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Applies `f` to what window `generation` has committed; false when that window is no
    /// longer the bucket's (it ended, and what was reserved in it with it).
    fn adjust(&self, generation_of: u64, f: impl Fn(u64) -> u64) -> bool {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if generation(state) != generation_of {
                return false;
            }
            let next = pack(generation_of, f(value(state)));
            match self
                .state
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(seen) => state = seen,
            }
        }
    }

    /// What the running window has committed (the tests' view).
    #[cfg(test)]
    fn committed(&self) -> u64 {
        value(self.state.load(Ordering::Acquire))
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

    /// Runs `f` on the rate bucket of `key`: this thread's last one when it is the same
    /// address, of this store, looked up less than a second ago (borrowed, no reference count
    /// taken); else moka's (its lookup, SipHash and read recording included, was the largest
    /// part of an in-process admission: ~1.3 % of a limited request's samples; a keep-alive
    /// connection asks for one address again and again). Should moka evict that bucket
    /// meanwhile (only beyond `CAPACITY` addresses), this thread counts on the old one for at
    /// most that second: the loose side, in a flood.
    fn with_rate_bucket<R>(&self, key: &Key, now: u64, f: impl FnOnce(&AtomicU64) -> R) -> R {
        LAST_RATE.with_borrow_mut(|last| {
            if let Some(last) = last
                && last.store == self.id
                && now < last.until_us
                && last.key == *key
            {
                return f(&last.tat);
            }
            let tat = self
                .rates
                .get_with_by_ref(key, || Arc::new(AtomicU64::new(0)));
            let last = last.insert(LastRate {
                store: self.id,
                key: key.clone(),
                tat,
                until_us: now.saturating_add(LAST_RATE_FOR_US),
            });
            f(&last.tat)
        })
    }

    fn rate(&self, key: &Key, interval: u64, tolerance: u64, now: u64) -> Result<Granted, u64> {
        self.with_rate_bucket(key, now, |tat| {
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
        })
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
        let mut live = bucket.live(now, window_us);
        let mut state = live.state;
        loop {
            let committed = value(state);
            if committed >= limit {
                return Err(live.end_us.saturating_sub(now));
            }
            let next = committed.saturating_add(cost);
            match bucket.state.compare_exchange_weak(
                state,
                pack(live.generation, next),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    let Live {
                        generation, end_us, ..
                    } = live;
                    return Ok(Granted {
                        remaining: limit.saturating_sub(next),
                        reset_us: end_us.saturating_sub(now),
                        ticket: Ticket::Local(Held {
                            bucket,
                            generation,
                            end_us,
                        }),
                    });
                }
                Err(seen) if generation(seen) == live.generation => state = seen,
                // A new window started meanwhile.
                Err(_) => {
                    live = bucket.live(now, window_us);
                    state = live.state;
                }
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
                self.with_rate_bucket(&check.key, now_us(), |tat| {
                    update(tat, |t| t.saturating_sub(interval_us));
                });
            }
            (Rule::Window { .. }, Ticket::Local(held)) => {
                // False when that window has ended meanwhile, its reservation with it.
                held.bucket
                    .adjust(held.generation, |c| c.saturating_sub(check.cost));
            }
            _ => {}
        }
    }

    /// Settles each reservation to what its request used (`actual`), in place: the charges
    /// stay where they are (the request's context).
    pub fn settle<'c>(&self, charges: impl IntoIterator<Item = (&'c Charge, u64)>) {
        // Whether a window (seconds long) is over, to within a kernel tick: a settlement at the
        // very end of its window may count in it rather than in the next.
        let mut now = None;
        for (charge, actual) in charges {
            let Ticket::Local(held) = &charge.ticket else {
                continue;
            };
            if charge.reserved == actual {
                // What was reserved was used: it counts in the window it was admitted in.
                continue;
            }
            let now = *now.get_or_insert_with(crate::clock::coarse_us);
            let bucket = &held.bucket;
            // In the window it was reserved in, while it runs: the reservation becomes what
            // was used.
            let in_place = now < held.end_us
                && bucket.adjust(held.generation, |c| {
                    c.saturating_sub(charge.reserved).saturating_add(actual)
                });
            if !in_place && actual > 0 {
                // That window is over (its reservation went with it): what was used counts in
                // the window running now, which it may start.
                while !bucket.adjust(bucket.live(now, charge.window_us).generation, |c| {
                    c.saturating_add(actual)
                }) {}
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
        local.settle(charges.iter().map(|c| (c, c.actual)));
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

    /// Windows that end every few microseconds while threads admit, settle and give back in
    /// them: every admission counts in the window it was granted in (its generation), no window
    /// ever holds more than the limit plus one request's reservation, and the bucket's two words
    /// end in the same window.
    #[test]
    fn windows_that_end_under_concurrent_admissions_count_each_request_in_its_own() {
        const LIMIT: u64 = 10;
        const COST: u64 = 3;
        let local = Arc::new(Local::new());
        let check = Check {
            key: Key::Tokens(Scope::Consumer(None), Lane::High),
            rule: Rule::Window {
                limit: LIMIT,
                window_us: 20,
            },
            cost: COST,
            slot: None,
        };
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let (local, check) = (local.clone(), check.clone());
                std::thread::spawn(move || {
                    let mut granted = Vec::new();
                    for i in 0..20_000u64 {
                        let Verdict::Admitted(mut grants) =
                            local.admit(std::slice::from_ref(&check))
                        else {
                            continue;
                        };
                        let Ticket::Local(held) = grants.remove(0).ticket else {
                            panic!("not a local ticket")
                        };
                        granted.push(held.generation);
                        // Some settle to less (the reservation shrinks in its own window, or
                        // nothing when it ended), some give all back.
                        if (i + thread) % 3 == 0 {
                            let charge = Charge {
                                key: check.key.clone(),
                                window_us: 20,
                                reserved: COST,
                                actual: COST,
                                ticket: Ticket::Local(held),
                            };
                            local.settle([(&charge, 1)]);
                        }
                    }
                    granted
                })
            })
            .collect();
        let mut per_window = std::collections::HashMap::<u64, u64>::new();
        for thread in threads {
            for generation in thread.join().unwrap() {
                *per_window.entry(generation).or_default() += 1;
            }
        }
        assert!(
            per_window.len() > 10,
            "the windows did not roll over: {per_window:?}"
        );
        // At most as many grants as fit below the limit with one reservation over it (settling
        // to less lets more in, up to this bound of grants: ceil(10 / 1)).
        for (generation, grants) in &per_window {
            assert!(*grants <= LIMIT, "window {generation}: {grants} grants");
        }
        let bucket = local.bounded_bucket(&check.key);
        let end = bucket.end.load(Ordering::Acquire);
        let state = bucket.state.load(Ordering::Acquire);
        assert_eq!(generation(end), generation(state));
        assert!(value(state) <= LIMIT - 1 + COST);
    }

    /// A window started by another thread that has stored its end but not yet reset the count
    /// (the count one generation behind): the next admission finishes the start, counts in the
    /// new window from zero, and nothing settles into the old one any more.
    #[test]
    fn an_admission_finishes_a_window_another_thread_started() {
        let local = Local::new();
        let check = window(10, 4);
        let Verdict::Admitted(mut grants) = local.admit(std::slice::from_ref(&check)) else {
            panic!("refused")
        };
        let Ticket::Local(old) = grants.remove(0).ticket else {
            panic!()
        };
        let bucket = old.bucket.clone();
        // As another thread leaves it between its two steps: window old + 1 ends in an hour,
        // the count is still the old window's, full.
        let far = now_us() + 3_600_000_000;
        bucket
            .end
            .store(pack(old.generation + 1, far), Ordering::Release);
        bucket
            .state
            .store(pack(old.generation, 10), Ordering::Release);
        let Verdict::Admitted(mut grants) = local.admit(std::slice::from_ref(&check)) else {
            panic!("counted against the old window")
        };
        let grant = grants.remove(0);
        assert_eq!(grant.remaining, 6);
        let Ticket::Local(new) = grant.ticket else {
            panic!()
        };
        assert_eq!(new.generation, old.generation + 1);
        assert_eq!(new.end_us, far);
        assert_eq!(
            bucket.state.load(Ordering::Acquire),
            pack(new.generation, 4)
        );
        // The old window's reservation is gone with it: neither settling nor giving it back
        // touches the new one.
        assert!(!bucket.adjust(old.generation, |c| c.saturating_sub(4)));
        assert_eq!(bucket.committed(), 4);
    }

    /// A window shorter than the clock's µs (a config's `1ns`) still starts and admits.
    #[test]
    fn a_window_shorter_than_a_microsecond_admits() {
        let local = Local::new();
        let mut check = window(10, 1);
        check.rule = Rule::Window {
            limit: 10,
            window_us: 0,
        };
        assert!(matches!(
            local.admit(std::slice::from_ref(&check)),
            Verdict::Admitted(_)
        ));
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
        let charge = Charge {
            key: check.key.clone(),
            window_us: 3_600_000_000,
            reserved: 5,
            actual: 5,
            ticket: Ticket::Local(held),
        };
        local.settle([(&charge, 12)]);
        assert_eq!(bucket.committed(), 12);
    }
}
