//! The limits stage: the gateway's own guardrails, asked together before any backend is tried,
//! in this order (the first that refuses answers the request):
//!
//! 1. request rate per client address (`limits.rate`, GCRA);
//! 2. request quota per consumer, or per address without a known key (`limits.quota.requests`);
//! 3. token limit per route and lane, or per consumer and lane (`limits.tokens`);
//! 4. the consumer's token quota (`clients.consumers[].token_quota` per `limits.quota.window`).
//!
//! Token checks apply to operations that spend tokens, and reserve the request's estimate
//! ([`Estimate`]: prompt bytes / 4 + `max_tokens` × `n`); the reservation is settled with the
//! backend's real usage when the request ends ([`Plan::settle`], from the stage's end). One store
//! call answers all of a request's checks (one Redis round trip with `limits.redis`), all or
//! nothing. What each limit counts when, and what a refusal looks like: docs/proxy.md, "Limits".

pub mod config;

use std::sync::Arc;

use crate::answer::AnswerHead;
use crate::config::{Failure, GatewayConfig, Lane, LimitKey, LimitsConfig, Strategy};
use crate::ctx::{Flow, RequestCtx, Shown};
use crate::error::{GatewayError, Limit};
use crate::stages::Stage;
use crate::stages::route::{Family, Operation};
use crate::stores::limits::{
    BucketSlot, Charge, Check, Granted, Key, LimitStore, Local, MOST_CHECKS, PerRequest,
    RedisStore, Rule, Scope, StoreError, Verdict, Who, micros,
};
use crate::usage::Estimate;

/// The limits stage of one config generation.
#[derive(Debug)]
pub struct Limits {
    /// None: no limit is configured (the stage costs one branch).
    plan: Option<Plan>,
}

#[derive(Debug)]
struct Plan {
    rate: Option<(Rule, u64)>,
    /// Requests per window, and the window (µs).
    quota: Option<(u64, u64)>,
    tokens: Option<Tokens>,
    /// Window of the consumers' token quotas (µs).
    token_quota_window: Option<u64>,
    store: Arc<LimitStore>,
    failure: Failure,
    /// In process: the buckets of keys the config bounds, kept here once found.
    slots: Option<Slots>,
}

/// Where the in-process buckets of keys the config bounds are kept once found
/// ([`Check::slot`]): a request indexes them instead of looking its keys up in the store's map
/// (hashing, comparing and a copy-on-write map's load were most of an admission's cost). Made
/// for each config, so a reload finds the buckets again (the store, and its counters, stay).
#[derive(Debug)]
struct Slots {
    /// By [`crate::stages::auth::Consumer::slot`].
    consumers: Box<[ConsumerSlots]>,
    /// Tokens per consumer: requests without a known key, by lane.
    anonymous: [BucketSlot; 2],
    /// Tokens per route, by [`route_slot`].
    routes: Box<[BucketSlot]>,
}

#[derive(Debug)]
struct ConsumerSlots {
    /// The consumer's name as the config holds it: a consumer whose name is not this very
    /// one (by address) is not this slot's.
    name: Arc<str>,
    quota: BucketSlot,
    token_quota: BucketSlot,
    /// Tokens per consumer, by lane.
    tokens: [BucketSlot; 2],
}

/// The route families and operations a token limit per route tells apart (the enums' last
/// variants end them).
const FAMILIES: usize = Family::V1 as usize + 1;
const OPERATIONS: usize = Operation::Other as usize + 1;
/// Route scopes (family, operation, test mode) by lane.
const ROUTE_SLOTS: usize = FAMILIES * OPERATIONS * 2 * 2;

/// A route scope's place in [`Slots::routes`], one per scope and lane. None for a variant
/// declared after the last one counted: it is then looked up in the store's map.
fn route_slot(family: Family, operation: Operation, test: bool, lane: Lane) -> Option<usize> {
    let (family, operation) = (family as usize, operation as usize);
    (family < FAMILIES && operation < OPERATIONS)
        .then(|| ((family * OPERATIONS + operation) * 2 + usize::from(test)) * 2 + lane_slot(lane))
}

fn lane_slot(lane: Lane) -> usize {
    match lane {
        Lane::High => 0,
        Lane::Low => 1,
    }
}

#[derive(Debug)]
struct Tokens {
    strategy: Strategy,
    window_us: u64,
    high: u64,
    low: u64,
    key: LimitKey,
    reject_status: http::StatusCode,
    reject_message: Box<str>,
}

/// What a request's admission asks the store: its checks, which limit each is, and the
/// request's estimate when a check counts tokens.
struct Asked<'a> {
    checks: PerRequest<Check<'a>>,
    kinds: [Kind; MOST_CHECKS],
    estimate: Option<Estimate>,
}

impl<'a> Asked<'a> {
    fn push(&mut self, kind: Kind, key: Key, rule: Rule, cost: u64, slot: Option<&'a BucketSlot>) {
        self.kinds[self.checks.len()] = kind;
        self.checks.push(Check {
            key,
            rule,
            cost,
            slot,
        });
    }
}

/// Which limit a check is (the order of [`Plan::checks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rate,
    Quota,
    Tokens,
    TokenQuota,
}

impl Stage for Limits {
    fn new(config: &GatewayConfig, previous: Option<&Self>) -> Self {
        let limits = &config.limits;
        if limits.tokens.is_none() && limits.rate.is_none() && limits.quota.is_none() {
            return Self { plan: None };
        }
        // The counters outlive a reload while they live in the same place.
        let store = previous
            .and_then(|p| p.plan.as_ref())
            .map(|p| p.store.clone())
            .filter(|store| store.fits(limits.redis.as_ref()))
            .unwrap_or_else(|| Arc::new(LimitStore::new(limits.redis.as_ref())));
        Self {
            plan: Some(Plan::new(config, store)),
        }
    }

    async fn check(&self, ctx: &mut RequestCtx) -> Flow {
        match &self.plan {
            None => Ok(()),
            Some(plan) => match &*plan.store {
                // In process the store answers at once: no future, nothing boxed.
                LimitStore::InProcess(local) => plan.check_local(ctx, local),
                // Boxed: a Redis call's future is large, and the request's future (which
                // holds every stage's) stays small without it.
                LimitStore::Redis(store) => Box::pin(plan.check_redis(ctx, store)).await,
            },
        }
    }

    fn respond(&self, ctx: &RequestCtx, head: &mut AnswerHead) {
        // Written by the answer's writer (see `AnswerHead::limits`).
        head.limits = ctx.limits;
    }

    fn end(&self, ctx: &RequestCtx) {
        if let Some(plan) = &self.plan
            && !ctx.reserved.charges.is_empty()
        {
            plan.settle(ctx);
        }
    }
}

impl Limits {
    /// With counters in Redis: whether the store is connected (`gateway_limit_store_up`).
    pub fn store_connected(&self) -> Option<bool> {
        match self.plan.as_ref().map(|p| &*p.store) {
            Some(LimitStore::Redis(store)) => Some(store.connected()),
            _ => None,
        }
    }
}

impl Plan {
    fn new(config: &GatewayConfig, store: Arc<LimitStore>) -> Self {
        let limits: &LimitsConfig = &config.limits;
        let rate = limits.rate.as_ref().map(|rate| {
            let interval_us = ((1e6 / rate.per_second).round() as u64).max(1);
            (
                Rule::Rate {
                    interval_us,
                    tolerance_us: interval_us.saturating_mul(u64::from(rate.burst)),
                },
                u64::from(rate.burst) + 1,
            )
        });
        let quota = limits.quota.as_ref();
        Self {
            rate,
            quota: quota.and_then(|q| q.requests.map(|requests| (requests, micros(q.window)))),
            tokens: limits.tokens.as_ref().map(|t| Tokens {
                strategy: t.strategy,
                window_us: micros(t.window),
                high: t.high,
                low: t.low,
                key: t.key,
                reject_status: t.reject_status,
                reject_message: t.reject_message.clone().into(),
            }),
            token_quota_window: quota.map(|q| micros(q.window)),
            slots: matches!(*store, LimitStore::InProcess(_)).then(|| Slots {
                consumers: config
                    .clients
                    .consumers
                    .iter()
                    .map(|c| ConsumerSlots {
                        name: c.name.clone(),
                        quota: BucketSlot::new(),
                        token_quota: BucketSlot::new(),
                        tokens: Default::default(),
                    })
                    .collect(),
                anonymous: Default::default(),
                routes: (0..ROUTE_SLOTS).map(|_| BucketSlot::new()).collect(),
            }),
            store,
            failure: limits
                .redis
                .as_ref()
                .map_or(Failure::Open, |r| r.on_failure),
        }
    }

    /// The checks `ctx` must pass, and which limit each is (by index: four at most).
    fn checks(&self, ctx: &RequestCtx, estimate: Option<Estimate>) -> Asked<'_> {
        let mut asked = Asked {
            checks: PerRequest::new(),
            kinds: [Kind::Rate; MOST_CHECKS],
            estimate,
        };
        let consumer = ctx.consumer.as_ref();
        let slots = self.slots.as_ref();
        let consumer_slots = consumer.and_then(|c| {
            let found = slots?.consumers.get(c.slot)?;
            Arc::ptr_eq(&found.name, &c.name).then_some(found)
        });
        if let Some((rule, _)) = self.rate {
            let key = Key::Rate(ctx.client.ip());
            asked.push(Kind::Rate, key, rule, 1, None);
        }
        if let Some((limit, window_us)) = self.quota {
            let who = match consumer {
                Some(consumer) => Who::Consumer(consumer.name.clone()),
                None => Who::Address(ctx.client.ip()),
            };
            let rule = Rule::Window { limit, window_us };
            let key = Key::Quota(who);
            let slot = consumer_slots.map(|s| &s.quota);
            asked.push(Kind::Quota, key, rule, 1, slot);
        }
        let Some(estimate) = estimate else {
            return asked;
        };
        if let Some(tokens) = &self.tokens {
            let lane = lane_slot(ctx.lane);
            let (scope, slot) = match tokens.key {
                LimitKey::Route => {
                    let route = ctx.route.as_ref();
                    let family = route.map_or(Family::V1, |r| r.family);
                    let operation = route.map_or(Operation::Other, |r| r.operation);
                    let test = route.is_some_and(|r| r.test_prefixed);
                    let slot = slots
                        .and_then(|s| s.routes.get(route_slot(family, operation, test, ctx.lane)?));
                    let scope = Scope::Route {
                        family,
                        operation,
                        test,
                    };
                    (scope, slot)
                }
                LimitKey::Consumer => match consumer {
                    Some(c) => (
                        Scope::Consumer(Some(c.name.clone())),
                        consumer_slots.map(|s| &s.tokens[lane]),
                    ),
                    None => (Scope::Consumer(None), slots.map(|s| &s.anonymous[lane])),
                },
            };
            let limit = match ctx.lane {
                Lane::High => tokens.high,
                Lane::Low => tokens.low,
            };
            let cost = match tokens.strategy {
                Strategy::TotalTokens => estimate.prompt.saturating_add(estimate.completion_cap),
                Strategy::PromptTokens => estimate.prompt,
                Strategy::CompletionTokens => estimate.completion_cap,
                Strategy::Requests => 1,
            };
            let rule = Rule::Window {
                limit,
                window_us: tokens.window_us,
            };
            let key = Key::Tokens(scope, ctx.lane);
            // Never more than the limit: a client's `max_tokens` cannot reserve beyond it.
            let cost = cost.min(limit);
            asked.push(Kind::Tokens, key, rule, cost, slot);
        }
        if let (Some(window_us), Some(consumer)) = (self.token_quota_window, consumer)
            && let Some(limit) = consumer.token_quota
        {
            let rule = Rule::Window { limit, window_us };
            let key = Key::TokenQuota(consumer.name.clone());
            let cost = estimate
                .prompt
                .saturating_add(estimate.completion_cap)
                .min(limit);
            let slot = consumer_slots.map(|s| &s.token_quota);
            asked.push(Kind::TokenQuota, key, rule, cost, slot);
        }
        asked
    }

    /// The limit a check of `kind` has (for the answer fields).
    fn limit_of(&self, kind: Kind, check: &Check<'_>) -> u64 {
        match (kind, check.rule) {
            (Kind::Rate, _) => self.rate.map_or(0, |(_, burst)| burst),
            (_, Rule::Window { limit, .. }) => limit,
            (_, Rule::Rate { .. }) => 0,
        }
    }

    fn check_local(&self, ctx: &mut RequestCtx, local: &Local) -> Flow {
        let asked = self.ask(ctx);
        if asked.checks.is_empty() {
            return Ok(());
        }
        let answer = Ok(local.admit(&asked.checks));
        self.decide(ctx, &asked, answer)
    }

    async fn check_redis(&self, ctx: &mut RequestCtx, store: &Arc<RedisStore>) -> Flow {
        let asked = self.ask(ctx);
        if asked.checks.is_empty() {
            return Ok(());
        }
        let answer = store.admit(&asked.checks).await;
        self.decide(ctx, &asked, answer)
    }

    /// What `ctx` must be asked (no checks: no limit applies to it).
    fn ask(&self, ctx: &RequestCtx) -> Asked<'_> {
        // Only a token check needs the estimate (and, through `ctx.estimate`, the relay's
        // reading of the text it passes on): with request limits alone, neither is made.
        let spends = ctx.route.is_some_and(|r| r.operation.spends_tokens());
        let token_quota = self.token_quota_window.is_some()
            && ctx
                .consumer
                .as_ref()
                .is_some_and(|c| c.token_quota.is_some());
        let counts_tokens = spends && (self.tokens.is_some() || token_quota);
        let estimate = counts_tokens.then(|| {
            let body = ctx.body.as_ref();
            Estimate::new(
                body.map_or(0, |b| b.bytes.len()),
                body.and_then(|b| b.max_tokens),
                body.and_then(|b| b.choices),
            )
        });
        self.checks(ctx, estimate)
    }

    /// The store's answer to what was asked.
    fn decide(
        &self,
        ctx: &mut RequestCtx,
        asked: &Asked<'_>,
        answer: Result<Verdict, StoreError>,
    ) -> Flow {
        match answer {
            Ok(Verdict::Admitted(grants)) => {
                self.admitted(ctx, asked, grants);
                Ok(())
            }
            Ok(Verdict::Refused { index, retry_us }) => {
                let (kind, check) = (&asked.kinds[index], &asked.checks[index]);
                let shown = Shown {
                    limit: self.limit_of(*kind, check),
                    remaining: 0,
                    reset_s: seconds(retry_us),
                };
                let limit = match kind {
                    Kind::Rate => Limit::RequestRate,
                    Kind::Quota => Limit::RequestQuota,
                    Kind::Tokens => Limit::Tokens,
                    Kind::TokenQuota => Limit::TokenQuota,
                };
                match kind {
                    Kind::Rate | Kind::Quota => ctx.limits.requests = Some(shown),
                    Kind::Tokens | Kind::TokenQuota => ctx.limits.tokens = Some(shown),
                }
                let (status, message) = match (kind, &self.tokens) {
                    (Kind::Tokens, Some(tokens)) => {
                        (tokens.reject_status, Some(tokens.reject_message.clone()))
                    }
                    _ => (http::StatusCode::TOO_MANY_REQUESTS, None),
                };
                ctx.gateway.metrics.limit_refused(limit.code());
                Err(GatewayError::Limited {
                    limit,
                    status,
                    message,
                    retry_after_us: retry_us,
                }
                .into())
            }
            Err(error) => self.store_failed(ctx, "admit", error),
        }
    }

    /// Shows what each check granted, and leaves the request's reservations in its context,
    /// to settle when it ends ([`Self::settle`]).
    fn admitted(&self, ctx: &mut RequestCtx, asked: &Asked<'_>, grants: PerRequest<Granted>) {
        for ((check, &kind), grant) in asked.checks.iter().zip(&asked.kinds).zip(grants) {
            let shown = Shown {
                limit: self.limit_of(kind, check),
                remaining: grant.remaining,
                reset_s: seconds(grant.reset_us),
            };
            match kind {
                Kind::Rate | Kind::Quota => {
                    ctx.limits.requests = Some(shown.tighter(ctx.limits.requests));
                }
                Kind::Tokens | Kind::TokenQuota => {
                    ctx.limits.tokens = Some(shown.tighter(ctx.limits.tokens));
                }
            }
            if let Rule::Window { window_us, .. } = check.rule {
                ctx.reserved.charges.push((
                    kind,
                    Charge {
                        key: check.key.clone(),
                        window_us,
                        reserved: check.cost,
                        actual: check.cost,
                        ticket: grant.ticket,
                    },
                ));
            }
        }
        if asked.estimate.is_some() {
            ctx.estimate = asked.estimate;
        }
    }

    /// Settles what `ctx` reserved, now that it has ended: each window's reservation becomes
    /// what the request used (the backend's usage, or the end's estimate when it reported
    /// none), or nothing when no backend answered (every backend failed, the client left
    /// first, or the cache answered).
    fn settle(&self, ctx: &RequestCtx) {
        let outcome = &ctx.outcome;
        let answered = outcome.backend.is_some();
        let served = answered || (200..300).contains(&outcome.status);
        let usage = outcome.usage.unwrap_or_default();
        let strategy = self.tokens.as_ref().map(|t| t.strategy);
        let actual = |kind: Kind, reserved: u64| match kind {
            Kind::Rate => reserved,
            Kind::Quota => u64::from(served),
            _ if !answered => 0,
            Kind::Tokens => match strategy {
                Some(Strategy::Requests) => 1,
                Some(Strategy::PromptTokens) => usage.prompt,
                Some(Strategy::CompletionTokens) => usage.completion,
                Some(Strategy::TotalTokens) | None => usage.total,
            },
            Kind::TokenQuota => usage.total,
        };
        let charges = ctx.reserved.charges.iter();
        match &*self.store {
            // In place: the request's context still holds the reservations.
            LimitStore::InProcess(local) => {
                local
                    .settle(charges.map(|(kind, charge)| (charge, actual(*kind, charge.reserved))));
            }
            // Queued for Redis, past the request's end: only what changes (a reservation that
            // was used as made needs no call).
            LimitStore::Redis(store) => store.settle(
                charges.filter_map(|(kind, charge)| {
                    let actual = actual(*kind, charge.reserved);
                    (actual != charge.reserved).then(|| Charge {
                        actual,
                        ..charge.clone()
                    })
                }),
                Some(&ctx.gateway.metrics),
            ),
        }
    }

    /// The store could not answer: counted, logged (at most once a second), and the failure
    /// policy decides.
    fn store_failed(&self, ctx: &RequestCtx, op: &'static str, error: StoreError) -> Flow {
        let policy = match self.failure {
            Failure::Open => "open",
            Failure::Closed => "closed",
        };
        ctx.gateway
            .metrics
            .limit_store_error(op, error.label(), policy);
        if let LimitStore::Redis(store) = &*self.store
            && store.may_warn()
        {
            tracing::warn!(
                error = error.label(),
                policy,
                "limits: Redis did not answer; requests are {} until it does",
                if policy == "open" {
                    "admitted without limits"
                } else {
                    "refused with 503"
                }
            );
        }
        match self.failure {
            Failure::Open => Ok(()),
            Failure::Closed => {
                ctx.gateway.metrics.limit_refused(Limit::Unavailable.code());
                Err(GatewayError::Limited {
                    limit: Limit::Unavailable,
                    status: http::StatusCode::SERVICE_UNAVAILABLE,
                    message: None,
                    retry_after_us: 1_000_000,
                }
                .into())
            }
        }
    }
}

/// Seconds for an answer field, rounded up.
fn seconds(us: u64) -> u64 {
    us.div_ceil(1_000_000)
}

/// What a request's windows reserved (at most three: the request quota, the token limit and
/// the token quota), held in its context until the limits stage settles them at its end.
#[derive(Debug, Default)]
pub struct Reserved {
    charges: smallvec::SmallVec<[(Kind, Charge); 3]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route scope and lane has a slot of its own: two scopes sharing one would count in
    /// one bucket.
    #[test]
    fn each_route_scope_and_lane_has_its_own_slot() {
        let families = [Family::Legacy, Family::LegacyResponses, Family::V1];
        let mut seen = std::collections::HashSet::new();
        for family in families {
            for operation in Operation::ALL {
                for test in [false, true] {
                    for lane in [Lane::High, Lane::Low] {
                        let slot = route_slot(family, operation, test, lane).unwrap();
                        assert!(slot < ROUTE_SLOTS);
                        assert!(
                            seen.insert(slot),
                            "{family:?} {operation:?} {test} {lane:?}"
                        );
                    }
                }
            }
        }
        assert_eq!(seen.len(), ROUTE_SLOTS);
    }
}
