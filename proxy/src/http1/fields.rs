//! Header fields as they arrived: [`RawFields`] keeps a head's fields as positions into its
//! bytes, for client requests and backend answers alike.

use bytes::Bytes;

use super::{FramingFields, put_field};

/// Most header fields accepted in a message head.
pub const MAX_HEADERS: usize = 128;

/// Positions of a head's fields (name start, name end, value start, value end).
#[derive(Debug, Default)]
pub struct Spans(Vec<[u32; 4]>);

/// Header fields kept in the head they arrived in: positions into the shared, frozen head bytes.
/// Nothing is hashed, copied or reference-counted per field; lookups compare names (any case)
/// over the few fields a message has. Backend answers pass through the gateway this way.
#[derive(Clone, Default)]
pub struct RawFields {
    head: Bytes,
    /// Name start, name end, value start, value end.
    spans: Vec<[u32; 4]>,
}

impl std::fmt::Debug for RawFields {
    /// Names only: values may be credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(name, _)| String::from_utf8_lossy(name)))
            .finish()
    }
}

impl RawFields {
    /// Where parsed fields sit relative to `base`, the buffer `httparse` read (taken before the
    /// head is split off that buffer, which the fields borrow).
    pub fn locate(base: &[u8], fields: &[httparse::Header<'_>]) -> Result<Spans, &'static str> {
        let origin = base.as_ptr() as usize;
        let at = |p: *const u8| u32::try_from(p as usize - origin).map_err(|_| "head too large");
        let mut spans = Vec::with_capacity(fields.len());
        for field in fields {
            let (name, value) = (field.name.as_bytes(), field.value);
            let (n, v) = (at(name.as_ptr())?, at(value.as_ptr())?);
            spans.push([n, n + name.len() as u32, v, v + value.len() as u32]);
        }
        Ok(Spans(spans))
    }

    /// The fields of a frozen head at the [`locate`](Self::locate)d positions, with the framing
    /// fields noted. httparse already checked what `http` would: names are tokens, values hold no
    /// control bytes.
    pub fn new(
        head: Bytes,
        spans: Spans,
        framing: &mut FramingFields,
    ) -> Result<Self, &'static str> {
        let fields = Self {
            head,
            spans: spans.0,
        };
        for (name, value) in fields.iter() {
            framing.note(name, value)?;
        }
        Ok(fields)
    }

    /// The fields in order, names as sent.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans.iter().map(|&[n, ne, v, ve]| {
            (
                &self.head[n as usize..ne as usize],
                &self.head[v as usize..ve as usize],
            )
        })
    }

    /// The first value of a field; `name` is lower case.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.len() == name.len() && n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value)
    }

    /// Every value of a field, in order; `name` is lower case.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |(n, _)| n.len() == name.len() && n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value)
    }

    /// The first value of a field as a header value sharing the head's bytes (no copy).
    pub fn get_value(&self, name: &str) -> Option<http::HeaderValue> {
        let value = self.get(name)?;
        let start = value.as_ptr() as usize - self.head.as_ptr() as usize;
        http::HeaderValue::from_maybe_shared(self.head.slice(start..start + value.len())).ok()
    }

    /// The fields of a header map (an HTTP/2 request), laid out as a head would hold them.
    pub fn from_map(headers: &http::HeaderMap) -> Self {
        let mut head = Vec::with_capacity(headers.len() * 32);
        let mut spans = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            let n = head.len();
            put_field(&mut head, name.as_str().as_bytes(), value.as_bytes());
            let v = n + name.as_str().len() + 2;
            // Positions are 32-bit; hyper refuses header lists long before that matters.
            let (Ok(n), Ok(v), Ok(ve)) = (
                u32::try_from(n),
                u32::try_from(v),
                u32::try_from(v + value.len()),
            ) else {
                break;
            };
            spans.push([n, v - 2, v, ve]);
        }
        Self {
            head: Bytes::from(head),
            spans,
        }
    }

    /// The fields `keep` accepts as a header map (names lower-cased; values share the head).
    pub fn to_header_map(&self, keep: impl Fn(&[u8]) -> bool) -> http::HeaderMap {
        let mut headers = http::HeaderMap::with_capacity(self.spans.len());
        for &[n, ne, v, ve] in &self.spans {
            let name = &self.head[n as usize..ne as usize];
            if !keep(name) {
                continue;
            }
            let name = interned(name).or_else(|| http::HeaderName::from_bytes(name).ok());
            let value =
                http::HeaderValue::from_maybe_shared(self.head.slice(v as usize..ve as usize));
            if let (Some(name), Ok(value)) = (name, value) {
                headers.append(name, value);
            }
        }
        headers
    }
}

#[cfg(test)]
impl RawFields {
    /// Fields from name/value pairs, as if parsed (tests).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let mut head = Vec::new();
        let mut spans = Vec::new();
        for (name, value) in pairs {
            let n = head.len() as u32;
            head.extend_from_slice(name.as_bytes());
            let ne = head.len() as u32;
            head.extend_from_slice(b": ");
            let v = head.len() as u32;
            head.extend_from_slice(value.as_bytes());
            spans.push([n, ne, v, head.len() as u32]);
            head.extend_from_slice(b"\r\n");
        }
        Self {
            head: Bytes::from(head),
            spans,
        }
    }
}

/// Non-standard header names Azure OpenAI and its clients send on every message, as constants:
/// `HeaderName::from_bytes` allocates for any name outside the standard set.
fn interned(raw: &[u8]) -> Option<http::HeaderName> {
    use http::HeaderName as N;
    Some(match raw {
        b"api-key" => N::from_static("api-key"),
        b"apim-request-id" => N::from_static("apim-request-id"),
        b"azureml-model-session" => N::from_static("azureml-model-session"),
        b"openai-organization" => N::from_static("openai-organization"),
        b"openai-processing-ms" => N::from_static("openai-processing-ms"),
        b"openai-version" => N::from_static("openai-version"),
        b"retry-after-ms" => N::from_static("retry-after-ms"),
        b"x-content-type-options" => N::from_static("x-content-type-options"),
        b"x-ms-client-request-id" => N::from_static("x-ms-client-request-id"),
        b"x-ms-deployment-name" => N::from_static("x-ms-deployment-name"),
        b"x-ms-rai-invoked" => N::from_static("x-ms-rai-invoked"),
        b"x-ms-region" => N::from_static("x-ms-region"),
        b"x-ratelimit-limit-requests" => N::from_static("x-ratelimit-limit-requests"),
        b"x-ratelimit-limit-tokens" => N::from_static("x-ratelimit-limit-tokens"),
        b"x-ratelimit-remaining-requests" => N::from_static("x-ratelimit-remaining-requests"),
        b"x-ratelimit-remaining-tokens" => N::from_static("x-ratelimit-remaining-tokens"),
        b"x-ratelimit-reset-requests" => N::from_static("x-ratelimit-reset-requests"),
        b"x-ratelimit-reset-tokens" => N::from_static("x-ratelimit-reset-tokens"),
        b"x-request-id" => N::from_static("x-request-id"),
        b"x-stainless-arch" => N::from_static("x-stainless-arch"),
        b"x-stainless-lang" => N::from_static("x-stainless-lang"),
        b"x-stainless-os" => N::from_static("x-stainless-os"),
        b"x-stainless-package-version" => N::from_static("x-stainless-package-version"),
        b"x-stainless-retry-count" => N::from_static("x-stainless-retry-count"),
        b"x-stainless-runtime" => N::from_static("x-stainless-runtime"),
        b"x-stainless-runtime-version" => N::from_static("x-stainless-runtime-version"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interned_names_equal_parsed_ones() {
        for raw in [
            &b"x-ms-region"[..],
            b"apim-request-id",
            b"x-stainless-retry-count",
        ] {
            assert_eq!(interned(raw), http::HeaderName::from_bytes(raw).ok());
        }
        assert_eq!(interned(b"X-Ms-Region"), None); // falls back to from_bytes (lowercases)
    }
}
