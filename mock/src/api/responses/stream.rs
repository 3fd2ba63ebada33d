//! The SSE events of a streamed response (`event: <type>` + `data: <json>`, each with its
//! `sequence_number`), in the order the official SDKs' stream helpers accumulate them.

use bytes::Bytes;
use serde_json::{Value, json};

use super::object::Draft;
use crate::body::StreamScript;
use crate::options::delta_text;

/// Events before the deltas, in order.
const HEAD_EVENTS: usize = 4;

pub(super) struct ResponseStream {
    head: Vec<Bytes>,
    tail: Vec<Bytes>,
    item_id: String,
}

impl ResponseStream {
    pub(super) fn new(draft: &Draft, chunk_count: usize) -> Self {
        let in_progress = draft.response(false);
        let empty_part = draft.text_part("");
        let head = vec![
            event("response.created", 0, json!({"response": in_progress})),
            event("response.in_progress", 1, json!({"response": in_progress})),
            event(
                "response.output_item.added",
                2,
                json!({"output_index": 0, "item": draft.message(false)}),
            ),
            event(
                "response.content_part.added",
                3,
                json!({
                    "item_id": draft.item_id,
                    "output_index": 0,
                    "content_index": 0,
                    "part": empty_part,
                }),
            ),
        ];
        let after_deltas = HEAD_EVENTS + chunk_count;
        let tail = vec![
            event(
                "response.output_text.done",
                after_deltas,
                json!({
                    "item_id": draft.item_id,
                    "output_index": 0,
                    "content_index": 0,
                    "text": draft.text,
                    "logprobs": [],
                }),
            ),
            event(
                "response.content_part.done",
                after_deltas + 1,
                json!({
                    "item_id": draft.item_id,
                    "output_index": 0,
                    "content_index": 0,
                    "part": draft.text_part(&draft.text),
                }),
            ),
            event(
                "response.output_item.done",
                after_deltas + 2,
                json!({"output_index": 0, "item": draft.message(true)}),
            ),
            event(
                "response.completed",
                after_deltas + 3,
                json!({"response": draft.response(true)}),
            ),
        ];
        Self {
            head,
            tail,
            item_id: draft.item_id.clone(),
        }
    }
}

impl StreamScript for ResponseStream {
    fn head(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.head)
    }

    fn delta(&mut self, index: usize) -> Bytes {
        Bytes::from(format!(
            concat!(
                "event: response.output_text.delta\n",
                r#"data: {{"type":"response.output_text.delta","sequence_number":{},"#,
                r#""item_id":"{}","output_index":0,"content_index":0,"delta":"{}","logprobs":[]}}"#,
                "\n\n"
            ),
            HEAD_EVENTS + index,
            self.item_id,
            delta_text(index)
        ))
    }

    fn tail(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.tail)
    }
}

/// One SSE event: `fields` plus `type` and `sequence_number`.
fn event(kind: &str, sequence_number: usize, mut fields: Value) -> Bytes {
    if let Some(fields) = fields.as_object_mut() {
        fields.insert("type".to_owned(), Value::from(kind));
        fields.insert("sequence_number".to_owned(), Value::from(sequence_number));
    }
    Bytes::from(format!("event: {kind}\ndata: {fields}\n\n"))
}
