//! The request stages, in order, in one place. Read top to bottom, this is what the gateway does
//! with a request; each stage lives in its own module under [`crate::stages`], and every request
//! ends in one place, the drop of its context ([`crate::end`]).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use http_body::Body;

use crate::answer::{Answer, AnswerHead, Reply};
use crate::ctx::{RequestCtx, Stop};
use crate::error::BoxError;
use crate::failover::{Winner, WinnerBody, attempt};
use crate::gateway::Gateway;
use crate::relay::Pending;
use crate::stages::Stage;
use crate::upstream::header_value_of;

pub use crate::ctx::ClientHead;

/// Goes on with the next stage, or leaves the stages with the answer a stage decided on.
macro_rules! check {
    ($stages:lifetime, $flow:expr) => {
        if let Err(stop) = $flow {
            break $stages Err(stop);
        }
    };
}

/// Handles one client request end to end.
///
/// One async function on purpose: every nested future is built and then moved into its parent,
/// so each level of nesting copies the whole state below it once per request. The stages' own
/// futures are small; the attempt phase is boxed, as it is large.
pub async fn handle<B>(gw: Arc<Gateway>, head: ClientHead, body: B, client: SocketAddr) -> Answer
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    // The request id and the context first: every answer (even a 404) can be correlated, and
    // the context ends the request whichever way it ends.
    let mut ctx = RequestCtx::start(gw.clone(), head, client);
    let stages = &gw.stages;
    let decided: Result<Winner, Stop> = 'stages: {
        // Route: only Azure OpenAI paths are served. Before auth, so that CORS preflights can
        // be answered on AI routes (and only there) without a key.
        check!('stages, stages.route.check(&mut ctx).await);
        // Client auth before anything costly: unknown callers learn nothing more.
        check!('stages, stages.auth.check(&mut ctx).await);
        // Body, buffered (bounded) so any backend can be retried with it.
        check!('stages, stages.body.read(&mut ctx, body).await);
        // The gateway's own limits, asked together (one Redis round trip when shared): request
        // rate per client address, request quota, token limit and token quota (admission: the
        // request's estimate is reserved, and settled with its real usage when it ends).
        check!('stages, stages.limits.check(&mut ctx).await);
        // Response cache: after the body (the key is its canonical form) and the limits; a hit
        // is answered here, without a backend: it counts against request rates and quotas, and
        // its token reservation is given back (a hit spends no tokens).
        check!('stages, stages.cache.check(&mut ctx).await);
        // Backend selection inputs: Responses affinity, then the consistent-hash key.
        check!('stages, stages.affinity.check(&mut ctx).await);
        ctx.hash_key = gw.balancer.hash_key(&ctx);
        // Attempts with failover until an answer can be committed; then, before it leaves (a
        // client may send its follow-up as soon as it has it), affinity remembers a created
        // response. Boxed: the phase is large and not every request waits in it.
        let attempts = Box::pin(async {
            let winner = attempt(&gw, &ctx).await?;
            stages.affinity.remember(&ctx, &winner).await;
            stages.cache.fill(&ctx, &winner).await;
            Ok(winner)
        });
        attempts.await.map_err(Stop::Refuse)
    };
    let mut reply = match decided {
        Ok(winner) => respond(&gw, &mut ctx, winner),
        Err(Stop::Refuse(error)) => {
            ctx.refused(&error);
            Reply::error(error)
        }
        Err(Stop::Answer(reply)) => {
            ctx.outcome.status = reply.head.status.as_u16();
            *reply
        }
    };
    // Every stage's say on the answer's fields, then the body takes the context over: the
    // request ends when the connection is done with it.
    stages.respond(&ctx, &mut reply.head);
    merge(
        &mut reply.head.headers,
        std::mem::take(&mut ctx.response_headers),
    );
    reply.attach(ctx)
}

/// The answer from the winning backend: its fields and status as they came, marked with who
/// answered; its body relayed. The request body is let go: nothing is retried any more.
fn respond(gw: &Gateway, ctx: &mut RequestCtx, winner: Winner) -> Reply {
    let backend = &gw.backends[winner.backend];
    let head = winner.head;
    let outcome = &mut ctx.outcome;
    outcome.status = head.status.as_u16();
    outcome.backend = Some(winner.backend);
    outcome.attempts = winner.attempts;
    outcome.attempt_open = winner.attempt_open;
    outcome.ttfb = Some(winner.ttfb);
    if gw.config.log.access {
        // Only the access record reads it (a copy of the value).
        outcome.region = head.fields.get("x-ms-region").and_then(header_value_of);
    }
    let hide_usage_chunk = ctx.body.take().is_some_and(|body| body.injected_usage);
    // Retrieving a response repeats the usage counted when it was created.
    let count_usage = ctx.route.is_some_and(|r| r.operation.spends_tokens());
    let body = match winner.body {
        // `content-length` is written from the body's exact size by the connection.
        WinnerBody::Buffered(data) => Pending::Whole {
            data,
            usage: count_usage,
        },
        WinnerBody::Sse {
            prefetched,
            framer,
            upstream,
        } => Pending::Sse {
            prefetched,
            framer,
            upstream,
            hide_usage_chunk,
            count_usage,
            gauge: gw.backend_metrics[winner.backend].active_streams.clone(),
            in_flight: backend.state.track(),
        },
        WinnerBody::Raw(upstream) => Pending::Raw(upstream),
    };
    Reply {
        head: AnswerHead {
            served_by: Some((backend.name_header.clone(), winner.attempts)),
            passed: head.fields,
            ..AnswerHead::own(head.status, HeaderMap::new())
        },
        body,
    }
}

/// Adds the fields stages put in the context to the answer's own (a stage's field replaces one
/// of the same name).
fn merge(into: &mut HeaderMap, from: HeaderMap) {
    if from.is_empty() {
        return;
    }
    let mut last = None;
    for (name, value) in from {
        match name {
            Some(name) => {
                into.insert(name.clone(), value);
                last = Some(name);
            }
            None => {
                if let Some(name) = &last {
                    into.append(name.clone(), value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    fn size_of<F: std::future::Future>(_: &F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A request's future is built and moved at every stage (each level of nesting copies the
    /// state below it); rare or large parts (connecting, TLS, the attempt phase) are boxed so
    /// the copies stay small. Sizes, not timings: deterministic. Was 2 848 bytes before the
    /// stages were flattened into `handle`, 864 before the request context was boxed, 560 since
    /// (the bound leaves a few words for the stages to come).
    #[test]
    fn request_futures_stay_small() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let yaml = "version: 1\nbackends:\n  - { name: a, endpoint: 'http://127.0.0.1:9', auth: { mode: api-key, api_key: k } }\n";
            let config = crate::GatewayConfig::parse("t.yaml", yaml).unwrap();
            let gw = crate::gateway::Gateway::new(config, Arc::new(crate::metrics::Metrics::new()), None);
            let head = super::ClientHead {
                method: http::Method::POST,
                uri: http::Uri::from_static("/"),
                fields: Default::default(),
            };
            let body = http_body_util::Full::new(bytes::Bytes::new());
            let handle = super::handle(gw.clone(), head, body, "127.0.0.1:1".parse().unwrap());
            assert!(size_of(&handle) <= 600, "handle: {} bytes", size_of(&handle));
            let pool = gw.backends[0].pool.clone();
            let send = pool.send(pool.request(&http::Method::GET, "/"), bytes::Bytes::new());
            assert!(size_of(&send) <= 640, "send: {} bytes", size_of(&send));
        });
    }
}
