//! The body stage: the request body is buffered (bounded by `server.max_body_bytes`, 413 above)
//! so any backend can be retried with it; what the gateway reads from it (stream flag, model,
//! response chain) and the per-backend variants it sends (deployment alias in `model`,
//! `include_usage` added).

use bytes::Bytes;
use http_body::Body;
use http_body_util::BodyExt;

use crate::config::{BackendConfig, GatewayConfig};
use crate::ctx::{Flow, RequestCtx};
use crate::error::{BoxError, GatewayError};
use crate::http1::Joined;
use crate::scan::Scan;
use crate::stages::Stage;
use crate::stages::route::Operation;

/// The body stage.
#[derive(Debug)]
pub struct BodyStage {
    /// `server.max_body_bytes`.
    limit: u64,
    /// `server.max_buffered_body_bytes`: every request's buffered bodies together.
    memory: u64,
    /// `upstream.stream_usage`: ask streaming chat backends for the usage chunk.
    stream_usage: bool,
}

impl Stage for BodyStage {
    fn new(config: &GatewayConfig, _previous: Option<&Self>) -> Self {
        Self {
            limit: config.server.max_body_bytes,
            memory: config.server.max_buffered_body_bytes,
            stream_usage: config.upstream.stream_usage,
        }
    }
}

impl BodyStage {
    /// Holds `bytes` more of the request's body against `server.max_buffered_body_bytes`:
    /// past it, 503 (counted).
    fn hold(&self, ctx: &mut RequestCtx, bytes: u64) -> Flow {
        if bytes == 0 || ctx.body_budget.take(&ctx.gateway.run, bytes, self.memory) {
            return Ok(());
        }
        ctx.gateway.metrics.overloaded("body_memory");
        Err(GatewayError::Overloaded {
            limit: "body_memory",
        }
        .into())
    }

    /// Reads the client's body into the context (it consumes the body stream, so it is the one
    /// stage with a check of its own signature).
    pub async fn read<B>(&self, ctx: &mut RequestCtx, body: B) -> Flow
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        // Held against every request's bodies together: what the body announces (its
        // `content-length`) before it is read, anything beyond that once it is.
        let announced = body.size_hint().lower().min(self.limit);
        self.hold(ctx, announced)?;
        let bytes = read_body(body, self.limit).await?;
        self.hold(ctx, (bytes.len() as u64).saturating_sub(announced))?;
        let operation = ctx.route.map_or(Operation::Other, |r| r.operation);
        let body = RequestBody::new(bytes, operation, self.stream_usage);
        // The `model` label: on legacy routes the deployment in the path (what Azure serves,
        // whatever the body says); elsewhere the body's model (the deployment on v1).
        let deployment = ctx.route.and_then(|r| r.deployment(ctx.head.uri.path()));
        let named = deployment.or(body.model.as_deref());
        ctx.model = Some(crate::metrics::model_label(named));
        ctx.stream = body.stream;
        ctx.body = Some(body);
        Ok(())
    }
}

/// Reads the request body up to `limit` bytes; 413 above it, as soon as the body says it will
/// be larger (its `content-length`, or a chunk's size line: the body's size hint), before its
/// bytes are read.
async fn read_body<B>(body: B, limit: u64) -> Result<Bytes, GatewayError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    let mut gathered = Joined::default();
    let too_large = |gathered: &Joined, announced: u64| {
        (gathered.len() as u64).saturating_add(announced) > limit
    };
    if too_large(&gathered, body.size_hint().lower()) {
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    while let Some(frame) = body.as_mut().frame().await {
        let frame = frame.map_err(|error| {
            let kind = error
                .into()
                .downcast_ref::<std::io::Error>()
                .map(std::io::Error::kind);
            match kind {
                Some(std::io::ErrorKind::TimedOut) => GatewayError::RequestTimeout,
                Some(std::io::ErrorKind::FileTooLarge) => GatewayError::PayloadTooLarge { limit },
                _ => GatewayError::BadRequest("The request body could not be read.".into()),
            }
        })?;
        if let Ok(data) = frame.into_data() {
            gathered.push(data);
            if too_large(&gathered, body.size_hint().lower()) {
                return Err(GatewayError::PayloadTooLarge { limit });
            }
        }
    }
    Ok(gathered.take().unwrap_or_default())
}

/// The top-level fields the gateway reads from a JSON body.
#[derive(Default)]
struct Probe {
    stream: bool,
    model: Option<String>,
    previous_response_id: Option<String>,
    include_usage: bool,
    /// A top-level `stream_options` member is there (in any spelling of its key).
    stream_options: bool,
    /// `max_tokens`, `max_completion_tokens` or `max_output_tokens` (the last one given).
    max_tokens: Option<u64>,
    /// `n`: choices asked for.
    choices: Option<u64>,
}

impl Probe {
    /// Reads the fields with the scanner (the rest of the body is skipped, never built). A
    /// body that is not a JSON object, or gives one of these fields the wrong type, yields
    /// nothing, as a strict parse would.
    fn read(body: &[u8]) -> Option<Self> {
        let mut probe = Probe::default();
        let mut scan = Scan::new(body);
        scan.members(|scan, key| {
            match key {
                b"stream" => probe.stream = scan.flag()?.unwrap_or(false),
                b"model" => probe.model = text(scan)?,
                b"previous_response_id" => probe.previous_response_id = text(scan)?,
                b"max_tokens" | b"max_completion_tokens" | b"max_output_tokens" => {
                    probe.max_tokens = count(scan)?.or(probe.max_tokens)
                }
                b"n" => probe.choices = count(scan)?,
                b"stream_options" if scan.peek()? == b'{' => {
                    probe.stream_options = true;
                    scan.members(|scan, key| {
                        if key == b"include_usage" {
                            probe.include_usage = scan.flag()?.unwrap_or(false);
                            Some(())
                        } else {
                            scan.skip_value()
                        }
                    })?
                }
                b"stream_options" => {
                    probe.stream_options = true;
                    scan.flag()?.map_or(Some(()), |_| None)?
                }
                _ => scan.skip_value()?,
            }
            Some(())
        })?;
        scan.at_end().then_some(probe)
    }
}

/// A count member's value: an unsigned integer; `null` or any other number (`-1`, `1.5`) is
/// none (the backend judges what it accepts). Not a number at all: not a body the probe reads.
fn count(scan: &mut Scan<'_>) -> Option<Option<u64>> {
    match scan.peek()? {
        b'n' => scan.flag()?.map_or(Some(None), |_| None),
        b'-' | b'0'..=b'9' => {
            let value = scan.clone().number();
            scan.skip_value()?;
            Some(value)
        }
        _ => None,
    }
}

/// A string member's value (`null` is none), escapes decoded.
fn text(scan: &mut Scan<'_>) -> Option<Option<String>> {
    if scan.peek()? == b'n' {
        return scan.flag()?.map_or(Some(None), |_| None);
    }
    scan.string_value().map(|text| Some(text.into_owned()))
}

/// The request body and what the gateway learned from it.
#[derive(Debug, Clone)]
pub struct RequestBody {
    /// What is sent upstream unless a backend alias rewrites `model`.
    pub bytes: Bytes,
    pub stream: bool,
    pub model: Option<String>,
    pub previous_response_id: Option<String>,
    /// The gateway added `stream_options.include_usage`; the usage-only chunk must be hidden.
    pub injected_usage: bool,
    /// Most output tokens asked for (`max_tokens`, `max_completion_tokens`, `max_output_tokens`).
    pub max_tokens: Option<u64>,
    /// Choices asked for (`n`).
    pub choices: Option<u64>,
}

impl RequestBody {
    /// Reads a buffered body. Non-JSON bodies (multipart, binary) are forwarded untouched.
    pub fn new(bytes: Bytes, operation: Operation, add_stream_usage: bool) -> Self {
        let probe = if operation.has_json_body() && !bytes.is_empty() {
            Probe::read(&bytes).unwrap_or_default()
        } else {
            Probe::default()
        };
        let Probe {
            stream,
            model,
            previous_response_id,
            include_usage: wants_usage,
            stream_options,
            max_tokens,
            choices,
        } = probe;
        let inject = add_stream_usage
            && stream
            && !wants_usage
            && matches!(
                operation,
                Operation::ChatCompletions | Operation::Completions
            );
        let rewritten = inject
            .then(|| with_include_usage(&bytes, stream_options))
            .flatten();
        let (bytes, injected_usage) = match rewritten {
            Some(rewritten) => (rewritten, true),
            None => (bytes, false),
        };
        Self {
            bytes,
            stream,
            model,
            previous_response_id,
            injected_usage,
            max_tokens,
            choices,
        }
    }

    /// The body for one backend: `model` rewritten when the backend aliases it.
    pub fn for_backend(&self, backend: &BackendConfig) -> Bytes {
        let real = self.model.as_deref().and_then(|m| backend.alias(m));
        match real {
            None => self.bytes.clone(),
            Some(real) => rewrite_model(&self.bytes, real).unwrap_or_else(|| self.bytes.clone()),
        }
    }
}

/// The body with `stream_options.include_usage: true`. Usual case (the probe saw no
/// `stream_options` member): the member is inserted before the closing brace, leaving every other
/// byte as the client sent it (coding assistants stream with prompts of 100 KB and more).
/// Otherwise the body is parsed and written again.
fn with_include_usage(bytes: &[u8], has_stream_options: bool) -> Option<Bytes> {
    // Only called for bodies that parsed as a JSON object.
    if !has_stream_options {
        let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace())?;
        if bytes[end] == b'}' {
            let empty = bytes[..end].iter().rev().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
            const MEMBER: &[u8] = br#""stream_options":{"include_usage":true}"#;
            let mut out = Vec::with_capacity(bytes.len() + MEMBER.len() + 1);
            out.extend_from_slice(&bytes[..end]);
            if !empty {
                out.push(b',');
            }
            out.extend_from_slice(MEMBER);
            out.extend_from_slice(&bytes[end..]);
            return Some(Bytes::from(out));
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let object = value.as_object_mut()?;
    let options = object
        .entry("stream_options")
        .or_insert_with(|| serde_json::json!({}));
    if !options.is_object() {
        *options = serde_json::json!({});
    }
    options
        .as_object_mut()?
        .insert("include_usage".into(), true.into());
    serde_json::to_vec(&value).ok().map(Bytes::from)
}

fn rewrite_model(bytes: &[u8], model: &str) -> Option<Bytes> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    value.as_object_mut()?.insert("model".into(), model.into());
    serde_json::to_vec(&value).ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_include_usage_only_when_streaming_without_it() {
        let body = RequestBody::new(
            Bytes::from_static(br#"{"stream":true,"messages":[]}"#),
            Operation::ChatCompletions,
            true,
        );
        assert!(body.injected_usage);
        let v: serde_json::Value = serde_json::from_slice(&body.bytes).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        let asked = RequestBody::new(
            Bytes::from_static(br#"{"stream":true,"stream_options":{"include_usage":true}}"#),
            Operation::ChatCompletions,
            true,
        );
        assert!(!asked.injected_usage);
        let plain = RequestBody::new(
            Bytes::from_static(br#"{"messages":[]}"#),
            Operation::ChatCompletions,
            true,
        );
        assert!(!plain.injected_usage && !plain.stream);
        let off = RequestBody::new(
            Bytes::from_static(br#"{"stream":true}"#),
            Operation::ChatCompletions,
            false,
        );
        assert!(!off.injected_usage);
    }

    #[test]
    fn include_usage_is_inserted_without_rewriting_the_rest() {
        let prompt = "x\\\"}{".repeat(10_000);
        let raw = format!(
            "{{\"stream\":true,\"messages\":[{{\"role\":\"user\",\"content\":\"{prompt}\"}}],\"z\":1}}\n"
        );
        let body = RequestBody::new(Bytes::from(raw.clone()), Operation::ChatCompletions, true);
        assert!(body.injected_usage);
        let text = std::str::from_utf8(&body.bytes).unwrap();
        assert!(
            text.starts_with(&raw[..raw.len() - 2]),
            "the client's bytes come first, unchanged"
        );
        let v: serde_json::Value = serde_json::from_slice(&body.bytes).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["messages"][0]["content"].as_str().unwrap().len(), 40_000);
        // stream_options present (here null): parsed and written again, one member only.
        let null = RequestBody::new(
            Bytes::from_static(br#"{"stream":true,"stream_options":null}"#),
            Operation::ChatCompletions,
            true,
        );
        assert_eq!(
            std::str::from_utf8(&null.bytes).unwrap(),
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#
        );
    }

    #[test]
    fn a_stream_options_key_spelled_with_escapes_is_still_the_one_member() {
        let body = RequestBody::new(
            Bytes::from_static(
                br#"{"stream":true,"stream\u005foptions":{"include_usage":false,"x":1}}"#,
            ),
            Operation::ChatCompletions,
            true,
        );
        assert!(body.injected_usage);
        let v: serde_json::Value = serde_json::from_slice(&body.bytes).unwrap();
        let object = v.as_object().unwrap();
        assert_eq!(object.len(), 2, "{v}");
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["stream_options"]["x"], 1);
    }

    #[test]
    fn reads_model_and_previous_response() {
        let body = RequestBody::new(
            Bytes::from_static(br#"{"model":"gpt","previous_response_id":"resp_1","input":"hi"}"#),
            Operation::ResponsesCreate,
            true,
        );
        assert_eq!(body.model.as_deref(), Some("gpt"));
        assert_eq!(body.previous_response_id.as_deref(), Some("resp_1"));
        let garbage = RequestBody::new(
            Bytes::from_static(b"not json"),
            Operation::ChatCompletions,
            true,
        );
        assert_eq!(&garbage.bytes[..], b"not json");
    }

    #[test]
    fn the_probe_reads_top_level_fields_only_and_refuses_what_a_strict_parse_would() {
        let probe = |body: &str| {
            let body = RequestBody::new(
                Bytes::copy_from_slice(body.as_bytes()),
                Operation::ChatCompletions,
                false,
            );
            (body.stream, body.model)
        };
        // Nested look-alikes are skipped; escapes in values are decoded.
        assert_eq!(
            probe(
                r#" {"messages":[{"model":"no","stream":true}],"model":"gpt\u002d4\"o","stream":true} "#
            ),
            (true, Some("gpt-4\"o".to_owned()))
        );
        assert_eq!(probe(r#"{"model":null,"stream":null}"#), (false, None));
        // Wrong types, trailing bytes and broken structure: nothing is read.
        for bad in [
            r#"{"model":"m","stream":"yes"}"#,
            r#"{"model":7,"stream":true}"#,
            r#"{"model":"m","stream":true} x"#,
            r#"{"model":"m","stream":true,"stream_options":1}"#,
            r#"{"model":"m","stream":true"#,
            r#"["model","m"]"#,
        ] {
            assert_eq!(probe(bad), (false, None), "{bad}");
        }
        let asked = RequestBody::new(
            Bytes::from_static(
                br#"{"stream":true,"stream_options":{"x":[1],"include_usage":true}}"#,
            ),
            Operation::ChatCompletions,
            true,
        );
        assert!(asked.stream && !asked.injected_usage);
    }
}
