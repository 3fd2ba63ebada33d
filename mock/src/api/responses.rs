//! The Responses API: create (streamed or not), get, delete, cancel and input items, with
//! `previous_response_id` only valid on the backend that created the response.

mod object;
mod store;
mod stream;

use std::borrow::Cow;

use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use self::object::Draft;
pub(crate) use self::store::ResponseStore;
use self::stream::ResponseStream;
use super::words::WordCount;
use super::{Call, Rejection, parse_json, random_id, unix_now};
use crate::reply::{self, MockResponse};

#[derive(Deserialize)]
struct CreateRequest<'a> {
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    input: WordCount,
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    previous_response_id: Option<String>,
    #[serde(default)]
    store: Option<bool>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
}

pub(super) fn create(call: &mut Call<'_>) -> Result<MockResponse, Rejection> {
    let body = call.body.clone();
    let request: CreateRequest<'_> = parse_json(&body)?;
    let model = call.model(request.model.as_deref())?.to_owned();
    // Reasoning state is encrypted with a key only the creating backend holds.
    if let Some(previous) = &request.previous_response_id
        && !call.shared.responses.contains(previous)
    {
        let body = json!({"error": {
            "code": "invalid_encrypted_content",
            "message": "The encrypted content could not be verified.",
            "type": "invalid_request_error",
        }});
        return Err(Box::new(reply::json_value(StatusCode::BAD_REQUEST, &body)));
    }
    let instruction_words = request
        .instructions
        .as_deref()
        .map_or(0, |text| text.split_whitespace().count() as u64);
    let input_tokens = WordCount(request.input.0 + instruction_words).tokens();
    let output_tokens = call.profile.options.chunk_count as u64;
    call.spend(&model, input_tokens.saturating_add(output_tokens))?;

    let store = request.store != Some(false);
    let draft = Draft {
        id: random_id("resp_"),
        item_id: random_id("msg_"),
        model,
        created_at: unix_now(),
        instructions: request.instructions,
        previous_response_id: request.previous_response_id,
        metadata: request.metadata.unwrap_or_else(|| json!({})),
        store,
        max_output_tokens: request.max_output_tokens,
        input_tokens,
        output_tokens,
        text: call.profile.completion_text.clone(),
    };
    let completed = draft.response(true);
    if store {
        call.shared
            .responses
            .insert(draft.id.clone(), completed.clone());
    }
    if request.stream == Some(true) {
        let script = ResponseStream::new(&draft, call.profile.options.chunk_count);
        return Ok(call.stream(script));
    }
    Ok(reply::json_value(StatusCode::OK, &completed))
}

pub(super) fn get(call: &Call<'_>, id: &str) -> MockResponse {
    match call.shared.responses.get(id) {
        Some(object) => reply::json_value(StatusCode::OK, &object),
        None => not_found(id),
    }
}

pub(super) fn delete(call: &Call<'_>, id: &str) -> MockResponse {
    if !call.shared.responses.remove(id) {
        return not_found(id);
    }
    let body = json!({"id": id, "object": "response.deleted", "deleted": true});
    reply::json_value(StatusCode::OK, &body)
}

pub(super) fn cancel(call: &Call<'_>, id: &str) -> MockResponse {
    match call.shared.responses.cancel(id) {
        Some(object) => reply::json_value(StatusCode::OK, &object),
        None => not_found(id),
    }
}

pub(super) fn input_items(call: &Call<'_>, id: &str) -> MockResponse {
    if !call.shared.responses.contains(id) {
        return not_found(id);
    }
    let body = json!({
        "object": "list",
        "data": [],
        "first_id": null,
        "last_id": null,
        "has_more": false,
    });
    reply::json_value(StatusCode::OK, &body)
}

fn not_found(id: &str) -> MockResponse {
    reply::error(
        StatusCode::NOT_FOUND,
        "404",
        &format!("Response with id '{id}' not found."),
    )
}
