//! Settlement in Redis: a request's reservations replaced with what it used, off the response
//! path. On a worker with its own connection the settlements of its requests are queued on the
//! worker and sent by a task of its own, one call at a time with everything queued since
//! ([`RedisStore::settle`]); elsewhere (no own connection yet) the background runtime's queue
//! sends them ([`settle_queued`]). Either way [`send_settlements`] makes the call and handles
//! its failure.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc::Receiver;

use super::script::{Args, ScriptCall};
use super::{OWN, Own, RedisStore, SETTLE};
use crate::metrics::Metrics;
use crate::stores::limits::{Charge, PerRequest, Ticket};

impl RedisStore {
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
        metrics: Option<&Arc<Metrics>>,
    ) {
        let charges: PerRequest<Charge> = charges
            .into_iter()
            .filter(|c| matches!(c.ticket, Ticket::Redis { .. }))
            .filter(|c| c.reserved != c.actual)
            .collect();
        if charges.is_empty() {
            return;
        }
        let Some(settlement) = self.settle_own((charges, metrics.cloned())) else {
            return;
        };
        if let Err(full) = self.settlements.try_send(settlement) {
            // Settlements come faster than Redis takes them: this one is lost (its
            // reservation stays charged until its window ends: the strict side).
            lost(std::slice::from_ref(&full.into_inner()), "queue_full");
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
pub(super) fn lost(settlements: &[Settlement], why: &'static str) {
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

/// A request's settlement on its way to Redis.
pub(super) type Settlement = (PerRequest<Charge>, Option<Arc<Metrics>>);

/// Most requests settled by one script call.
const SETTLE_BATCH: usize = 64;
/// Most settlements waiting (beyond it, one is counted lost rather than memory growing).
pub(super) const SETTLE_QUEUE: usize = 65_536;
/// How long the first settlement of a batch waits for others.
const SETTLE_LINGER: Duration = Duration::from_millis(2);

/// Sends queued settlements, everything queued at once, for as long as the store is in use.
pub(super) async fn settle_queued(store: Weak<RedisStore>, mut queue: Receiver<Settlement>) {
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
