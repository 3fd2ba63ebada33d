//! Talking to backends: the client ([`Pool`] per backend, [`UpstreamBody`] for responses) and
//! the header hygiene of what goes upstream and what comes back.

mod body;
mod client;
mod stream;

use std::time::Duration;

use http::HeaderValue;

pub use body::UpstreamBody;
pub use client::{
    BackendHead, Pool, RequestHead, SendError, default_tls, tls_client, tls_with_roots,
};
pub use stream::Stream;

use crate::http1::RawFields;

const RETRY_AFTER_MS: &str = "retry-after-ms";
const RESET_REQUESTS: &str = "x-ratelimit-reset-requests";
const RESET_TOKENS: &str = "x-ratelimit-reset-tokens";
/// `x-ratelimit-remaining-tokens` (Azure's remaining quota, mirrored in metrics).
pub const REMAINING_TOKENS: &str = "x-ratelimit-remaining-tokens";
/// `x-ratelimit-remaining-requests`.
pub const REMAINING_REQUESTS: &str = "x-ratelimit-remaining-requests";

// Every field of every request and answer is checked against these names, so each check
// dispatches on the name's length first: a field costs one branch and rarely a comparison.

/// Hop-by-hop fields (RFC 9110 §7.6.1) plus `proxy-connection`, never forwarded in either
/// direction (`name` in any case).
fn hop_by_hop(name: &[u8]) -> bool {
    let is = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
    match name.len() {
        2 => is("te"),
        7 => is("trailer") || is("upgrade"),
        10 => is("connection") || is("keep-alive"),
        16 => is("proxy-connection"),
        17 => is("transfer-encoding"),
        18 => is("proxy-authenticate"),
        19 => is("proxy-authorization"),
        _ => false,
    }
}

/// `x-gateway-*` and `x-gw-*`: fields only the gateway may set (`name` in any case).
fn gateway_own(name: &[u8]) -> bool {
    let prefixed = |prefix: &str| {
        name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    };
    prefixed("x-gateway-") || prefixed("x-gw-")
}

/// `content-length` or `x-request-id`, which the gateway writes itself both ways.
fn length_or_request_id(name: &[u8]) -> bool {
    match name.len() {
        12 => name.eq_ignore_ascii_case(b"x-request-id"),
        14 => name.eq_ignore_ascii_case(b"content-length"),
        _ => false,
    }
}

/// Client headers the gateway never forwards: credentials, framing, `accept-encoding`, and its
/// own control headers.
fn drop_from_client(name: &[u8]) -> bool {
    let is = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
    hop_by_hop(name)
        || length_or_request_id(name)
        || gateway_own(name)
        || match name.len() {
            4 => is("host"),
            7 => is("api-key"),
            13 => is("authorization"),
            15 => is("accept-encoding"),
            25 => is("ocp-apim-subscription-key"),
            _ => false,
        }
}

/// Writes the client's headers for the backend (as the client spelled them), minus everything
/// [`drop_from_client`] names, in any spelling with `_` for `-` (`Content_Length`, `api_key`:
/// a server that folds underscores would read them as the real ones), and minus the fields the
/// client's `connection` nominates as hop-by-hop (RFC 9110 §7.6.1). `accept-encoding` is dropped
/// so the gateway can read usage from identity-encoded bodies.
pub fn forward_request_headers(from: &RawFields, to: &mut RequestHead) {
    let nominated = Nominated::of(from);
    for (name, value) in from.iter() {
        if !drop_from_client(name) && !as_dashed(name, drop_from_client) && !nominated.names(name) {
            to.field(name, value);
        }
    }
}

/// `test(name)` for `name` spelled with `-` for every `_`, when it has an underscore (false
/// otherwise, and for names longer than any field it is asked about).
pub fn as_dashed(name: &[u8], test: impl Fn(&[u8]) -> bool) -> bool {
    const LONGEST: usize = 32;
    if name.len() > LONGEST || memchr::memchr(b'_', name).is_none() {
        return false;
    }
    let mut dashed = [0u8; LONGEST];
    for (to, &from) in dashed.iter_mut().zip(name) {
        *to = if from == b'_' { b'-' } else { from };
    }
    test(&dashed[..name.len()])
}

/// The field names a message's `connection` fields nominate (besides `close` and `keep-alive`,
/// which are no field of their own or hop-by-hop already): the sender's hop-by-hop fields, which
/// a proxy removes (RFC 9110 §7.6.1). Empty, and free, for the usual message.
pub struct Nominated<'a> {
    values: Option<&'a RawFields>,
}

impl<'a> Nominated<'a> {
    pub fn of(fields: &'a RawFields) -> Self {
        let nominates = fields.get_all("connection").any(|value| {
            value.split(|&b| b == b',').any(|token| {
                let token = token.trim_ascii();
                !token.is_empty()
                    && !token.eq_ignore_ascii_case(b"close")
                    && !token.eq_ignore_ascii_case(b"keep-alive")
            })
        });
        Self {
            values: nominates.then_some(fields),
        }
    }

    /// Whether `name` is one of them.
    pub fn names(&self, name: &[u8]) -> bool {
        let Some(fields) = self.values else {
            return false;
        };
        fields.get_all("connection").any(|value| {
            value
                .split(|&b| b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(name))
        })
    }
}

/// Whether a field of a backend's answer goes on to the client (name in any case). Not:
/// hop-by-hop fields; framing, which the client connection writes for the body it sends;
/// `x-request-id`, which the gateway sets; and anything claiming to speak for the gateway.
pub fn passes_to_client(name: &[u8]) -> bool {
    let held = |name: &[u8]| hop_by_hop(name) || length_or_request_id(name) || gateway_own(name);
    !(held(name) || as_dashed(name, held))
}

/// Parses an integer field.
pub fn header_i64(fields: &RawFields, name: &str) -> Option<i64> {
    std::str::from_utf8(fields.get(name)?)
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Longest rest a backend's hint may ask for; longer hints (or garbage like `1e20`) are clamped.
pub const MAX_RETRY_HINT: Duration = Duration::from_secs(86_400);

/// How long a throttled backend should rest, from the hints Azure sends, in order of precision:
/// `retry-after-ms`, `retry-after` (seconds or HTTP date), `x-ratelimit-reset-requests`/`-tokens`.
/// Never more than [`MAX_RETRY_HINT`]: nothing a backend writes can overflow a duration.
pub fn retry_hint(fields: &RawFields) -> Option<Duration> {
    let seconds = |value: f64| {
        Duration::try_from_secs_f64(value)
            .unwrap_or(MAX_RETRY_HINT)
            .min(MAX_RETRY_HINT)
    };
    if let Some(ms) = header_f64(fields, RETRY_AFTER_MS) {
        return Some(seconds(ms / 1000.0));
    }
    if let Some(value) = fields
        .get("retry-after")
        .and_then(|v| std::str::from_utf8(v).ok())
    {
        let value = value.trim();
        if let Ok(secs) = value.parse::<f64>() {
            if secs.is_finite() && secs >= 0.0 {
                return Some(seconds(secs));
            }
        } else if let Ok(at) = httpdate::parse_http_date(value) {
            return Some(
                at.duration_since(std::time::SystemTime::now())
                    .unwrap_or_default()
                    .min(MAX_RETRY_HINT),
            );
        }
    }
    let reset = [RESET_REQUESTS, RESET_TOKENS]
        .iter()
        .filter_map(|n| header_f64(fields, n))
        .fold(None, |acc: Option<f64>, v| {
            Some(acc.map_or(v, |a| a.max(v)))
        });
    reset.map(seconds)
}

fn header_f64(fields: &RawFields, name: &str) -> Option<f64> {
    let v: f64 = std::str::from_utf8(fields.get(name)?)
        .ok()?
        .trim()
        .trim_end_matches('s')
        .parse()
        .ok()?;
    (0.0..86_400_000.0).contains(&v).then_some(v)
}

/// A field value read from a backend's answer, as a value of its own.
pub fn header_value_of(bytes: &[u8]) -> Option<HeaderValue> {
    HeaderValue::from_bytes(bytes).ok()
}

/// A header value from a string known to be header-safe.
pub fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> RawFields {
        RawFields::from_pairs(pairs)
    }

    /// Every field held back in both directions.
    const HELD_BACK_BOTH_WAYS: [&str; 13] = [
        "Connection",
        "keep-alive",
        "Proxy-Authenticate",
        "proxy-authorization",
        "TE",
        "Trailer",
        "TRANSFER-ENCODING",
        "upgrade",
        "proxy-connection",
        "Content-Length",
        "X-Request-Id",
        "X-Gateway-Backend",
        "x-gw-priority",
    ];

    #[test]
    fn what_passes_from_a_backend_to_the_client() {
        for name in [
            "Content-Type",
            "x-ms-region",
            "Retry-After",
            "apim-request-id",
        ] {
            assert!(passes_to_client(name.as_bytes()), "{name}");
        }
        for name in HELD_BACK_BOTH_WAYS {
            assert!(!passes_to_client(name.as_bytes()), "{name}");
            assert!(drop_from_client(name.as_bytes()), "{name}");
            let upper = name.to_ascii_uppercase();
            assert!(!passes_to_client(upper.as_bytes()), "{upper}");
        }
        // Names one byte off a held-back one pass.
        for name in [
            "tee",
            "Connections",
            "content-lengt",
            "x-gw",
            "x-request-ids",
        ] {
            assert!(passes_to_client(name.as_bytes()), "{name}");
        }
        let raw = fields(&[("X-RateLimit-Remaining-Tokens", " 42 ")]);
        assert_eq!(header_i64(&raw, REMAINING_TOKENS), Some(42));
    }

    #[test]
    fn retry_hints_in_order_of_precision() {
        assert_eq!(
            retry_hint(&fields(&[("retry-after-ms", "1500"), ("retry-after", "9")])),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_hint(&fields(&[("retry-after", "3")])),
            Some(Duration::from_secs(3))
        );
        let future = std::time::SystemTime::now() + Duration::from_secs(120);
        let hint = retry_hint(&fields(&[(
            "retry-after",
            &httpdate::fmt_http_date(future),
        )]))
        .unwrap();
        assert!(hint > Duration::from_secs(100) && hint <= Duration::from_secs(120));
        assert_eq!(
            retry_hint(&fields(&[
                ("x-ratelimit-reset-tokens", "7"),
                ("x-ratelimit-reset-requests", "2")
            ])),
            Some(Duration::from_secs(7))
        );
        assert_eq!(retry_hint(&fields(&[("retry-after", "soon")])), None);
    }

    #[test]
    fn no_retry_hint_a_backend_writes_can_overflow_or_panic() {
        for (name, value) in [
            ("retry-after", "1e20"),
            ("retry-after", "1e308"),
            ("retry-after", "18446744073709551616"),
            ("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT"),
            ("retry-after-ms", "1e300"),
            ("x-ratelimit-reset-tokens", "99999999999"),
        ] {
            let hint = retry_hint(&fields(&[(name, value)]));
            assert!(
                hint.is_none_or(|h| h <= MAX_RETRY_HINT),
                "{name}: {value} -> {hint:?}"
            );
        }
        assert_eq!(
            retry_hint(&fields(&[("retry-after", "1e20")])),
            Some(MAX_RETRY_HINT)
        );
    }

    #[test]
    fn strips_credentials_and_control_headers() {
        let from = fields(&[
            ("Authorization", "Bearer client"),
            ("api-key", "client"),
            ("Ocp-Apim-Subscription-Key", "client"),
            ("X-Gateway-Backend", "evil"),
            ("Host", "client.example"),
            ("Content-Type", "application/json"),
            ("x-priority", "low"),
        ]);
        let pool = Pool::new(
            &http::uri::Scheme::HTTP,
            &http::uri::Authority::from_static("backend:8080"),
            Duration::from_secs(1),
            default_tls(),
        );
        let mut to = pool.request(&http::Method::POST, "/x");
        forward_request_headers(&from, &mut to);
        for name in [
            "HOST",
            "api-key",
            "Authorization",
            "Accept-Encoding",
            "ocp-apim-subscription-key",
        ] {
            assert!(drop_from_client(name.as_bytes()), "{name}");
            assert!(
                passes_to_client(name.as_bytes()),
                "{name} is the client's only"
            );
        }
        assert!(!drop_from_client(b"x-priority") && !drop_from_client(b"hosts"));
        assert_eq!(
            String::from_utf8_lossy(to.as_bytes()),
            "POST /x HTTP/1.1\r\nhost: backend:8080\r\nContent-Type: application/json\r\nx-priority: low\r\n"
        );
    }
}
