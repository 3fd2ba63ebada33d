//! The response cache stage: exact-match answers for non-streaming embeddings and
//! `temperature: 0` chat completions (`cache`, off unless the section is there).
//!
//! A request the cache may answer ([`key::cache_key`]) gets a key in `ctx.cache_key`; a stored
//! answer under it is served at once, without any backend (`x-gateway-cache: hit`), else the
//! request goes on (`x-gateway-cache: miss`) and a backend's 200 with a whole body fills the
//! entry ([`ResponseCache::fill`]). Errors, streams and anything relayed as it comes are never
//! stored. A hit spends no tokens: its answer reports no usage, so token limits charge nothing
//! for it, while the request-rate limits and request quotas, which run before this stage, count
//! it. The store ([`crate::stores::cache`]) is taken over by the next config when its settings
//! stay.
//!
//! Cost: with the cache off, a request pays one branch here and one in [`Stage::respond`].

pub mod config;
pub mod key;

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::answer::{AnswerHead, Reply};
use crate::config::GatewayConfig;
use crate::ctx::{Flow, RequestCtx, Stop};
use crate::failover::{Winner, WinnerBody};
use crate::stages::Stage;
use crate::stores::cache::{CacheStore, CachedAnswer};

pub const X_GATEWAY_CACHE: HeaderName = HeaderName::from_static("x-gateway-cache");
const HIT: HeaderValue = HeaderValue::from_static("hit");
const MISS: HeaderValue = HeaderValue::from_static("miss");

/// The response cache stage.
#[derive(Debug)]
pub struct ResponseCache {
    /// `None`: the cache is off.
    store: Option<Arc<CacheStore>>,
}

impl Stage for ResponseCache {
    fn new(config: &GatewayConfig, previous: Option<&Self>) -> Self {
        let Some(wanted) = &config.cache else {
            return Self { store: None };
        };
        let kept = previous
            .and_then(|p| p.store.as_ref())
            .filter(|store| store.fits(wanted.ttl, wanted.max_bytes));
        let store = match kept {
            Some(store) => store.clone(),
            None => Arc::new(CacheStore::in_process(wanted.ttl, wanted.max_bytes)),
        };
        Self { store: Some(store) }
    }

    /// Answers a request from the cache when an answer to the same is stored.
    async fn check(&self, ctx: &mut RequestCtx) -> Flow {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let Some(key) = request_key(ctx) else {
            return Ok(());
        };
        let found = store.lookup(&key).await;
        ctx.gateway.metrics.cache_lookup(found.is_some());
        ctx.cache_key = Some(key);
        match found {
            None => Ok(()),
            Some(answer) => Err(Stop::Answer(Box::new(hit(&answer)))),
        }
    }

    /// `x-gateway-cache: miss` on every other answer to a request the cache could have
    /// answered (a hit's answer says `hit` already).
    fn respond(&self, ctx: &RequestCtx, head: &mut AnswerHead) {
        if ctx.cache_key.is_some() && !head.headers.contains_key(X_GATEWAY_CACHE) {
            head.headers.insert(X_GATEWAY_CACHE, MISS);
        }
    }
}

impl ResponseCache {
    /// Stores the winner's answer under the request's key: a 200 whose body was read whole
    /// (never an error, a stream or a body relayed as it comes), not content-coded. Only its
    /// body and content type are kept.
    pub async fn fill(&self, ctx: &RequestCtx, winner: &Winner) {
        let (Some(store), Some(key)) = (&self.store, &ctx.cache_key) else {
            return;
        };
        let WinnerBody::Buffered(body) = &winner.body else {
            return;
        };
        let fields = &winner.head.fields;
        if winner.head.status != StatusCode::OK || fields.get("content-encoding").is_some() {
            return;
        }
        // Checked before the copy, which only what fits pays for.
        if (key.len() + body.len()) as u64 > store.largest_entry() {
            return;
        }
        let answer = CachedAnswer::new(key.len(), body, fields.get("content-type"));
        store.store(key.clone(), answer).await;
    }
}

/// The cache key of a request the cache may answer.
fn request_key(ctx: &RequestCtx) -> Option<bytes::Bytes> {
    let route = ctx.route?;
    if !key::eligible_route(&ctx.head.method, &route) || ctx.stream {
        return None;
    }
    let body = ctx.body.as_ref()?;
    let principal = ctx.principal.as_ref();
    let parts = key::KeyParts {
        consumer: ctx.consumer.as_ref().map(|c| &*c.name),
        principal: (
            principal.and_then(|p| p.id.as_deref()),
            principal.and_then(|p| p.tenant.as_deref()),
        ),
        route,
        path: ctx.path(),
        query: ctx.head.uri.query(),
    };
    key::cache_key(&parts, &body.bytes)
}

/// The answer served from the cache: the stored body and content type, status 200.
fn hit(answer: &CachedAnswer) -> Reply {
    let mut headers = HeaderMap::with_capacity(2);
    if let Some(content_type) = &answer.content_type {
        headers.insert(http::header::CONTENT_TYPE, content_type.clone());
    }
    headers.insert(X_GATEWAY_CACHE, HIT);
    Reply::own(StatusCode::OK, headers, answer.body.clone())
}
