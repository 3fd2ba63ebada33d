//! SSE streams of `data: {...chunk...}` events ending in `data: [DONE]`, as chat completions and
//! legacy completions send them. Events are assembled from a per-stream prefix and fixed choice
//! fragments, so no JSON is serialized per delta.

use bytes::Bytes;

use crate::body::StreamScript;

/// The fixed parts of one kind of chunk stream.
pub(super) struct ChunkShape {
    /// `"object"` of every chunk.
    pub(super) object: &'static str,
    /// A choice sent before the deltas (the chat role delta), if any.
    pub(super) opening_choice: Option<&'static str>,
    /// The choice carrying content delta `index`.
    pub(super) delta_choice: fn(usize) -> String,
    /// The choice with `finish_reason`.
    pub(super) finish_choice: &'static str,
}

/// A chunk stream for one request.
pub(super) struct ChunkStream {
    shape: ChunkShape,
    /// `data: {"id":..,"object":..,"created":..,"model":..,"choices":[`
    prefix: String,
    /// Closes the choices array (with `"usage":null` when usage was asked for) and the event.
    suffix: &'static str,
    /// The final usage chunk's `usage`, when `stream_options.include_usage` is true.
    usage: Option<String>,
}

impl ChunkStream {
    pub(super) fn new(
        shape: ChunkShape,
        id: &str,
        created: u64,
        model_json: &str,
        usage: Option<String>,
    ) -> Self {
        let prefix = format!(
            r#"data: {{"id":"{id}","object":"{}","created":{created},"model":{model_json},"system_fingerprint":"fp_mock","choices":["#,
            shape.object
        );
        let suffix = if usage.is_some() {
            "],\"usage\":null}\n\n"
        } else {
            "]}\n\n"
        };
        Self {
            shape,
            prefix,
            suffix,
            usage,
        }
    }

    fn event(&self, choice: &str, suffix: &str) -> Bytes {
        let mut event = String::with_capacity(self.prefix.len() + choice.len() + suffix.len());
        event.push_str(&self.prefix);
        event.push_str(choice);
        event.push_str(suffix);
        Bytes::from(event)
    }
}

impl StreamScript for ChunkStream {
    fn head(&mut self) -> Vec<Bytes> {
        self.shape
            .opening_choice
            .map(|choice| self.event(choice, self.suffix))
            .into_iter()
            .collect()
    }

    fn delta(&mut self, index: usize) -> Bytes {
        self.event(&(self.shape.delta_choice)(index), self.suffix)
    }

    fn tail(&mut self) -> Vec<Bytes> {
        let mut events = vec![self.event(self.shape.finish_choice, self.suffix)];
        if let Some(usage) = &self.usage {
            events.push(self.event("", &format!("],\"usage\":{usage}}}\n\n")));
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        events
    }
}
