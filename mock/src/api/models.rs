//! Model listing (`GET /openai/v1/models`, `GET /openai/models?api-version=`): a fixed list.

use bytes::Bytes;
use http::StatusCode;

use crate::reply::{self, MockResponse};

const MODELS_BODY: &[u8] = concat!(
    r#"{"object":"list","data":["#,
    r#"{"id":"gpt-4o","object":"model","created":1715558400,"owned_by":"system"},"#,
    r#"{"id":"gpt-4o-mini","object":"model","created":1721260800,"owned_by":"system"},"#,
    r#"{"id":"text-embedding-3-small","object":"model","created":1705948997,"owned_by":"system"}"#,
    r#"]}"#
)
.as_bytes();

pub(super) fn list() -> MockResponse {
    reply::json(StatusCode::OK, Bytes::from_static(MODELS_BODY))
}
