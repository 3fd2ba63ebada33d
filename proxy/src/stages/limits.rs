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
//! backend's real usage when the request ends ([`Settlement`]). One store call answers all of a
//! request's checks (one Redis round trip with `limits.redis`), all or nothing. What each limit
//! counts when, and what a refusal looks like: docs/proxy.md, "Limits".

pub mod config;

use std::sync::Arc;

use crate::answer::AnswerHead;
use crate::config::{Failure, GatewayConfig, Lane, LimitKey, LimitsConfig, Strategy};
use crate::ctx::{Flow, RequestCtx, Shown};
use crate::end::Reservation;
use crate::error::{GatewayError, Limit};
use crate::stages::Stage;
use crate::stores::limits::{
    Charge, Check, Granted, Key, LimitStore, Local, MOST_CHECKS, PerRequest, RedisStore, Rule,
    Scope, StoreError, Verdict, Who, micros,
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

/// A request's checks as they are built, each with the limit it is.
struct Checks {
    checks: PerRequest<Check>,
    kinds: [Kind; MOST_CHECKS],
}

impl Checks {
    fn push(&mut self, kind: Kind, check: Check) {
        self.kinds[self.checks.len()] = kind;
        self.checks.push(check);
    }
}

/// What a request's admission asks the store.
struct Asked {
    checks: PerRequest<Check>,
    kinds: [Kind; MOST_CHECKS],
    estimate: Option<Estimate>,
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
            plan: Some(Plan::new(limits, store)),
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
    fn new(limits: &LimitsConfig, store: Arc<LimitStore>) -> Self {
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
            store,
            failure: limits
                .redis
                .as_ref()
                .map_or(Failure::Open, |r| r.on_failure),
        }
    }

    /// The checks `ctx` must pass, and which limit each is (by index: four at most).
    fn checks(
        &self,
        ctx: &RequestCtx,
        estimate: Option<&Estimate>,
    ) -> (PerRequest<Check>, [Kind; MOST_CHECKS]) {
        let mut checks = Checks {
            checks: PerRequest::new(),
            kinds: [Kind::Rate; MOST_CHECKS],
        };
        if let Some((rule, _)) = self.rate {
            let key = Key::Rate(ctx.client.ip());
            checks.push(Kind::Rate, Check { key, rule, cost: 1 });
        }
        if let Some((limit, window_us)) = self.quota {
            let who = match &ctx.consumer {
                Some(consumer) => Who::Consumer(consumer.name.clone()),
                None => Who::Address(ctx.client.ip()),
            };
            let rule = Rule::Window { limit, window_us };
            let key = Key::Quota(who);
            checks.push(Kind::Quota, Check { key, rule, cost: 1 });
        }
        let Some(estimate) = estimate else {
            return (checks.checks, checks.kinds);
        };
        if let Some(tokens) = &self.tokens {
            let scope = match tokens.key {
                LimitKey::Route => {
                    let route = ctx.route.as_ref();
                    Scope::Route {
                        family: route.map_or(crate::stages::route::Family::V1, |r| r.family),
                        operation: route
                            .map_or(crate::stages::route::Operation::Other, |r| r.operation),
                        test: route.is_some_and(|r| r.test_prefixed),
                    }
                }
                LimitKey::Consumer => {
                    Scope::Consumer(ctx.consumer.as_ref().map(|c| c.name.clone()))
                }
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
            checks.push(Kind::Tokens, Check { key, rule, cost });
        }
        if let (Some(window_us), Some(consumer)) = (self.token_quota_window, &ctx.consumer)
            && let Some(limit) = consumer.token_quota
        {
            let rule = Rule::Window { limit, window_us };
            let key = Key::TokenQuota(consumer.name.clone());
            let cost = estimate
                .prompt
                .saturating_add(estimate.completion_cap)
                .min(limit);
            checks.push(Kind::TokenQuota, Check { key, rule, cost });
        }
        (checks.checks, checks.kinds)
    }

    /// The limit a check of `kind` has (for the answer fields).
    fn limit_of(&self, kind: Kind, check: &Check) -> u64 {
        match (kind, check.rule) {
            (Kind::Rate, _) => self.rate.map_or(0, |(_, burst)| burst),
            (_, Rule::Window { limit, .. }) => limit,
            (_, Rule::Rate { .. }) => 0,
        }
    }

    fn check_local(&self, ctx: &mut RequestCtx, local: &Local) -> Flow {
        let Some(asked) = self.ask(ctx) else {
            return Ok(());
        };
        let answer = Ok(local.admit(&asked.checks));
        self.decide(ctx, asked, answer)
    }

    async fn check_redis(&self, ctx: &mut RequestCtx, store: &Arc<RedisStore>) -> Flow {
        let Some(asked) = self.ask(ctx) else {
            return Ok(());
        };
        let answer = store.admit(&asked.checks).await;
        self.decide(ctx, asked, answer)
    }

    /// What `ctx` must be asked (none: no limit applies to it).
    fn ask(&self, ctx: &RequestCtx) -> Option<Asked> {
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
        let (checks, kinds) = self.checks(ctx, estimate.as_ref());
        (!checks.is_empty()).then_some(Asked {
            checks,
            kinds,
            estimate,
        })
    }

    /// The store's answer to what was asked.
    fn decide(
        &self,
        ctx: &mut RequestCtx,
        asked: Asked,
        answer: Result<Verdict, StoreError>,
    ) -> Flow {
        let Asked {
            checks,
            kinds,
            estimate,
        } = asked;
        match answer {
            Ok(Verdict::Admitted(grants)) => {
                self.admitted(ctx, checks, kinds, grants, estimate);
                Ok(())
            }
            Ok(Verdict::Refused { index, retry_us }) => {
                let (kind, check) = (&kinds[index], &checks[index]);
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

    fn admitted(
        &self,
        ctx: &mut RequestCtx,
        checks: PerRequest<Check>,
        kinds: [Kind; MOST_CHECKS],
        grants: PerRequest<Granted>,
        estimate: Option<Estimate>,
    ) {
        let mut charges = PerRequest::new();
        for ((check, kind), grant) in checks.into_iter().zip(kinds).zip(grants) {
            let shown = Shown {
                limit: self.limit_of(kind, &check),
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
                charges.push((
                    kind,
                    Charge {
                        key: check.key,
                        window_us,
                        reserved: check.cost,
                        actual: check.cost,
                        ticket: grant.ticket,
                    },
                ));
            }
        }
        if estimate.is_some() {
            ctx.estimate = estimate;
        }
        if !charges.is_empty() {
            ctx.reservations.push(Box::new(Settlement {
                store: self.store.clone(),
                strategy: self.tokens.as_ref().map(|t| t.strategy),
                charges,
            }));
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

/// What a request's windows reserved, settled when it ends.
struct Settlement {
    store: Arc<LimitStore>,
    strategy: Option<Strategy>,
    charges: PerRequest<(Kind, Charge)>,
}

impl Reservation for Settlement {
    fn settle(mut self: Box<Self>, ctx: &RequestCtx) {
        let outcome = &ctx.outcome;
        // A backend's answer was committed; else the gateway answered itself: every backend
        // failed, the client left first, or (2xx) the cache answered.
        let answered = outcome.backend.is_some();
        let served = answered || (200..300).contains(&outcome.status);
        // Usage: the backend's, or the end's estimate when it reported none (see `end`).
        let usage = outcome.usage.unwrap_or_default();
        // Taken from where they are (no copy of the inline list).
        let Settlement {
            store,
            strategy,
            charges,
        } = &mut *self;
        let strategy = *strategy;
        let charges = charges.drain(..).map(|(kind, mut charge)| {
            charge.actual = match kind {
                Kind::Rate => charge.reserved,
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
            charge
        });
        let metrics = matches!(**store, LimitStore::Redis(_)).then(|| ctx.gateway.metrics.clone());
        store.settle(charges, metrics);
    }
}
