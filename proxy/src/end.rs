//! The one end of every request. A request's [`RequestCtx`] is created when it starts and
//! dropped exactly once, whichever way the request ended: a refusal before or after its body, an
//! error after failover, a whole or streamed answer written to the end, a client that went away,
//! a shutdown that cut it. The drop counts it (`gateway_requests_total`, tokens), writes its
//! access record (one schema for every request) and lets every stage settle what it holds for it
//! ([`crate::stages::Stage::end`]: the limits' reservations).
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
        // The stages' end first (the limits settle what they reserved): they see the whole
        // context. The labels then take over what they need from it (moved, not cloned: the
        // consumer's name is shared by every worker).
        if !self.unread {
            self.gateway.stages.end(self);
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
    use std::sync::Arc;

    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};
    use http_body_util::BodyExt;

    use super::*;
    use crate::answer::Reply;
    use crate::ctx::ClientHead;
    use crate::gateway::Gateway;
    use crate::stages::Stage;

    const BACKEND: &str = "backends:\n  - { name: a, endpoint: 'http://127.0.0.1:9', auth: { mode: api-key, api_key: k } }\n";

    fn gateway(extra: &str) -> Arc<Gateway> {
        let yaml = format!("version: 1\n{BACKEND}{extra}");
        let config = crate::GatewayConfig::parse("t.yaml", &yaml).unwrap();
        Gateway::new(config, Arc::new(crate::metrics::Metrics::new()), None)
    }

    fn ctx(gateway: &Arc<Gateway>) -> Box<RequestCtx> {
        RequestCtx::start(
            gateway.clone(),
            ClientHead::unread(),
            "127.0.0.1:1".parse().unwrap(),
        )
    }

    /// The requests the end counted so far, by the status they count under.
    fn counted(gateway: &Gateway) -> Vec<(String, f64)> {
        let text = gateway.metrics.encode(&gateway.backends);
        let mut counted: Vec<(String, f64)> = text
            .lines()
            .filter(|line| line.starts_with("gateway_requests_total{"))
            .map(|line| {
                let status = line.split("status=\"").nth(1).unwrap();
                let status = status.split('"').next().unwrap().to_owned();
                let value = line.rsplit(' ').next().unwrap().parse().unwrap();
                (status, value)
            })
            .collect();
        counted.sort_by(|a, b| a.0.cmp(&b.0));
        counted
    }

    fn once(status: &str) -> Vec<(String, f64)> {
        vec![(status.to_owned(), 1.0)]
    }

    #[test]
    fn a_request_dropped_before_any_answer_ends_once_as_client_closed() {
        let gateway = gateway("");
        drop(ctx(&gateway));
        assert_eq!(counted(&gateway), once("499"));
    }

    #[tokio::test]
    async fn an_answer_ends_once_when_its_body_is_done_or_dropped() {
        // Written to the end.
        let gateway = gateway("");
        let mut request = ctx(&gateway);
        request.outcome.status = 200;
        let answer =
            Reply::own(StatusCode::OK, HeaderMap::new(), Bytes::from_static(b"ok")).attach(request);
        assert_eq!(counted(&gateway), [], "ended before the body was done");
        let written = answer.body.collect().await.unwrap().to_bytes();
        assert_eq!(&written[..], b"ok");
        assert_eq!(counted(&gateway), once("200"));
        // Dropped unwritten (the client went away): counted as the client's close.
        let gateway = self::gateway("");
        let mut request = ctx(&gateway);
        request.outcome.status = 200;
        let answer =
            Reply::own(StatusCode::OK, HeaderMap::new(), Bytes::from_static(b"ok")).attach(request);
        drop(answer);
        assert_eq!(counted(&gateway), once("499"));
    }

    #[test]
    fn a_cut_request_ends_as_shutdown() {
        let gateway = gateway("");
        gateway.run.cut();
        drop(ctx(&gateway));
        let mut answered = ctx(&gateway);
        answered.outcome.status = 200;
        drop(answered);
        // The one without an answer counts as the client's close (nobody got an answer), the
        // answered one as broken by the shutdown.
        assert_eq!(counted(&gateway), [once("499"), once("503")].concat());
    }

    /// The stages' end runs once per request, with its final outcome: a request quota of two,
    /// a request admitted and dropped before any answer gives its request back (once: given
    /// back twice, a fourth request would pass too).
    #[tokio::test]
    async fn the_stages_settle_at_the_end_exactly_once() {
        let gateway = gateway("limits: { quota: { window: 60s, requests: 2 } }\n");
        async fn admit(gateway: &Arc<Gateway>) -> (Box<RequestCtx>, bool) {
            let mut request = ctx(gateway);
            let passed = gateway.stages.limits.check(&mut request).await.is_ok();
            (request, passed)
        }
        let (first, passed) = admit(&gateway).await;
        assert!(passed);
        let (mut second, passed) = admit(&gateway).await;
        assert!(passed);
        // Not answered: nothing served, the quota's request is given back.
        drop(first);
        let (third, passed) = admit(&gateway).await;
        assert!(passed, "the dropped request's quota was not given back");
        let (_, passed) = admit(&gateway).await;
        assert!(!passed, "given back more than once");
        // Answered (2xx): it counts; the third, unanswered, is given back.
        second.outcome.status = 200;
        drop(second);
        drop(third);
        let (_kept, passed) = admit(&gateway).await;
        assert!(passed, "the unanswered request was not given back");
        let (_, passed) = admit(&gateway).await;
        assert!(!passed, "the answered request was given back too");
    }
}
