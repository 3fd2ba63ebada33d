//! Facts the gateway reads from backend answers besides usage: the id of a created response
//! (for affinity) and error codes (`invalid_encrypted_content`, an in-stream throttling error).
//! Each reads a whole document with the forward scanner, last duplicate key winning.

use std::borrow::Cow;

use super::Scan;

/// The id of a created response: `response.id` of a streamed event about one
/// (`response.created`), else the `id` of a Responses object. Walked with the scanner, not
/// parsed into values: an agent's answer runs to megabytes of output. `None` for anything but a
/// whole JSON object, or an id with escapes (response ids have none). Nesting is bounded (see
/// [`super::MAX_DEPTH`]) and walked without recursion.
pub fn created_response_id(json: &[u8]) -> Option<&str> {
    let mut scan = Scan::new(json);
    let (mut id, mut nested) = (None, None);
    scan.members(|scan, key| {
        match key {
            b"id" => id = string_or_none(scan)?,
            b"response" if scan.peek()? == b'{' => {
                let mut own = None;
                scan.members(|scan, key| {
                    match key {
                        b"id" => own = string_or_none(scan)?,
                        _ => scan.skip_value()?,
                    }
                    Some(())
                })?;
                nested = own;
            }
            b"response" => {
                scan.skip_value()?;
                nested = None;
            }
            _ => scan.skip_value()?,
        }
        Some(())
    })?;
    if !scan.at_end() {
        return None;
    }
    let raw = nested.or(id)?;
    if raw.iter().any(|&b| b == b'\\' || b < 0x20) {
        return None;
    }
    std::str::from_utf8(raw).ok()
}

/// A string value's raw contents, `None` for any other value (skipped).
fn string_or_none<'a>(scan: &mut Scan<'a>) -> Option<Option<&'a [u8]>> {
    if scan.peek()? == b'"' {
        return scan.string().map(Some);
    }
    scan.skip_value()?;
    Some(None)
}

/// A code: a string (decoded) or an integer (as written). Anything else reads as no code.
/// `None` outside: the document is broken.
fn code<'a>(scan: &mut Scan<'a>) -> Option<Option<Cow<'a, str>>> {
    match scan.peek()? {
        b'"' => scan.string_value().map(Some),
        b'-' | b'0'..=b'9' => {
            let mut number = scan.clone();
            if let Some(digits) = number.integer() {
                *scan = number;
                return Some(Some(Cow::Borrowed(digits)));
            }
            scan.skip_value()?;
            Some(None)
        }
        _ => {
            scan.skip_value()?;
            Some(None)
        }
    }
}

/// A member that may be absent (`None`), present without a usable value (`Some(None)`: `null`,
/// a float), or present with one.
type Present<'a> = Option<Option<Cow<'a, str>>>;

/// Reads the `code` member of an object value (skipping any other value). `None` when the
/// document is broken; else whether the object has a `code` and what it is.
fn object_code<'a>(scan: &mut Scan<'a>) -> Option<Present<'a>> {
    if scan.peek()? != b'{' {
        scan.skip_value()?;
        return Some(None);
    }
    let mut found = None;
    scan.members(|scan, key| {
        if key == b"code" {
            found = Some(code(scan)?);
        } else {
            scan.skip_value()?;
        }
        Some(())
    })?;
    Some(found)
}

/// `error.code` of an Azure/OpenAI error body (`{"error":{"code":"invalid_encrypted_content",
/// "message":...}}`): a string, or an integer as written (`429`). `None` when the body is not
/// one whole JSON object or has no such code.
pub fn error_code(json: &[u8]) -> Option<Cow<'_, str>> {
    let mut scan = Scan::new(json);
    let mut found = None;
    scan.members(|scan, key| {
        if key == b"error" {
            found = object_code(scan)?;
        } else {
            scan.skip_value()?;
        }
        Some(())
    })?;
    if !scan.at_end() {
        return None;
    }
    found.flatten()
}

/// The code of an error event at the start of a stream: `error.code` (chat streams),
/// `response.error.code` (`response.failed`), or the top-level `code` of a `"type":"error"`
/// event (Responses streams), the first of these that is present deciding, as a lookup of the
/// parsed event would. `None` when the event is not one whole JSON object or has no code.
pub fn stream_error_code(json: &[u8]) -> Option<Cow<'_, str>> {
    let mut scan = Scan::new(json);
    let (mut error, mut response, mut top, mut is_error) = (None, None, None, false);
    scan.members(|scan, key| {
        match key {
            b"error" => error = object_code(scan)?,
            b"response" if scan.peek()? == b'{' => {
                let mut inner = None;
                scan.members(|scan, key| {
                    if key == b"error" {
                        inner = object_code(scan)?;
                    } else {
                        scan.skip_value()?;
                    }
                    Some(())
                })?;
                response = inner;
            }
            b"response" => {
                scan.skip_value()?;
                response = None;
            }
            b"code" => top = Some(code(scan)?),
            b"type" => {
                is_error = if scan.peek()? == b'"' {
                    scan.string_value()? == "error"
                } else {
                    scan.skip_value()?;
                    false
                };
            }
            _ => scan.skip_value()?,
        }
        Some(())
    })?;
    if !scan.at_end() {
        return None;
    }
    error
        .or(response)
        .or_else(|| top.filter(|_| is_error))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_created_response_id_is_read_from_objects_and_events() {
        // The cases of the reader this one replaces (`pipeline.rs`), then what it added.
        let cases: [(&[u8], Option<&str>); 16] = [
            (br#"{"id":"resp_1","object":"response","output":[{"id":"msg_1","content":[{"text":"a \"}\" b"}]}]}"#, Some("resp_1")),
            (br#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_2","status":"in_progress"}}"#, Some("resp_2")),
            (br#"{"id":"evt_1","response":{"id":"resp_3"}}"#, Some("resp_3")),
            (br#"{"response":{"status":"x"},"id":"resp_4"}"#, Some("resp_4")),
            (br#" { "id" : "resp_5" } "#, Some("resp_5")),
            (br#"{"id":5}"#, None),
            (br#"{"id":"resp_\u0036"}"#, None),
            (br#"{"id":"resp_7""#, None),
            (br#"{"id":"resp_8"} trailing"#, None),
            (br#"["resp_9"]"#, None),
            // Keys are decoded; the last of duplicates wins, as in a parse.
            (br#"{"i\u0064":"resp_10"}"#, Some("resp_10")),
            (br#"{"id":"resp_11","id":5}"#, None),
            (br#"{"response":{"id":"resp_12"},"response":7,"id":"resp_13"}"#, Some("resp_13")),
            (b"{\n  \"response\": {\n    \"id\": \"resp_14\"\n  }\n}\n", Some("resp_14")),
            (br#"{"response":{"response":{"id":"x"},"id":"resp_15"}}"#, Some("resp_15")),
            (b"{\"id\":\"resp\x01\"}", None),
        ];
        for (json, id) in cases {
            assert_eq!(
                created_response_id(json),
                id,
                "{}",
                String::from_utf8_lossy(json)
            );
        }
    }

    #[test]
    fn a_document_nested_past_the_bound_is_refused_without_recursion() {
        for levels in [50_000, 1_000_000] {
            let objects = format!("{}{}", r#"{"response":"#.repeat(levels), "}".repeat(levels))
                .replacen(r#"{"response":}"#, r#"{"id":"resp_1"}"#, 1);
            assert_eq!(created_response_id(objects.as_bytes()), None);
            let arrays = format!(
                r#"{{"id":"resp_1","x":{}{}}}"#,
                "[".repeat(levels),
                "]".repeat(levels)
            );
            assert_eq!(created_response_id(arrays.as_bytes()), None);
            assert_eq!(error_code(arrays.as_bytes()), None);
        }
    }

    #[test]
    fn error_codes_are_read_in_any_layout() {
        let cases: [(&[u8], Option<&str>); 10] = [
            (br#"{"error":{"code":"invalid_encrypted_content","message":"x"}}"#, Some("invalid_encrypted_content")),
            (b"{\n  \"error\" : {\n    \"message\" : \"x\",\n    \"code\" : \"invalid_encrypted_content\"\n  }\n}", Some("invalid_encrypted_content")),
            (br#"{"error":{"code":429}}"#, Some("429")),
            (br#"{"error":{"code":"\u0034\u0032\u0039"}}"#, Some("429")),
            (br#"{"error":{"code":4.5}}"#, None),
            (br#"{"error":{"code":null}}"#, None),
            (br#"{"error":{"message":"invalid_encrypted_content"}}"#, None),
            (br#"{"detail":{"error":{"code":"x"}}}"#, None),
            (br#"{"error":{"code":"a"},"error":{"code":"b"}}"#, Some("b")),
            (br#"{"error":{"code":"a"}"#, None),
        ];
        for (json, want) in cases {
            assert_eq!(
                error_code(json).as_deref(),
                want,
                "{}",
                String::from_utf8_lossy(json)
            );
        }
        let stream: [(&[u8], Option<&str>); 5] = [
            (
                br#"{"error":{"code":"too_many_requests"}}"#,
                Some("too_many_requests"),
            ),
            (
                br#"{"type":"response.failed","response":{"error":{"code":"server_error"}}}"#,
                Some("server_error"),
            ),
            (
                br#"{"code":"rate_limit_exceeded","type":"error"}"#,
                Some("rate_limit_exceeded"),
            ),
            (
                br#"{"type":"response.output_text.delta","code":"server_error"}"#,
                None,
            ),
            (
                br#"{"error":{"code":null},"type":"error","code":"server_error"}"#,
                None,
            ),
        ];
        for (json, want) in stream {
            assert_eq!(
                stream_error_code(json).as_deref(),
                want,
                "{}",
                String::from_utf8_lossy(json)
            );
        }
    }
}
