//! The Azure OpenAI operations a mock backend serves, and what they share: the request context
//! ([`Call`]), body parsing, model resolution, token accounting and stream set-up.

mod chat;
mod chunks;
mod completions;
mod embeddings;
mod models;
pub(crate) mod responses;
mod words;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::StatusCode;
use http::header::CONTENT_TYPE;
use http::request::Parts;
use serde::Deserialize;
use serde_json::json;

use crate::body::{FixedEvents, Pacing, SseBody, StreamScript};
use crate::options::Profile;
use crate::reply::{self, MockResponse};
use crate::route::{Operation, Route};
use crate::service::Shared;
use crate::throttle::Admission;

/// An error answer, boxed to keep `Result`s small.
pub(crate) type Rejection = Box<MockResponse>;

/// Remaining quota after a request, reported in `x-ratelimit-remaining-*`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Quota {
    pub(crate) tokens: u64,
    pub(crate) requests: u64,
}

/// One routed request on its way to an operation.
pub(crate) struct Call<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) profile: &'a Profile,
    pub(crate) route: Route<'a>,
    pub(crate) parts: &'a Parts,
    pub(crate) body: Bytes,
    /// API version for messages: the request's, or a default on v1.
    pub(crate) version_label: &'a str,
    /// Set by [`Call::spend`] when a `tpm_limit` is in force.
    pub(crate) quota: Option<Quota>,
}

/// Runs the operation a request was routed to.
pub(crate) fn dispatch(call: &mut Call<'_>) -> MockResponse {
    let answer = match call.route.operation {
        Operation::ChatCompletions => chat::create(call),
        Operation::Completions => completions::create(call),
        Operation::Embeddings => embeddings::create(call),
        Operation::ResponsesCreate => responses::create(call),
        Operation::ResponseGet(id) => Ok(responses::get(call, id)),
        Operation::ResponseDelete(id) => Ok(responses::delete(call, id)),
        Operation::ResponseCancel(id) => Ok(responses::cancel(call, id)),
        Operation::ResponseInputItems(id) => Ok(responses::input_items(call, id)),
        Operation::Models => Ok(models::list()),
        Operation::Echo => Ok(echo(call)),
    };
    answer.unwrap_or_else(|rejection| *rejection)
}

impl<'a> Call<'a> {
    /// Spends `tokens` against `model`'s `tpm_limit` (the deployment's: Azure counts quota per
    /// deployment), or answers a real 429.
    fn spend(&mut self, model: &str, tokens: u64) -> Result<(), Rejection> {
        let Some(limit) = self.profile.options.tpm_limit else {
            return Ok(());
        };
        match self
            .shared
            .tokens
            .admit(model, limit, tokens, Instant::now())
        {
            Admission::Admitted {
                remaining_tokens,
                remaining_requests,
            } => {
                self.quota = Some(Quota {
                    tokens: remaining_tokens,
                    requests: remaining_requests,
                });
                Ok(())
            }
            Admission::Throttled { retry_after } => {
                let millis = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX);
                let retry = crate::options::RetryAfter::from_millis(millis);
                let name = self.route.operation.azure_name();
                Err(Box::new(reply::throttled(&retry, name, self.version_label)))
            }
        }
    }

    /// The model: the deployment on legacy deployment paths, else the body's `model`. A
    /// deployment out of quota (`throttled_deployments`) answers 429 here.
    fn model<'m>(&self, from_body: Option<&'m str>) -> Result<&'m str, Rejection>
    where
        'a: 'm,
    {
        let model = self
            .route
            .deployment
            .or(from_body)
            .ok_or_else(|| Box::new(reply::missing_model()))?;
        if self.profile.throttles(model) {
            let name = self.route.operation.azure_name();
            let retry = &self.profile.retry_after;
            return Err(Box::new(reply::throttled(retry, name, self.version_label)));
        }
        Ok(model)
    }

    fn pacing(&self) -> Pacing {
        let options = &self.profile.options;
        Pacing {
            chunk_count: options.chunk_count,
            chunk_interval: options.chunk_interval,
            disconnect_after: options.disconnect_after_chunks,
        }
    }

    /// A 200 SSE answer running `script`, or only the configured in-stream error.
    fn stream(&self, script: impl StreamScript) -> MockResponse {
        let stats = self.shared.stats.clone();
        let body = match &self.profile.options.stream_error_first {
            Some(code) => {
                let event = json!({"error": {
                    "code": code,
                    "message": format!("The mock backend was told to fail this stream with '{code}'."),
                }});
                let events = FixedEvents(vec![Bytes::from(format!("data: {event}\n\n"))]);
                let pacing = Pacing {
                    chunk_count: 0,
                    ..self.pacing()
                };
                SseBody::new(Box::new(events), pacing, stats)
            }
            None => SseBody::new(Box::new(script), self.pacing(), stats),
        };
        reply::sse(body)
    }
}

/// Parses a JSON request body; anything unparseable is a 400.
fn parse_json<'b, T: Deserialize<'b>>(body: &'b [u8]) -> Result<T, Rejection> {
    serde_json::from_slice(body).map_err(|_| Box::new(reply::invalid_json()))
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// `prefix` followed by 32 random hex digits.
fn random_id(prefix: &str) -> String {
    format!("{prefix}{:032x}", fastrand::u128(..))
}

/// Chat and completions `usage`, with the detail objects Azure fills in.
fn usage_json(prompt_tokens: u64, completion_tokens: u64) -> String {
    let total = prompt_tokens.saturating_add(completion_tokens);
    format!(
        concat!(
            r#"{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{},"#,
            r#""prompt_tokens_details":{{"cached_tokens":0,"audio_tokens":0}},"#,
            r#""completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"#,
            r#""accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}}"#
        ),
        prompt_tokens, completion_tokens, total
    )
}

/// Any other request under a deployment or v1: describes what arrived.
fn echo(call: &Call<'_>) -> MockResponse {
    let content_type = call
        .parts
        .headers
        .get(CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let body = json!({
        "object": "mock.echo",
        "method": call.parts.method.as_str(),
        "path": call.parts.uri.path(),
        "query": call.parts.uri.query(),
        "content_type": content_type,
        "body_len": call.body.len(),
    });
    reply::json_value(StatusCode::OK, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_valid_json_with_details() {
        let usage: serde_json::Value =
            serde_json::from_str(&usage_json(3, 8)).expect("usage parses");
        assert_eq!(usage["total_tokens"], 11);
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
        assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 0);
    }
}
