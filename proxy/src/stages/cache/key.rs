//! Which requests the response cache serves, and their key: a SHA-256 digest of everything the
//! answer depends on, so that two requests share an entry exactly when they ask the same of the
//! same deployment for the same caller.

use bytes::Bytes;
use ring::digest::{Context, SHA256};
use serde_json::Value;

use crate::scan::Scan;
use crate::stages::route::{Operation, Route};

/// What a request's key is made of besides its body.
#[derive(Debug, Clone, Copy)]
pub struct KeyParts<'a> {
    /// The consumer's name; `None` for anonymous callers (told apart from a consumer named
    /// `anonymous`).
    pub consumer: Option<&'a str>,
    /// Who an OIDC token named (its subject and tenant), when one did.
    pub principal: (Option<&'a str>, Option<&'a str>),
    pub route: Route,
    /// The request path as the client sent it: the family and operation, a test prefix and
    /// the legacy path's deployment, exactly as written.
    pub path: &'a str,
    /// The query as the client sent it (`api-version` matters).
    pub query: Option<&'a str>,
}

/// Version of the key's layout: a change of it makes every old key a miss.
const LAYOUT: &[u8] = b"gateway-response-cache/1";

/// Whether a request can be answered from the cache at all, before its body is looked at:
/// a POST of chat completions or embeddings.
pub fn eligible_route(method: &http::Method, route: &Route) -> bool {
    method == http::Method::POST
        && matches!(
            route.operation,
            Operation::ChatCompletions | Operation::Embeddings
        )
}

/// The key of a request the cache may answer, or `None` when it may not: a body that is not a
/// JSON object, a stream, or a chat request whose `temperature` is not a number equal to 0
/// (an absent temperature is Azure's default, 1).
///
/// The body counts by its canonical form: parsed with `serde_json`, its objects' keys sorted,
/// written compactly. Key order, whitespace and string escapes do not matter; numbers count by
/// the value `serde_json` reads (`1e2` and `100.0` are one number, `1` and `1.0` are not; an
/// integer beyond 64 bits is read as the nearest `f64`, as most backends would).
pub fn cache_key(parts: &KeyParts<'_>, body: &[u8]) -> Option<Bytes> {
    let chat = parts.route.operation == Operation::ChatCompletions;
    // Most chat requests have a temperature above 0: the scanner tells so without building the
    // body's values.
    if chat && !scanned_temperature_is_zero(body) {
        return None;
    }
    let mut value: Value = serde_json::from_slice(body).ok()?;
    let object = value.as_object()?;
    if object
        .get("stream")
        .is_some_and(|stream| !matches!(stream, Value::Null | Value::Bool(false)))
    {
        return None;
    }
    if chat && object.get("temperature").and_then(Value::as_f64) != Some(0.0) {
        return None;
    }
    // Sorted already unless serde_json's `preserve_order` is on somewhere in the build; then
    // this sorts (the key must not depend on a feature another crate turns on).
    value.sort_all_objects();
    let mut digest = Digest(Context::new(&SHA256));
    digest.field(LAYOUT);
    match parts.consumer {
        None => digest.field(b"\0"),
        Some(name) => {
            digest.field(b"\x01");
            digest.field(name.as_bytes());
        }
    }
    for claim in [parts.principal.0, parts.principal.1] {
        digest.field(claim.map_or(&b"\0"[..], str::as_bytes));
    }
    digest.field(parts.route.family.label().as_bytes());
    digest.field(parts.route.operation.label().as_bytes());
    digest.field(parts.path.as_bytes());
    match parts.query {
        None => digest.field(b"\0"),
        Some(query) => {
            digest.field(b"?");
            digest.field(query.as_bytes());
        }
    }
    // The body last, written into the digest as it is serialised (no copy of it is built).
    serde_json::to_writer(&mut digest, &value).ok()?;
    Some(Bytes::copy_from_slice(digest.0.finish().as_ref()))
}

/// A digest being computed, fed field by field (each with its length first, so that no two
/// different lists of fields give the same bytes) and then by the serialised body.
struct Digest(Context);

impl Digest {
    fn field(&mut self, bytes: &[u8]) {
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }
}

impl std::io::Write for Digest {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether the body's top-level `temperature` is a number equal to 0, as the scanner reads it
/// (the last of duplicate keys wins, as with `serde_json`). A body it cannot read says no.
fn scanned_temperature_is_zero(body: &[u8]) -> bool {
    let mut zero = false;
    let mut scan = Scan::new(body);
    let read = scan.members(|scan, key| {
        if key != b"temperature" {
            return scan.skip_value();
        }
        scan.peek()?;
        let start = scan.offset();
        scan.skip_value()?;
        let value = body.get(start..scan.offset())?;
        zero = serde_json::from_slice::<f64>(value).is_ok_and(|t| t == 0.0);
        Some(())
    });
    read.is_some() && zero
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::route::classify;

    const CHAT: &str = "/openai/deployments/gpt-4o/chat/completions";

    fn parts<'a>(path: &'a str, consumer: Option<&'a str>, query: Option<&'a str>) -> KeyParts<'a> {
        KeyParts {
            consumer,
            principal: (None, None),
            route: classify(path, true).unwrap(),
            path,
            query,
        }
    }

    fn key(body: &str) -> Option<Bytes> {
        cache_key(
            &parts(CHAT, Some("team-a"), Some("api-version=1")),
            body.as_bytes(),
        )
    }

    #[test]
    fn key_order_whitespace_and_escapes_do_not_matter() {
        let one = key(r#"{"temperature":0,"messages":[{"role":"user","content":"hi"}],"n":1}"#);
        assert!(one.is_some());
        assert_eq!(one.as_ref().unwrap().len(), 32, "a SHA-256 digest");
        for same in [
            r#"{"messages":[{"content":"hi","role":"user"}],"n":1,"temperature":0}"#,
            "{\n  \"n\" : 1,\n  \"temperature\" : 0 ,\n  \"messages\" : [ { \"role\" : \"user\", \"content\" : \"\\u0068i\" } ]\n}\n",
            // The last of duplicate keys counts, as serde_json (and the backend) reads it.
            r#"{"n":7,"temperature":0,"messages":[{"role":"user","content":"hi"}],"n":1}"#,
        ] {
            assert_eq!(key(same), one, "{same}");
        }
    }

    #[test]
    fn anything_else_in_the_body_or_around_it_is_another_key() {
        let body = r#"{"temperature":0,"messages":[{"role":"user","content":"hi"}]}"#;
        let base = key(body).unwrap();
        for other in [
            r#"{"temperature":0,"messages":[{"role":"user","content":"hi!"}]}"#,
            r#"{"temperature":0,"messages":[{"role":"user","content":"hi"}],"n":1}"#,
            r#"{"temperature":0,"messages":[{"content":"hi","role":"system"}]}"#,
            r#"{"temperature":0,"messages":[{"role":"user","content":"hi"}],"model":"m"}"#,
            // Arrays keep their order.
            r#"{"temperature":0,"messages":[{"role":"user","content":"hi"},{"role":"user","content":"ho"}]}"#,
            r#"{"temperature":0,"messages":[{"role":"user","content":"ho"},{"role":"user","content":"hi"}]}"#,
            // `1` and `1.0` are different numbers to serde_json.
            r#"{"temperature":0.0,"messages":[{"role":"user","content":"hi"}]}"#,
        ] {
            assert_ne!(key(other).unwrap(), base, "{other}");
        }
        let bytes = body.as_bytes();
        let around = [
            parts(CHAT, Some("team-b"), Some("api-version=1")),
            parts(CHAT, None, Some("api-version=1")),
            parts(CHAT, Some("team-a"), Some("api-version=2")),
            parts(CHAT, Some("team-a"), None),
            parts(
                "/openai/deployments/gpt-4o-mini/chat/completions",
                Some("team-a"),
                Some("api-version=1"),
            ),
            parts(
                "/round-robin-simple/openai/deployments/gpt-4o/chat/completions",
                Some("team-a"),
                Some("api-version=1"),
            ),
            parts(
                "/openai/v1/chat/completions",
                Some("team-a"),
                Some("api-version=1"),
            ),
        ];
        for other in around {
            assert_ne!(cache_key(&other, bytes).unwrap(), base, "{other:?}");
        }
        // An anonymous caller is not a consumer named `anonymous`.
        assert_ne!(
            cache_key(&parts(CHAT, None, None), bytes),
            cache_key(&parts(CHAT, Some("anonymous"), None), bytes)
        );
        let mut signed = parts(CHAT, Some("team-a"), Some("api-version=1"));
        signed.principal = (Some("user-1"), None);
        assert_ne!(cache_key(&signed, bytes).unwrap(), base);
    }

    #[test]
    fn only_chat_at_temperature_zero_and_no_streams() {
        for zero in ["0", "0.0", "-0", "0e3", " 0 "] {
            let body = format!(r#"{{"messages":[],"temperature":{zero}}}"#);
            assert!(key(&body).is_some(), "{body}");
        }
        for not in [
            r#"{"messages":[]}"#,
            r#"{"messages":[],"temperature":0.5}"#,
            r#"{"messages":[],"temperature":1}"#,
            r#"{"messages":[],"temperature":null}"#,
            r#"{"messages":[],"temperature":"0"}"#,
            r#"{"messages":[],"temperature":false}"#,
            r#"{"messages":[{"temperature":0}]}"#,
            r#"{"messages":[],"temperature":0,"temperature":1}"#,
            r#"{"messages":[],"temperature":0,"stream":true}"#,
            r#"{"messages":[],"temperature":0,"stream":"yes"}"#,
            r#"{"messages":[],"temperature":0"#,
            r#"{"messages":[],"temperature":0} trailing"#,
            r#"[{"temperature":0}]"#,
            "",
        ] {
            assert_eq!(key(not), None, "{not}");
        }
        assert!(key(r#"{"messages":[],"temperature":0,"stream":false}"#).is_some());
        assert!(key(r#"{"messages":[],"temperature":0,"stream":null}"#).is_some());
        // Embeddings have no temperature.
        let path = "/openai/v1/embeddings";
        let embeddings = parts(path, None, None);
        assert!(cache_key(&embeddings, br#"{"model":"e","input":"hi"}"#).is_some());
        assert!(cache_key(&embeddings, br#"{"model":"e","input":"hi","stream":true}"#).is_none());
        assert!(cache_key(&embeddings, b"not json").is_none());
    }

    #[test]
    fn only_posts_of_chat_and_embeddings() {
        let route = |path| classify(path, false).unwrap();
        let post = http::Method::POST;
        assert!(eligible_route(&post, &route(CHAT)));
        assert!(eligible_route(&post, &route("/openai/v1/embeddings")));
        assert!(!eligible_route(&http::Method::GET, &route(CHAT)));
        for other in [
            "/openai/deployments/d/completions",
            "/openai/deployments/d/responses",
            "/openai/v1/responses",
            "/openai/v1/images/generations",
        ] {
            assert!(!eligible_route(&post, &route(other)), "{other}");
        }
    }
}
