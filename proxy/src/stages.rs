//! The request stages. Each is a module of its own with one shape, [`Stage`]: it reads its part
//! of the config, builds its runtime state from a new config and the instance of the config it
//! replaces (so a reload never resets a cache, a counter or a token), checks a request before any
//! backend is tried, may adjust every answer's head, and settles what it holds for a request when
//! the request ends. [`crate::pipeline`] is the one place that orders them; [`Stages`] holds one
//! config generation's instances.
//!
//! Adding a stage: a module here implementing [`Stage`] (with its config section in
//! `config/raw.rs` and resolved next to it), a field in [`Stages`], one line in
//! `pipeline::handle`, and one in [`Stages::respond`] and [`Stages::end`].

pub mod affinity;
pub mod auth;
pub mod body;
pub mod cache;
pub mod limits;
pub mod route;
pub mod test_shim;

use crate::answer::AnswerHead;
use crate::config::GatewayConfig;
use crate::ctx::{Flow, RequestCtx};

/// One stage of the request path.
pub trait Stage: Sized {
    /// Builds the stage for a config generation. `previous` is this stage of the config being
    /// replaced (a reload), `None` at start: state that describes the outside world (stores,
    /// caches, counters, token providers) is taken over from it when the config still fits.
    fn new(config: &GatewayConfig, previous: Option<&Self>) -> Self;

    /// Checks a request before any backend is tried: `Ok(())` goes on to the next stage, an
    /// `Err` answers the request now (a refusal, or an answer of the stage's own). A stage that
    /// needs nothing from the outside world completes at once.
    fn check(&self, _ctx: &mut RequestCtx) -> impl Future<Output = Flow> + Send {
        std::future::ready(Ok(()))
    }

    /// Adjusts the head of every answer to the request, the backend's and the gateway's own:
    /// adds or rewrites fields (`head.headers`) or drops backend fields (`head.hidden`).
    fn respond(&self, _ctx: &RequestCtx, _head: &mut AnswerHead) {}

    /// The request has ended, whichever way ([`crate::end`]): its outcome (status, usage,
    /// completed or broken) is final. Called exactly once per request that reached the stages,
    /// before the request is counted: what the stage reserved for it is settled here.
    fn end(&self, _ctx: &RequestCtx) {}
}

/// The stages of one config generation.
#[derive(Debug)]
pub struct Stages {
    pub route: route::Routing,
    pub auth: auth::ClientAuth,
    pub body: body::BodyStage,
    pub limits: limits::Limits,
    pub cache: cache::ResponseCache,
    pub affinity: affinity::Affinity,
    pub test_shim: test_shim::TestShim,
}

impl Stages {
    /// Every stage for `config`, each built from its predecessor in `previous` (a reload).
    pub fn new(config: &GatewayConfig, previous: Option<&Stages>) -> Self {
        Self {
            route: Stage::new(config, previous.map(|p| &p.route)),
            auth: Stage::new(config, previous.map(|p| &p.auth)),
            body: Stage::new(config, previous.map(|p| &p.body)),
            limits: Stage::new(config, previous.map(|p| &p.limits)),
            cache: Stage::new(config, previous.map(|p| &p.cache)),
            affinity: Stage::new(config, previous.map(|p| &p.affinity)),
            test_shim: Stage::new(config, previous.map(|p| &p.test_shim)),
        }
    }

    /// Every stage's say on an answer's head, in stage order.
    pub fn respond(&self, ctx: &RequestCtx, head: &mut AnswerHead) {
        self.route.respond(ctx, head);
        self.auth.respond(ctx, head);
        self.body.respond(ctx, head);
        self.limits.respond(ctx, head);
        self.cache.respond(ctx, head);
        self.affinity.respond(ctx, head);
        self.test_shim.respond(ctx, head);
    }

    /// Every stage's end of a request, in stage order.
    pub fn end(&self, ctx: &RequestCtx) {
        self.route.end(ctx);
        self.auth.end(ctx);
        self.body.end(ctx);
        self.limits.end(ctx);
        self.cache.end(ctx);
        self.affinity.end(ctx);
        self.test_shim.end(ctx);
    }
}
