//! Legacy completions (`completions`): the `text_completion` shape, streamed or not.

use std::borrow::Cow;

use http::StatusCode;
use serde::Deserialize;

use super::chat::StreamOptions;
use super::chunks::{ChunkShape, ChunkStream};
use super::words::WordCount;
use super::{Call, Rejection, parse_json, random_id, unix_now, usage_json};
use crate::options::{FILTER_RESULTS_JSON, delta_text, json_string};
use crate::reply::{self, MockResponse};

#[derive(Deserialize)]
struct CompletionRequest<'a> {
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    prompt: WordCount,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

pub(super) fn create(call: &mut Call<'_>) -> Result<MockResponse, Rejection> {
    let body = call.body.clone();
    let request: CompletionRequest<'_> = parse_json(&body)?;
    let model = call.model(request.model.as_deref())?;
    let prompt_tokens = request.prompt.tokens();
    let completion_tokens = call.profile.options.chunk_count as u64;
    call.spend(model, prompt_tokens.saturating_add(completion_tokens))?;

    let id = random_id("cmpl-");
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
    let text = &call.profile.completion_text_json;
    let filters = FILTER_RESULTS_JSON;
    let body = format!(
        concat!(
            r#"{{"id":"{id}","object":"text_completion","created":{created},"model":{model},"#,
            r#""choices":[{{"text":{text},"index":0,"logprobs":null,"finish_reason":"stop","#,
            r#""content_filter_results":{filters}}}],"usage":{usage},"#,
            r#""prompt_filter_results":[{{"prompt_index":0,"content_filter_results":{filters}}}]}}"#
        ),
        id = id,
        created = created,
        model = model_json,
        text = text,
        filters = filters,
        usage = usage,
    );
    Ok(reply::json(StatusCode::OK, body))
}

fn shape() -> ChunkShape {
    ChunkShape {
        object: "text_completion",
        opening_choice: None,
        delta_choice: |index| {
            format!(
                r#"{{"text":"{}","index":0,"logprobs":null,"finish_reason":null}}"#,
                delta_text(index)
            )
        },
        finish_choice: r#"{"text":"","index":0,"logprobs":null,"finish_reason":"stop"}"#,
    }
}
