//! Responses affinity: a request naming a response (its id in the path, or
//! `previous_response_id` in the body) goes to the backend that created it; after a created
//! response the gateway remembers which backend holds it. The store
//! ([`crate::stores::affinity`]) is taken over by the next config when its settings stay.

pub mod config;

use std::sync::Arc;

use crate::config::GatewayConfig;
use crate::ctx::{Flow, RequestCtx};
use crate::failover::{Winner, WinnerBody};
use crate::scan::Scan;
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
            WinnerBody::Buffered(bytes) => self.remember_from(bytes, backend).await,
            WinnerBody::Sse { prefetched, .. } => {
                for event in prefetched {
                    self.remember_from(event, backend).await;
                }
            }
            WinnerBody::Raw(_) => {}
        }
    }

    async fn remember_from(&self, body: &[u8], backend: &Arc<str>) {
        let data = match crate::sse::parts(body) {
            (_, Some(data)) if body.starts_with(b"event:") || body.starts_with(b"data:") => data,
            _ => body,
        };
        if let Some(id) = created_response_id(data).filter(|id| id.starts_with("resp")) {
            self.store.remember(id, backend).await;
        }
    }
}

/// The id of a created response: `response.id` of a streamed event about one
/// (`response.created`), else the `id` of a Responses object. Walked with the scanner, not
/// parsed into values: an agent's answer runs to megabytes of output. `None` for anything but a
/// whole JSON object, or an id with escapes (response ids have none).
fn created_response_id(json: &[u8]) -> Option<&str> {
    type Ids<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);
    fn ids<'a>(scan: &mut Scan<'a>) -> Option<Ids<'a>> {
        let (mut id, mut nested) = (None, None);
        scan.members(|scan, key| {
            match (key, scan.peek()?) {
                (b"id", b'"') => id = Some(scan.string()?),
                (b"response", b'{') => nested = ids(scan)?.0,
                _ => scan.skip_value()?,
            }
            Some(())
        })?;
        Some((id, nested))
    }
    let mut scan = Scan::new(json);
    let (id, nested) = ids(&mut scan)?;
    let raw = nested.or(id).filter(|raw| !raw.contains(&b'\\'))?;
    scan.at_end()
        .then(|| std::str::from_utf8(raw).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_created_response_id_is_read_from_objects_and_events() {
        let cases: [(&[u8], Option<&str>); 10] = [
            (br#"{"id":"resp_1","object":"response","output":[{"id":"msg_1","content":[{"text":"a \"}\" b"}]}]}"#, Some("resp_1")),
            (br#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_2","status":"in_progress"}}"#, Some("resp_2")),
            (br#"{"id":"evt_1","response":{"id":"resp_3"}}"#, Some("resp_3")),
            (br#"{"response":{"status":"x"},"id":"resp_4"}"#, Some("resp_4")),
            (br#" { "id" : "resp_5" } "#, Some("resp_5")),
            (br#"{"id":5}"#, None),
            (br#"{"id":"resp_\u0036"}"#, None),
            (br#"{"id":"resp_7""#, None),
            (br#"{"id":"resp_8"} trailing"#, None),
            (br#"["resp_9"]"#, None),
        ];
        for (json, id) in cases {
            assert_eq!(
                super::created_response_id(json),
                id,
                "{}",
                String::from_utf8_lossy(json)
            );
        }
    }
}
