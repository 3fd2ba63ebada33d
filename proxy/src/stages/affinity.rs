//! Responses affinity: a request naming a response (its id in the path, or
//! `previous_response_id` in the body) goes to the backend that created it; after a created
//! response the gateway remembers which backend holds it. The store
//! ([`crate::stores::affinity`]) is taken over by the next config when its settings stay.

pub mod config;

use std::sync::Arc;

use crate::config::GatewayConfig;
use crate::ctx::{Flow, RequestCtx};
use crate::failover::{Winner, WinnerBody};
use crate::scan::created_response_id;
use crate::stages::Stage;
use crate::stages::route::Operation;
use crate::stores::affinity::AffinityStore;

/// The affinity stage.
#[derive(Debug)]
pub struct Affinity {
    store: Arc<AffinityStore>,
}

impl Stage for Affinity {
    fn new(config: &GatewayConfig, previous: Option<&Self>) -> Self {
        let responses = &config.responses;
        let store = previous
            .filter(|p| {
                p.store
                    .fits(responses.affinity_ttl, responses.affinity_capacity)
            })
            .map_or_else(
                || {
                    Arc::new(AffinityStore::in_process(
                        responses.affinity_ttl,
                        responses.affinity_capacity,
                    ))
                },
                |p| p.store.clone(),
            );
        Self { store }
    }

    /// Pins the request to the backend holding the response it refers to, if known.
    async fn check(&self, ctx: &mut RequestCtx) -> Flow {
        let path_id = ctx.route.and_then(|r| r.response_id(ctx.head.uri.path()));
        let previous = ctx
            .body
            .as_ref()
            .and_then(|b| b.previous_response_id.as_deref());
        let Some(id) = path_id.or(previous) else {
            return Ok(());
        };
        if let Some(name) = self.store.lookup(id).await {
            ctx.pinned = ctx.gateway.backend_index(&name);
        }
        Ok(())
    }
}

impl Affinity {
    /// After a created response, remembers which backend holds it. Called before the answer
    /// leaves: a client may send its follow-up as soon as it has the answer.
    pub async fn remember(&self, ctx: &RequestCtx, winner: &Winner) {
        let created = ctx
            .route
            .is_some_and(|r| r.operation == Operation::ResponsesCreate);
        if !created || !winner.head.status.is_success() {
            return;
        }
        let backend = &ctx.gateway.backends[winner.backend].config.name;
        match &winner.body {
            WinnerBody::Buffered(bytes) => self.remember_from(Some(bytes), backend).await,
            WinnerBody::Sse { prefetched, .. } => {
                // Each event read by its data, however it is framed (`id:`, `retry:` or a
                // comment may come first).
                for event in prefetched {
                    self.remember_from(crate::sse::data(event).as_deref(), backend)
                        .await;
                }
            }
            WinnerBody::Raw(_) => {}
        }
    }

    /// `document` is a whole Responses object, or the data of one SSE event.
    async fn remember_from(&self, document: Option<&[u8]>, backend: &Arc<str>) {
        let id = document
            .and_then(created_response_id)
            .filter(|id| id.starts_with("resp"));
        if let Some(id) = id {
            self.store.remember(id, backend).await;
        }
    }
}
