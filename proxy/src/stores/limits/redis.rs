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
use crate::metrics::Metrics;
use tokio::sync::mpsc::{Receiver, Sender};

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
    /// Settlements of this thread's requests waiting for its connection ([`settle_own`]).
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

    /// Queues a request's settlement, sent off the response path with what else is queued in
    /// one script call (so under load one call settles many requests, and Redis runs one
    /// script for them instead of one each). A failure is counted in `metrics`.
    ///
    /// On a thread with its own connection the queue is the thread's, sent by a task of its
    /// own as soon as the thread is free, one call at a time: at c=1 a request's settlement
    /// goes while the client reads the answer, under load the settlements of the requests
    /// that ended during one call go in the next. The queue is never handed to another
    /// thread (which would wake it: a system call and a context switch, on the request's
    /// core). Elsewhere (no connection of its own yet) it is queued for the background
    /// runtime ([`settle_queued`]).
    pub fn settle(
        self: &Arc<Self>,
        charges: impl IntoIterator<Item = Charge>,
        metrics: Option<Arc<Metrics>>,
    ) {
        let charges: PerRequest<Charge> = charges
            .into_iter()
            .filter(|c| matches!(c.ticket, Ticket::Redis { .. }))
            .filter(|c| c.reserved != c.actual)
            .collect();
        if charges.is_empty() {
            return;
        }
        let Some(settlement) = self.settle_own((charges, metrics)) else {
            return;
        };
        let metrics = settlement.1.clone();
        if self.settlements.try_send(settlement).is_err()
            && let Some(metrics) = metrics
        {
            // Settlements come faster than Redis takes them: this one is lost (its
            // reservation stays charged until its window ends: the strict side).
            metrics.limit_store_error("settle", "queue_full", "lost");
        }
    }

    /// Queues `settlement` for this thread's connection when it has one ([`Self::settle`]);
    /// else gives it back.
    fn settle_own(self: &Arc<Self>, settlement: Settlement) -> Option<Settlement> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Some(settlement);
        };
        if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
            return Some(settlement);
        }
        let generation = self.generation.load(Ordering::Acquire);
        let mut settlement = Some(settlement);
        // Whether a task must be started to send the queue (`None`: not queued here).
        let start = OWN.with_borrow_mut(|own| {
            let mine = own
                .iter_mut()
                .find(|o| std::ptr::eq(o.store.as_ptr(), Arc::as_ptr(self)))
                .filter(|o| o.generation == generation)
                .filter(|o| o.connection.as_ref().is_some_and(|c| !c.is_broken()))?;
            let queued = settlement.take()?;
            if mine.settlements.len() >= SETTLE_QUEUE {
                lost(std::slice::from_ref(&queued), "queue_full");
            } else {
                mine.settlements.push(queued);
            }
            Some(!std::mem::replace(&mut mine.settling, true))
        });
        if start == Some(true) {
            runtime.spawn(settle_own(Arc::downgrade(self)));
        }
        settlement
    }
}

/// Counts settlements that will not be sent.
fn lost(settlements: &[Settlement], why: &'static str) {
    for (_, metrics) in settlements {
        if let Some(metrics) = metrics {
            metrics.limit_store_error("settle", why, "lost");
        }
    }
}

/// Sends this thread's queued settlements to `store`, what is queued at once in one call, until
/// none is left ([`RedisStore::settle`]).
async fn settle_own(store: Weak<RedisStore>) {
    let mine = |o: &Own| o.store.ptr_eq(&store);
    loop {
        let batch = OWN.with_borrow_mut(|own| {
            let entry = own.iter_mut().find(|o| mine(o))?;
            if entry.settlements.is_empty() {
                entry.settling = false;
                return None;
            }
            // Taken whole when it fits (its room goes with it: a burst leaves no big queue).
            if entry.settlements.len() <= SETTLE_BATCH {
                return Some(std::mem::take(&mut entry.settlements));
            }
            Some(entry.settlements.drain(..SETTLE_BATCH).collect())
        });
        let Some(mut batch) = batch else {
            return;
        };
        let Some(live) = store.upgrade() else {
            lost(&batch, "replaced");
            return;
        };
        send_settlements(&live, &mut batch).await;
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

/// A request's settlement on its way to Redis.
type Settlement = (PerRequest<Charge>, Option<Arc<Metrics>>);

/// Most requests settled by one script call.
const SETTLE_BATCH: usize = 64;
/// Most settlements waiting (beyond it, one is counted lost rather than memory growing).
const SETTLE_QUEUE: usize = 65_536;
/// How long the first settlement of a batch waits for others.
const SETTLE_LINGER: Duration = Duration::from_millis(2);

/// Sends queued settlements, everything queued at once, for as long as the store is in use.
async fn settle_queued(store: Weak<RedisStore>, mut queue: Receiver<Settlement>) {
    let mut batch = Vec::with_capacity(SETTLE_BATCH);
    let drain = |queue: &mut Receiver<Settlement>, batch: &mut Vec<Settlement>| {
        while batch.len() < SETTLE_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
    };
    while let Some(first) = queue.recv().await {
        batch.push(first);
        drain(&mut queue, &mut batch);
        if batch.len() == 1 {
            // Nothing else waiting: a moment for more to come, so one call settles the
            // requests of the next milliseconds too (their reservations are held that much
            // longer: the strict side). With a backlog, no pause.
            tokio::time::sleep(SETTLE_LINGER).await;
            drain(&mut queue, &mut batch);
        }
        let Some(live) = store.upgrade() else {
            lost(&batch, "replaced");
            return;
        };
        send_settlements(&live, &mut batch).await;
    }
}

/// Sends a batch of settlements in one call; on failure the reservations of admissions whose
/// answer never came are given back later ([`refund_later`]), any other is counted lost. The
/// batch is left empty.
async fn send_settlements(live: &Arc<RedisStore>, batch: &mut Vec<Settlement>) {
    let sent = {
        let (keys, args) = settle_args(batch.iter().flat_map(|(charges, _)| charges));
        let call = ScriptCall {
            script: &live.settle,
            source: SETTLE,
            keys,
            args: &args,
        };
        live.call::<i64>(&call).await
    };
    if let Err(error) = sent {
        let mut refunds = Vec::new();
        for (charges, metrics) in batch.drain(..) {
            if charges
                .iter()
                .all(|c| matches!(c.ticket, Ticket::Redis { start_us: 0 }))
            {
                // What an unanswered admission may have reserved: tried again later (Redis
                // often runs such an admission once it answers again), so an outage does
                // not leave it charged for the rest of its window.
                refunds.extend(charges);
            } else if let Some(metrics) = metrics {
                metrics.limit_store_error("settle", error.label(), "lost");
            }
        }
        if !refunds.is_empty() {
            tokio::spawn(refund_later(Arc::downgrade(live), refunds));
        }
    }
    batch.clear();
}

/// Gives back what unanswered admissions may have reserved, once Redis answers: tried after
/// 1, 2 and 4 s (each try may free at most that much of someone else's reservation, should
/// the admission never have run: the loose side, on this failure path only).
async fn refund_later(store: Weak<RedisStore>, charges: Vec<Charge>) {
    for pause in [1, 2, 4] {
        tokio::time::sleep(Duration::from_secs(pause)).await;
        let Some(live) = store.upgrade() else {
            return;
        };
        // Each an unanswered admission's: from whichever window runs (start 0), nothing used.
        let (keys, args) = settle_args(charges.iter());
        let call = ScriptCall {
            script: &live.settle,
            source: SETTLE,
            keys,
            args: &args,
        };
        if live.call::<i64>(&call).await.is_ok() {
            return;
        }
    }
}

/// Where a script call's arguments go: straight into a thread's own connection's buffer
/// ([`resp::Writer`]), or into a redis-rs command for the store's connection.
trait Args {
    fn bytes(&mut self, arg: &[u8]);
    fn number(&mut self, n: u64);
    fn name(&mut self, key: &super::Key);
}

impl Args for resp::Writer<'_> {
    fn bytes(&mut self, arg: &[u8]) {
        resp::Writer::bytes(self, arg);
    }
    fn number(&mut self, n: u64) {
        resp::Writer::number(self, n);
    }
    fn name(&mut self, key: &super::Key) {
        // Writing into a vector cannot fail.
        self.with(|out| {
            let _ = key.redis_name().write_to(out);
        });
    }
}

impl Args for redis::Cmd {
    fn bytes(&mut self, arg: &[u8]) {
        self.arg(arg);
    }
    fn number(&mut self, n: u64) {
        self.arg(n);
    }
    fn name(&mut self, key: &super::Key) {
        self.arg(key.redis_name());
    }
}

/// Arguments of a store script: every key's name, then [`ARGS_PER_KEY`] for each key.
const ARGS_PER_KEY: usize = 4;

/// `EVALSHA <script> <keys> <key>... <arg>...`: `args` writes the keys' names, then each key's
/// arguments.
struct ScriptCall<'a> {
    script: &'a redis::Script,
    /// The script's text, loaded again should Redis not have it.
    source: &'static str,
    keys: usize,
    args: &'a (dyn Fn(&mut dyn Args) + Sync),
}

impl ScriptCall<'_> {
    fn head(&self, args: &mut dyn Args) {
        args.bytes(b"EVALSHA");
        args.bytes(self.script.get_hash().as_bytes());
        args.number(self.keys as u64);
        (self.args)(args);
    }

    /// As a redis-rs command, for the store's connection.
    fn cmd(&self) -> redis::Cmd {
        let mut cmd =
            redis::Cmd::with_capacity(3 + self.keys * (1 + ARGS_PER_KEY), 64 + self.keys * 96);
        self.head(&mut cmd);
        cmd
    }
}

impl resp::Command for ScriptCall<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        let mut writer = resp::Writer::command(out, 3 + self.keys * (1 + ARGS_PER_KEY));
        self.head(&mut writer);
    }
}

/// The settlement script's keys and arguments for `charges` (see `settle.lua`); those without
/// a Redis ticket are left out.
fn settle_args<'c>(
    charges: impl Iterator<Item = &'c Charge> + Clone,
) -> (usize, impl Fn(&mut dyn Args)) {
    let charges = charges.filter_map(|c| match c.ticket {
        Ticket::Redis { start_us } => Some((c, start_us)),
        _ => None,
    });
    let keys = charges.clone().count();
    let args = move |sink: &mut dyn Args| {
        for (charge, _) in charges.clone() {
            sink.name(&charge.key);
        }
        for (charge, start_us) in charges.clone() {
            sink.number(start_us);
            sink.number(charge.reserved);
            sink.number(charge.actual);
            sink.number(charge.window_us);
        }
    };
    (keys, args)
}

/// [`eval`] on a thread's own connection, all of it by `deadline`.
async fn eval_own(
    connection: &Arc<resp::Connection>,
    call: &ScriptCall<'_>,
    deadline: tokio::time::Instant,
) -> Result<resp::Reply, resp::Error> {
    match connection.call(call, deadline).await {
        Err(error) if error.code() == Some("NOSCRIPT") => {
            let load = redis::cmd("SCRIPT").arg("LOAD").arg(call.source).clone();
            connection.call(&load, deadline).await?;
            connection.call(call, deadline).await
        }
        answer => answer,
    }
}

/// Runs a script's call; when Redis does not have the script (a restart, a `SCRIPT FLUSH`),
/// loads it and calls again.
async fn eval<T: redis::FromRedisValue>(
    connection: &mut MultiplexedConnection,
    script: &redis::Script,
    cmd: &redis::Cmd,
) -> redis::RedisResult<T> {
    match cmd.query_async(connection).await {
        Err(error)
            if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
        {
            script.load_async(connection).await?;
            cmd.query_async(connection).await
        }
        answer => answer,
    }
}

impl redis::ToRedisArgs for super::RedisName<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        // Writing into the command's own buffer cannot fail.
        let _ = self.write_to(&mut out.writer_for_next_arg());
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
