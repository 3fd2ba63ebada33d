//! The JSON objects of the Responses API: the response, its message output item and its usage,
//! with every field the official SDKs' `Response` model expects.

use serde_json::{Value, json};

/// What a created response is made of, before its status and output are chosen.
pub(super) struct Draft {
    pub(super) id: String,
    pub(super) item_id: String,
    pub(super) model: String,
    pub(super) created_at: u64,
    pub(super) instructions: Option<String>,
    pub(super) previous_response_id: Option<String>,
    pub(super) metadata: Value,
    pub(super) store: bool,
    pub(super) max_output_tokens: Option<u64>,
    pub(super) input_tokens: u64,
    pub(super) output_tokens: u64,
    pub(super) text: String,
}

impl Draft {
    /// The response object; `output` and `usage` only when `completed`.
    pub(super) fn response(&self, completed: bool) -> Value {
        let (status, output, usage) = if completed {
            ("completed", vec![self.message(true)], self.usage())
        } else {
            ("in_progress", Vec::new(), Value::Null)
        };
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": false,
            "error": null,
            "incomplete_details": null,
            "instructions": self.instructions,
            "max_output_tokens": self.max_output_tokens,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": true,
            "previous_response_id": self.previous_response_id,
            "reasoning": {"effort": null, "summary": null},
            "service_tier": "default",
            "store": self.store,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage,
            "user": null,
            "metadata": self.metadata,
        })
    }

    /// The assistant message: empty and in progress, or holding the whole text.
    pub(super) fn message(&self, completed: bool) -> Value {
        let (status, content) = if completed {
            ("completed", vec![self.text_part(&self.text)])
        } else {
            ("in_progress", Vec::new())
        };
        json!({
            "id": self.item_id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        })
    }

    /// An `output_text` content part.
    pub(super) fn text_part(&self, text: &str) -> Value {
        json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    }

    fn usage(&self) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.input_tokens.saturating_add(self.output_tokens),
        })
    }
}
