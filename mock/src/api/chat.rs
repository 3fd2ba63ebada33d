//! Chat completions (`chat/completions`): the Azure response shape, streamed or not.

use std::borrow::Cow;

use http::StatusCode;
use serde::Deserialize;

use super::chunks::{ChunkShape, ChunkStream};
use super::words::WordCount;
use super::{Call, Rejection, parse_json, random_id, unix_now, usage_json};
use crate::options::{FILTER_RESULTS_JSON, delta_text, json_string};
use crate::reply::{self, MockResponse};

#[derive(Deserialize)]
struct ChatRequest<'a> {
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    messages: Option<WordCount>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
pub(super) struct StreamOptions {
    #[serde(default)]
    pub(super) include_usage: Option<bool>,
}

impl StreamOptions {
    pub(super) fn wants_usage(options: Option<&Self>) -> bool {
        options.and_then(|options| options.include_usage) == Some(true)
    }
}

pub(super) fn create(call: &mut Call<'_>) -> Result<MockResponse, Rejection> {
    let body = call.body.clone();
    let request: ChatRequest<'_> = parse_json(&body)?;
    let model = call.model(request.model.as_deref())?;
    let Some(messages) = request.messages else {
        return Err(Box::new(reply::invalid_request(
            "missing_required_parameter",
            "Missing required parameter: 'messages'.",
            Some("messages"),
        )));
    };
    let prompt_tokens = messages.tokens();
    let completion_tokens = call.profile.options.chunk_count as u64;
    call.spend(model, prompt_tokens.saturating_add(completion_tokens))?;

    let id = random_id("chatcmpl-");
    let created = unix_now();
    let model_json = json_string(model);
    let usage = usage_json(prompt_tokens, completion_tokens);
    if request.stream == Some(true) {
        let include_usage = call.profile.options.stream_usage
            && StreamOptions::wants_usage(request.stream_options.as_ref());
        let usage = include_usage.then_some(usage);
        let script = ChunkStream::new(shape(), &id, created, &model_json, usage);
        return Ok(call.stream(script));
    }
    let content = &call.profile.completion_text_json;
    let filters = FILTER_RESULTS_JSON;
    let body = format!(
        concat!(
            r#"{{"id":"{id}","object":"chat.completion","created":{created},"model":{model},"#,
            r#""system_fingerprint":"fp_mock","choices":[{{"index":0,"message":{{"#,
            r#""role":"assistant","content":{content},"refusal":null,"annotations":[]}},"#,
            r#""logprobs":null,"finish_reason":"stop","content_filter_results":{filters}}}],"#,
            r#""usage":{usage},"prompt_filter_results":[{{"prompt_index":0,"#,
            r#""content_filter_results":{filters}}}]}}"#
        ),
        id = id,
        created = created,
        model = model_json,
        content = content,
        filters = filters,
        usage = usage,
    );
    Ok(reply::json(StatusCode::OK, body))
}

fn shape() -> ChunkShape {
    ChunkShape {
        object: "chat.completion.chunk",
        opening_choice: Some(concat!(
            r#"{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"#,
            r#""logprobs":null,"finish_reason":null}"#
        )),
        delta_choice: |index| {
            format!(
                r#"{{"index":0,"delta":{{"content":"{}"}},"logprobs":null,"finish_reason":null}}"#,
                delta_text(index)
            )
        },
        finish_choice: r#"{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}"#,
    }
}
