//! The one end of every request. A request's [`RequestCtx`] is created when it starts and
//! dropped exactly once, whichever way the request ended: a refusal before or after its body, an
//! error after failover, a whole or streamed answer written to the end, a client that went away,
//! a shutdown that cut it. The drop counts it (`gateway_requests_total`, tokens), writes its
//! access record (one schema for every request) and settles what limits reserved for it.
//!
//! Where the context is when the request ends: in the answer's body (the connection drops the
//! body once written, or when the client is gone), or in the request's future (dropped when the
//! client goes away before an answer), or in the connection's refusal of a request it could not
//! read.

use std::sync::Arc;
use std::sync::LazyLock;

use crate::ctx::{Outcome as RequestOutcome, RequestCtx};
use crate::error::Outcome;
use crate::metrics::RequestLabels;

/// Consumer label of requests without a known key (one shared allocation).
static ANONYMOUS: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("anonymous"));
/// The empty label value (no backend, no model).
static EMPTY_LABEL: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(""));

/// nginx's status for a request whose client closed the connection before it was answered.
pub const CLIENT_CLOSED: u16 = 499;

/// What a limit reserved for a request (tokens, a request of a quota). Settled once, when the
/// request ends: the reservation reads the outcome (status, usage, completed) from the context
/// and charges what was used or refunds the rest.
pub trait Reservation: Send + Sync {
    fn settle(self: Box<Self>, ctx: &RequestCtx);
}

impl Drop for RequestCtx {
    fn drop(&mut self) {
        self.gateway.run.give_back(&self.body_budget);
        if self.outcome.status == 0 {
            // No answer was made: the client went away while the request waited (for its
            // body, a backend), or a shutdown dropped it.
            self.outcome.status = CLIENT_CLOSED;
            self.outcome.error = Some(if self.gateway.run.is_cut() {
                "shutdown"
            } else {
                "client_closed"
            });
        } else if !self.outcome.completed && self.outcome.broken.is_none() {
            self.outcome.broken = Some(if self.gateway.run.is_cut() {
                "shutdown"
            } else {
                "client_closed"
            });
        }
        // A backend's answer without usage, for a request whose tokens something counts: its
        // estimate stands in (counted), so limits and token metrics never silently see zero.
        if self.outcome.usage.is_none()
            && self.outcome.backend.is_some()
            && (200..300).contains(&self.outcome.status)
            && let Some(estimate) = self.estimate
        {
            self.outcome.usage = Some(estimate.usage());
            self.outcome.usage_estimated = true;
            self.gateway.metrics.usage_estimated();
        }
        // Settled first: a reservation sees the whole context. The labels then take over what
        // they need from it (moved, not cloned: the consumer's name is shared by every worker).
        for reservation in std::mem::take(&mut self.reservations) {
            reservation.settle(self);
        }
        let labels = labels(self);
        let gateway = &self.gateway;
        gateway
            .metrics
            .request(&labels, self.outcome.usage.as_ref());
        if let (true, Some(backend)) = (self.outcome.attempt_open, self.outcome.backend) {
            // A committed stream's attempt: `ok` unless the backend broke it.
            let outcome = match self.outcome.broken {
                Some("stream_error") => Outcome::StreamError,
                Some("timeout") => Outcome::Timeout,
                _ => Outcome::Ok,
            };
            gateway.backend_metrics[backend].attempt(outcome);
        }
        if self.gateway.config.log.access {
            access_record(self, &labels);
        }
    }
}

/// The request's metric labels (low cardinality: route and operation, consumer name, bounded
/// model label, backend name, status).
fn labels(ctx: &mut RequestCtx) -> RequestLabels {
    let (route, operation) = ctx.route.map_or(("none", "none"), |r| {
        (r.family.label(), r.operation.label())
    });
    RequestLabels {
        route,
        operation,
        consumer: ctx
            .consumer
            .take()
            .map_or_else(|| ANONYMOUS.clone(), |c| c.name),
        model: ctx.model.take().unwrap_or_else(|| EMPTY_LABEL.clone()),
        backend: ctx.outcome.backend.map_or_else(
            || EMPTY_LABEL.clone(),
            |i| ctx.gateway.backends[i].config.name.clone(),
        ),
        status: counted_status(&ctx.outcome),
        stream: ctx.stream,
    }
}

/// The status a request counts under: the answer's, unless its body broke after the head went
/// out (the client saw 200, then an error event or a cut): then the status of what broke it, so
/// a broken stream never counts as a success.
fn counted_status(outcome: &RequestOutcome) -> u16 {
    match outcome.broken {
        None => outcome.status,
        Some("stream_error") => 502,
        Some("timeout") => 504,
        Some("shutdown") => 503,
        Some(_) => CLIENT_CLOSED,
    }
}

/// The name of the backend whose answer was committed, or "".
pub fn backend_name(ctx: &RequestCtx) -> &str {
    ctx.outcome
        .backend
        .map_or("", |i| &ctx.gateway.backends[i].config.name)
}

/// The access record: the same fields for every request, empty ("" or 0) where unknown.
fn access_record(ctx: &RequestCtx, labels: &RequestLabels) {
    let outcome = &ctx.outcome;
    let usage = outcome.usage.unwrap_or_default();
    let (method, path) = if ctx.unread {
        ("", "")
    } else {
        (ctx.head.method.as_str(), ctx.path())
    };
    let upstream_status = if outcome.backend.is_some() {
        outcome.status
    } else {
        0
    };
    tracing::info!(
        target: "access",
        request_id = ctx.id.to_str().unwrap_or_default(),
        consumer = %labels.consumer,
        client_ip = %ctx.client.ip(),
        method,
        path,
        route = labels.route,
        operation = labels.operation,
        status = outcome.status,
        error = outcome.error.unwrap_or_default(),
        backend = %labels.backend,
        attempts = outcome.attempts,
        upstream_status,
        stream = labels.stream,
        completed = outcome.completed,
        broken = outcome.broken.unwrap_or_default(),
        latency_ms = ctx.started.elapsed().as_secs_f64() * 1000.0,
        ttfb_ms = outcome.ttfb.map_or(0.0, |t| t.as_secs_f64() * 1000.0),
        prompt_tokens = usage.prompt,
        completion_tokens = usage.completion,
        total_tokens = usage.total,
        usage_estimated = outcome.usage_estimated,
        model = %labels.model,
        region = outcome
            .region
            .as_ref()
            .and_then(|r| r.to_str().ok())
            .unwrap_or_default(),
        "request"
    );
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};
    use http_body_util::BodyExt;

    use super::*;
    use crate::answer::Reply;
    use crate::ctx::ClientHead;
    use crate::gateway::Gateway;

    /// What a test reservation saw when it was settled, per call: status, error, completed,
    /// broken.
    type Settled = Arc<Mutex<Vec<(u16, Option<&'static str>, bool, Option<&'static str>)>>>;

    struct Probe(Settled);

    impl Reservation for Probe {
        fn settle(self: Box<Self>, ctx: &RequestCtx) {
            let outcome = &ctx.outcome;
            self.0.lock().unwrap().push((
                outcome.status,
                outcome.error,
                outcome.completed,
                outcome.broken,
            ));
        }
    }

    fn ctx_with_probe() -> (Box<RequestCtx>, Settled) {
        let yaml = "version: 1\nbackends:\n  - { name: a, endpoint: 'http://127.0.0.1:9', auth: { mode: api-key, api_key: k } }\n";
        let config = crate::GatewayConfig::parse("t.yaml", yaml).unwrap();
        let gateway = Gateway::new(config, Arc::new(crate::metrics::Metrics::new()), None);
        let mut ctx = RequestCtx::start(
            gateway,
            ClientHead::unread(),
            "127.0.0.1:1".parse().unwrap(),
        );
        let settled = Settled::default();
        ctx.reservations.push(Box::new(Probe(settled.clone())));
        (ctx, settled)
    }

    #[test]
    fn a_request_dropped_before_any_answer_is_settled_once_as_client_closed() {
        let (ctx, settled) = ctx_with_probe();
        drop(ctx);
        assert_eq!(
            *settled.lock().unwrap(),
            [(CLIENT_CLOSED, Some("client_closed"), false, None)]
        );
    }

    #[tokio::test]
    async fn an_answer_is_settled_once_when_its_body_is_done_or_dropped() {
        // Written to the end.
        let (mut ctx, settled) = ctx_with_probe();
        ctx.outcome.status = 200;
        let answer =
            Reply::own(StatusCode::OK, HeaderMap::new(), Bytes::from_static(b"ok")).attach(ctx);
        assert!(
            settled.lock().unwrap().is_empty(),
            "settled before the body was done"
        );
        let written = answer.body.collect().await.unwrap().to_bytes();
        assert_eq!(&written[..], b"ok");
        assert_eq!(*settled.lock().unwrap(), [(200, None, true, None)]);
        // Dropped unwritten (the client went away).
        let (mut ctx, settled) = ctx_with_probe();
        ctx.outcome.status = 200;
        let answer =
            Reply::own(StatusCode::OK, HeaderMap::new(), Bytes::from_static(b"ok")).attach(ctx);
        drop(answer);
        assert_eq!(
            *settled.lock().unwrap(),
            [(200, None, false, Some("client_closed"))]
        );
    }

    #[test]
    fn a_cut_request_is_settled_as_shutdown() {
        let (ctx, settled) = ctx_with_probe();
        ctx.gateway.run.cut();
        drop(ctx);
        assert_eq!(
            *settled.lock().unwrap(),
            [(CLIENT_CLOSED, Some("shutdown"), false, None)]
        );
        let (mut ctx, settled) = ctx_with_probe();
        ctx.gateway.run.cut();
        ctx.outcome.status = 200;
        drop(ctx);
        assert_eq!(
            *settled.lock().unwrap(),
            [(200, None, false, Some("shutdown"))]
        );
    }
}
