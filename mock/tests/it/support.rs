//! A small hyper client and helpers to read JSON and SSE answers.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mock::MockServer;
use serde_json::Value;

/// Safety net for waits that should end at once; never a synchronisation tool.
pub const SAFETY_TIMEOUT: Duration = Duration::from_secs(10);

pub const CHAT_LEGACY: &str = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21";
pub const CHAT_V1: &str = "/openai/v1/chat/completions";

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn h2c_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A whole answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("missing header {name}"))
            .to_str()
            .expect("ASCII header")
    }
}

pub fn request(
    server: &MockServer,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("{}{path}", server.url()));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(body.into())).expect("request")
}

pub async fn open(client: &HttpClient, request: Request<Full<Bytes>>) -> Response<Incoming> {
    client.request(request).await.expect("response head")
}

pub async fn send(client: &HttpClient, request: Request<Full<Bytes>>) -> Reply {
    let response = open(client, request).await;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("whole body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn post_json(server: &MockServer, path: &str, body: &Value) -> Reply {
    let headers = [("content-type", "application/json")];
    let request = request(server, Method::POST, path, &headers, body.to_string());
    send(&client(), request).await
}

pub async fn get(server: &MockServer, path: &str) -> Reply {
    send(
        &client(),
        request(server, Method::GET, path, &[], Bytes::new()),
    )
    .await
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    sse_events(body).into_iter().map(|(_, data)| data).collect()
}

/// `(event, data)` of each SSE event; `event` is empty when the event has no `event:` line, and
/// the data of several `data:` lines is joined with `\n` (a pretty-printed chunk).
pub fn sse_events(body: &str) -> Vec<(String, String)> {
    body.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut kind = String::new();
            let mut data: Vec<&str> = Vec::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    kind = value.to_owned();
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data.push(value);
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            (kind, data.join("\n"))
        })
        .collect()
}

/// `value` with what differs from one answer to the next (ids, timestamps) blanked out.
pub fn stable(value: &Value) -> Value {
    match value {
        Value::Object(members) => Value::Object(
            members
                .iter()
                .map(|(key, value)| {
                    let volatile = matches!(
                        key.as_str(),
                        "id" | "item_id" | "created" | "created_at" | "system_fingerprint"
                    );
                    let value = if volatile { Value::Null } else { stable(value) };
                    (key.clone(), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(stable).collect()),
        other => other.clone(),
    }
}

pub fn parse(data: &str) -> Value {
    serde_json::from_str(data).unwrap_or_else(|e| panic!("event is not JSON ({e}): {data}"))
}
