//! Counters in Redis, shared by every replica.
//!
//! - The store's own connection and its reconnect loop run on the background runtime
//!   ([`crate::background`]); it tells whether Redis is reachable. While it is not (Redis down,
//!   or not reached yet) every call fails at once with [`StoreError::Down`] and the loop keeps
//!   reconnecting (100 ms, doubling to 2 s between tries), so no request ever waits for a
//!   reconnect.
//! - A worker calls on a connection of its own, made on its thread in the background of its
//!   first call (which uses the store's meanwhile): an admission then never leaves the worker's
//!   thread. Through the store's connection, each call would wake the background thread and be
//!   woken by it, two cross-thread hops that cost ~60 µs a request on the benchmark machine, more
//!   than the Redis round trip itself (docs/benchmarks.md, "Guardrails"). That connection is
//!   our own lean one ([`super::resp`]), written and read by the request's task itself; a
//!   store whose URL it cannot serve (a Unix socket) calls through the store's only.
//! - Settlements are queued per thread and sent on the thread's own connection by a task of
//!   its own, one call at a time, everything queued in it ([`RedisStore::settle`]); without a
//!   connection of its own they go through the background runtime's queue.
//! - No call waits longer than `limits.redis.timeout`.
//!
//! Time comes from Redis (`TIME` inside the scripts), so replicas with skewed clocks still
//! share one window.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;

use super::resp;
use super::{Charge, Check, Granted, PerRequest, Rule, StoreError, Ticket, Verdict};
use crate::config::RedisConfig;
use tokio::sync::mpsc::Sender;

mod script;
mod settle;

use script::{Args, ScriptCall, eval, eval_own};
use settle::{SETTLE_QUEUE, Settlement, lost, settle_queued};

thread_local! {
    /// This thread's own connection to each Redis store in use (see the module's doc).
    static OWN: RefCell<Vec<Own>> = const { RefCell::new(Vec::new()) };
}

/// A thread's connection to one store; `None` while it is being made, or until `retry_ms`
/// after a failed try.
struct Own {
    store: Weak<RedisStore>,
    connection: Option<Arc<resp::Connection>>,
    /// The store's generation it was made in.
    generation: u64,
    /// Process-clock ms before which no new try is made.
    retry_ms: u64,
    /// Settlements of this thread's requests waiting for its connection (`settle::settle_own`).
    settlements: Vec<Settlement>,
    /// Whether a task of this thread is sending them (one call at a time).
    settling: bool,
}

static ADMIT: &str = include_str!("admit.lua");
static SETTLE: &str = include_str!("settle.lua");

pub struct RedisStore {
    config: RedisConfig,
    client: Option<redis::Client>,
    /// Where the threads' own connections go, and their handshake (`None`: only through the
    /// store's connection).
    target: Option<resp::Target>,
    connection: ArcSwapOption<MultiplexedConnection>,
    /// Wakes the reconnect loop when a call found the connection broken.
    broken: tokio::sync::Notify,
    admit: redis::Script,
    settle: redis::Script,
    /// Process-clock ms of the last warning (one per second at most).
    warned_ms: AtomicU64,
    /// Settlements waiting for the background runtime ([`settle_queued`]).
    settlements: Sender<Settlement>,
    /// Bumped by every new store connection: a worker's own connection made before the last
    /// reconnect is replaced (Redis restarted, or the path to it broke).
    generation: AtomicU64,
    /// Calls in a row that timed out or failed: a connection that is open but answers nothing
    /// (a flow dropped without a reset, a demoted primary) is replaced after a few.
    failures: AtomicU64,
    /// Dropped with the store: each worker then closes its own connection to it, on its thread
    /// (else a reload that turns Redis off would leave one open per worker).
    closed: tokio::sync::watch::Sender<()>,
}

/// Calls in a row that time out or fail before the connections are made again.
const FAILURES_BEFORE_RECONNECT: u64 = 3;

impl std::fmt::Debug for RedisStore {
    /// Never the URL: it may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("timeout", &self.config.timeout)
            .field("on_failure", &self.config.on_failure)
            .field("connected", &self.connection.load().is_some())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// The store, connecting in the background from now on.
    pub fn start(config: &RedisConfig) -> Arc<Self> {
        // The config was checked: a URL that still does not open leaves the store down (every
        // call fails with the failure policy), never a panic.
        let client = redis::Client::open(config.url.expose()).ok();
        // rediss:// builds its TLS config with the process's default provider: the gateway's
        // (ring). Installing it again is a no-op error.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (settlements, queue) = tokio::sync::mpsc::channel(SETTLE_QUEUE);
        let target = client
            .as_ref()
            .and_then(|c| resp::Target::of(c.get_connection_info()));
        let store = Arc::new(Self {
            config: config.clone(),
            client,
            target,
            connection: ArcSwapOption::empty(),
            broken: tokio::sync::Notify::new(),
            admit: redis::Script::new(ADMIT),
            settle: redis::Script::new(SETTLE),
            warned_ms: AtomicU64::new(0),
            settlements,
            generation: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            closed: tokio::sync::watch::channel(()).0,
        });
        if store.client.is_some() {
            let background = crate::background::handle();
            background.spawn(keep_connected(Arc::downgrade(&store)));
            background.spawn(settle_queued(Arc::downgrade(&store), queue));
        }
        store
    }

    pub fn fits(&self, config: &RedisConfig) -> bool {
        self.config.url.expose() == config.url.expose()
            && self.config.timeout == config.timeout
            && self.config.on_failure == config.on_failure
    }

    /// Whether there is a connection now.
    pub fn connected(&self) -> bool {
        self.connection.load().is_some()
    }

    /// Whether a warning may be logged now (at most one per second, so a Redis outage under
    /// load writes a line a second, not one per request).
    pub fn may_warn(&self) -> bool {
        let now = crate::clock::now_ms();
        let last = self.warned_ms.load(Ordering::Relaxed);
        (last == 0 || now >= last + 1000)
            && self
                .warned_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Settings of a connection: connecting may take longer than one call may wait (TLS,
    /// AUTH), but not forever.
    fn settings(&self) -> redis::AsyncConnectionConfig {
        let wait = self.config.timeout.max(Duration::from_secs(2));
        redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(wait))
            .set_response_timeout(Some(wait))
    }

    /// This thread's connection, when it has one of the current generation; else starts
    /// making it (on a runtime whose tasks all run on this thread: a worker's, or the
    /// background one), and the caller uses the store's meanwhile.
    fn own_connection(self: &Arc<Self>) -> Option<Arc<resp::Connection>> {
        let generation = self.generation.load(Ordering::Acquire);
        OWN.with_borrow_mut(|own| {
            own.retain(|o| o.store.strong_count() > 0);
            let mine = |o: &Own| std::ptr::eq(o.store.as_ptr(), Arc::as_ptr(self));
            if let Some(found) = own.iter_mut().find(|o| mine(o)) {
                if found.generation == generation {
                    if found.connection.as_ref().is_some_and(|c| !c.is_broken())
                        || crate::clock::now_ms() < found.retry_ms
                    {
                        return found.connection.clone();
                    }
                } else {
                    // Made before the last reconnect: replaced.
                    found.connection = None;
                }
                found.generation = generation;
                found.retry_ms = u64::MAX;
            } else {
                own.push(Own {
                    store: Arc::downgrade(self),
                    connection: None,
                    generation,
                    retry_ms: u64::MAX,
                    settlements: Vec::new(),
                    settling: false,
                });
                self.close_with_store();
            }
            let runtime = tokio::runtime::Handle::try_current().ok()?;
            if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
                return None;
            }
            let target = self.target.clone()?;
            let store = Arc::downgrade(self);
            let wait = self.config.timeout.max(Duration::from_secs(2));
            runtime.spawn(async move {
                let made = tokio::time::timeout(wait, resp::Connection::open(&target)).await;
                OWN.with_borrow_mut(|own| {
                    let Some(slot) = own.iter_mut().find(|o| o.store.ptr_eq(&store)) else {
                        return;
                    };
                    match made {
                        Ok(Ok(connection)) if slot.generation == generation => {
                            slot.connection = Some(connection);
                        }
                        Ok(Ok(_)) => slot.retry_ms = 0,
                        // Not before a second from now; calls meanwhile go through the
                        // store's connection.
                        failed => {
                            slot.retry_ms = crate::clock::now_ms() + 1000;
                            if let Some(live) = store.upgrade()
                                && live.may_warn()
                            {
                                let why = match &failed {
                                    Ok(Err(error)) => error.label(),
                                    _ => "timeout",
                                };
                                tracing::warn!(
                                    why,
                                    "limits: cannot open this thread's own connection to Redis; calling through the store's meanwhile"
                                );
                            }
                        }
                    }
                });
            });
            None
        })
    }

    /// On this thread's runtime (one whose tasks all run on this thread), a task that forgets
    /// this thread's connection to the store when the store is dropped.
    fn close_with_store(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
            return;
        }
        let mut closed = self.closed.subscribe();
        let store = Arc::downgrade(self);
        runtime.spawn(async move {
            // Nothing is ever sent: this ends when the sender, and the store with it, is gone.
            while closed.changed().await.is_ok() {}
            OWN.with_borrow_mut(|own| {
                own.retain(|o| {
                    let gone = o.store.ptr_eq(&store);
                    if gone {
                        lost(&o.settlements, "replaced");
                    }
                    !gone
                })
            });
        });
    }

    /// Forgets this thread's connection (it broke); a new one is made on a later call.
    fn forget_own(self: &Arc<Self>) {
        OWN.with_borrow_mut(|own| {
            if let Some(slot) = own
                .iter_mut()
                .find(|o| std::ptr::eq(o.store.as_ptr(), Arc::as_ptr(self)))
            {
                slot.connection = None;
                slot.retry_ms = 0;
            }
        });
    }

    /// The store's connection `used` is broken: dropped (unless the loop has already replaced
    /// it) and the reconnect loop woken.
    fn broke(&self, used: &Arc<MultiplexedConnection>) {
        let previous = self.connection.compare_and_swap(&Some(used.clone()), None);
        if previous.as_ref().is_some_and(|p| Arc::ptr_eq(p, used)) {
            self.broken.notify_one();
        }
    }

    /// Whether an error says this connection cannot serve the scripts any more.
    fn broken_by(error: &redis::RedisError) -> bool {
        error.is_io_error()
            || error.is_connection_dropped()
            || error.is_unrecoverable_error()
            || matches!(error.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
    }

    /// Makes a script call: on this thread's own connection when it has one, else on the
    /// store's.
    async fn call<T: resp::FromReply>(
        self: &Arc<Self>,
        call: &ScriptCall<'_>,
    ) -> Result<T, StoreError> {
        let Some(shared) = self.connection.load_full() else {
            return Err(StoreError::Down);
        };
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        if let Some(own) = self.own_connection() {
            match eval_own(&own, call, deadline).await {
                Ok(reply) => {
                    let value = match T::from_reply(&reply) {
                        Some(value) => Ok(value),
                        None => T::from_redis_value(reply.into_value()),
                    };
                    return match value {
                        Ok(value) => {
                            self.failures.store(0, Ordering::Relaxed);
                            Ok(value)
                        }
                        Err(_) => Err(self.failed(StoreError::Failed, &shared)),
                    };
                }
                // This thread's connection broke: forgotten (a new one is made on a later
                // call), the store's left as it is (it may be fine: an idle connection closed,
                // a Redis restart it has got over). Not tried again on the store's: the script
                // may have run.
                Err(error) if error.is_broken() => {
                    self.forget_own();
                    return Err(StoreError::Down);
                }
                Err(resp::Error::Timeout) => {
                    return Err(self.failed(StoreError::Timeout, &shared));
                }
                Err(_) => return Err(self.failed(StoreError::Failed, &shared)),
            }
        }
        let mut connection = MultiplexedConnection::clone(&shared);
        let cmd = call.cmd();
        match tokio::time::timeout_at(deadline, eval::<T>(&mut connection, call.script, &cmd)).await
        {
            Ok(Ok(value)) => {
                self.failures.store(0, Ordering::Relaxed);
                Ok(value)
            }
            Ok(Err(error)) if Self::broken_by(&error) => {
                self.broke(&shared);
                Err(StoreError::Down)
            }
            Ok(Err(_)) => Err(self.failed(StoreError::Failed, &shared)),
            Err(_) => Err(self.failed(StoreError::Timeout, &shared)),
        }
    }

    /// Counts a call that timed out or failed; after a few in a row the connections are made
    /// again (one that is open but answers nothing is never reported broken).
    fn failed(
        self: &Arc<Self>,
        error: StoreError,
        shared: &Arc<MultiplexedConnection>,
    ) -> StoreError {
        if self.failures.fetch_add(1, Ordering::Relaxed) + 1 >= FAILURES_BEFORE_RECONNECT {
            self.failures.store(0, Ordering::Relaxed);
            self.forget_own();
            self.broke(shared);
        }
        error
    }

    pub async fn admit(self: &Arc<Self>, checks: &[Check<'_>]) -> Result<Verdict, StoreError> {
        if self.connection.load().is_none() {
            // Nothing is sent: nothing to give back.
            return Err(StoreError::Down);
        }
        let args = |sink: &mut dyn Args| {
            for check in checks {
                sink.name(&check.key);
            }
            for check in checks {
                let (kind, a, b, cost) = match check.rule {
                    Rule::Rate {
                        interval_us,
                        tolerance_us,
                    } => (b"r", interval_us, tolerance_us, 1),
                    Rule::Window { limit, window_us } => (b"w", limit, window_us, check.cost),
                };
                sink.bytes(kind);
                sink.number(a);
                sink.number(b);
                sink.number(cost);
            }
        };
        let call = ScriptCall {
            script: &self.admit,
            source: ADMIT,
            keys: checks.len(),
            args: &args,
        };
        // From here the script may run in Redis even when its answer never comes (a timeout,
        // a broken connection, the client gone and this future dropped): then what it may have
        // reserved is given back.
        let mut unanswered = Unanswered {
            store: self,
            checks,
            armed: true,
        };
        let answer: resp::Integers = self.call(&call).await?;
        unanswered.armed = false;
        read_verdict(&answer, checks.len()).ok_or(StoreError::Failed)
    }
}

/// An admission sent without an answer yet; dropped while `armed`, it gives back what the
/// script may have reserved: the checks' costs, from whichever window of each is running
/// (`settle.lua`'s start 0). Should the script not have run, that frees someone else's
/// reservation of at most as much: the limit errs on the loose side only on this failure path.
struct Unanswered<'a> {
    store: &'a Arc<RedisStore>,
    checks: &'a [Check<'a>],
    armed: bool,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let charges = self.checks.iter().filter_map(|check| match check.rule {
            Rule::Window { window_us, .. } => Some(Charge {
                key: check.key.clone(),
                window_us,
                reserved: check.cost,
                actual: 0,
                ticket: Ticket::Redis { start_us: 0 },
            }),
            Rule::Rate { .. } => None,
        });
        self.store.settle(charges, None);
    }
}

/// Reads the admission script's answer (see `admit.lua`).
fn read_verdict(answer: &[i64], checks: usize) -> Option<Verdict> {
    let as_u64 = |v: i64| u64::try_from(v).ok();
    match answer.first()? {
        0 => {
            let index = usize::try_from(*answer.get(1)?).ok()?.checked_sub(1)?;
            (index < checks).then_some(())?;
            Some(Verdict::Refused {
                index,
                retry_us: as_u64(*answer.get(2)?)?.max(1),
            })
        }
        1 if answer.len() == 1 + 3 * checks => {
            let grants = answer[1..]
                .chunks_exact(3)
                .map(|g| {
                    Some(Granted {
                        remaining: as_u64(g[0])?,
                        reset_us: as_u64(g[1])?,
                        ticket: if g[2] == 0 {
                            Ticket::Rate
                        } else {
                            Ticket::Redis {
                                start_us: as_u64(g[2])?,
                            }
                        },
                    })
                })
                .collect::<Option<PerRequest<_>>>()?;
            Some(Verdict::Admitted(grants))
        }
        _ => None,
    }
}

/// Connects, and reconnects whenever a call found the connection broken, for as long as the
/// store is in use.
async fn keep_connected(store: Weak<RedisStore>) {
    let mut pause = Duration::from_millis(100);
    loop {
        let Some(live) = store.upgrade() else {
            return;
        };
        let Some(client) = live.client.clone() else {
            return;
        };
        let settings = live.settings();
        drop(live);
        let connected = client
            .get_multiplexed_async_connection_with_config(&settings)
            .await;
        let Some(live) = store.upgrade() else {
            return;
        };
        match connected {
            Ok(connection) => {
                let connection = Arc::new(connection);
                live.generation.fetch_add(1, Ordering::AcqRel);
                live.failures.store(0, Ordering::Relaxed);
                live.connection.store(Some(connection.clone()));
                pause = Duration::from_millis(100);
                tracing::info!("limits: connected to Redis");
                // Wait for a call to find it broken; every second, see whether the store is
                // still in use and whether Redis still answers a PING in time (a connection
                // that is open but answers nothing is never reported broken otherwise).
                drop(live);
                loop {
                    let Some(live) = store.upgrade() else {
                        return;
                    };
                    let woken =
                        tokio::time::timeout(Duration::from_secs(1), live.broken.notified())
                            .await
                            .is_ok();
                    if woken || live.connection.load().is_none() {
                        break;
                    }
                    let mut ping = MultiplexedConnection::clone(&connection);
                    let answered = tokio::time::timeout(
                        live.config.timeout.max(Duration::from_millis(500)),
                        redis::cmd("PING").query_async::<String>(&mut ping),
                    )
                    .await;
                    if !matches!(answered, Ok(Ok(_))) {
                        live.broke(&connection);
                        break;
                    }
                }
            }
            Err(error) => {
                if live.may_warn() {
                    // The error's kind and category only: its text may quote the URL.
                    tracing::warn!(
                        kind = ?error.kind(),
                        "limits: cannot connect to Redis; retrying (requests meanwhile follow limits.redis.on_failure)"
                    );
                }
                drop(live);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_that_are_not_the_scripts_are_refused() {
        assert!(read_verdict(&[], 1).is_none());
        assert!(read_verdict(&[1, 5, 6], 1).is_none());
        assert!(read_verdict(&[0, 0, 5], 1).is_none());
        assert!(read_verdict(&[0, 2, 5], 1).is_none());
        assert!(read_verdict(&[1, -1, 6, 7], 1).is_none());
        assert!(matches!(
            read_verdict(&[0, 1, 5], 1),
            Some(Verdict::Refused {
                index: 0,
                retry_us: 5
            })
        ));
        let Some(Verdict::Admitted(grants)) = read_verdict(&[1, 3, 10, 0, 4, 20, 99], 2) else {
            panic!()
        };
        assert!(matches!(grants[0].ticket, Ticket::Rate));
        assert!(matches!(grants[1].ticket, Ticket::Redis { start_us: 99 }));
        assert_eq!((grants[1].remaining, grants[1].reset_us), (4, 20));
    }
}
