//! Test harness: mock backends, an in-process gateway on port 0, and a small HTTP client.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mock::{MockOptions, MockServer};
use proxy::{GatewayConfig, RunningGateway};

pub const BACKEND_KEY: &str = "backend-secret-key";

/// A backend line of the config: name, mock url, priority, weight.
pub struct B<'a> {
    pub name: &'a str,
    pub url: String,
    pub priority: i64,
    pub weight: u32,
}

pub fn b(name: &str, url: String) -> B<'_> {
    B {
        name,
        url,
        priority: 5,
        weight: 1,
    }
}

/// Config YAML for backends plus extra top-level YAML (`extra` must not repeat `backends`).
pub fn config_yaml(backends: &[B<'_>], extra: &str) -> String {
    let mut yaml =
        String::from("version: 1\nserver:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n");
    if !extra.contains("server:") {
        yaml.push('\n');
    }
    yaml.push_str("backends:\n");
    for backend in backends {
        yaml.push_str(&format!(
            "  - name: {}\n    endpoint: {}\n    priority: {}\n    weight: {}\n    auth: {{ mode: api-key, api_key: {BACKEND_KEY} }}\n",
            backend.name, backend.url, backend.priority, backend.weight
        ));
    }
    yaml.push_str(extra);
    yaml
}

pub async fn gateway(yaml: &str) -> RunningGateway {
    let config =
        GatewayConfig::parse("test.yaml", yaml).unwrap_or_else(|e| panic!("{e}\n---\n{yaml}"));
    RunningGateway::start(config).await.unwrap()
}

pub async fn mock(name: &str) -> MockServer {
    mock_with(MockOptions {
        name: name.into(),
        ..MockOptions::default()
    })
    .await
}

pub async fn mock_with(options: MockOptions) -> MockServer {
    MockServer::start(MockOptions {
        api_key: Some(BACKEND_KEY.into()),
        ..options
    })
    .await
    .unwrap()
}

pub fn opts(name: &str) -> MockOptions {
    MockOptions {
        name: name.into(),
        ..MockOptions::default()
    }
}

/// A response read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub fn request(
    method: Method,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(Full::new(body.into())).unwrap()
}

/// Sends and returns the response with its body still streaming.
pub async fn open(req: Request<Full<Bytes>>) -> http::Response<Incoming> {
    client().request(req).await.unwrap()
}

pub async fn send(req: Request<Full<Bytes>>) -> Reply {
    let response = open(req).await;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn post(addr: SocketAddr, path: &str, body: &str) -> Reply {
    send(request(
        Method::POST,
        addr,
        path,
        &[("content-type", "application/json")],
        body.to_owned(),
    ))
    .await
}

pub const CHAT: &str = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21";
pub const CHAT_BODY: &str = r#"{"messages":[{"role":"user","content":"hello there"}]}"#;
pub const STREAM_BODY: &str =
    r#"{"stream":true,"messages":[{"role":"user","content":"hello there"}]}"#;

/// Next data frame of a streaming body (None at the end); panics on error or if nothing comes for 10 s.
pub async fn next_chunk(body: &mut Incoming) -> Option<Bytes> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("no chunk within 10 s")?;
        if let Ok(data) = frame.unwrap().into_data() {
            return Some(data);
        }
    }
}

/// Reads the admin `/metrics` text.
pub async fn metrics(gw: &RunningGateway) -> String {
    send(request(
        Method::GET,
        gw.admin_addr,
        "/metrics",
        &[],
        Bytes::new(),
    ))
    .await
    .text()
}

/// Sum of a metric's samples whose line contains every `needle`.
pub fn metric_sum(text: &str, name: &str, needles: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && needles.iter().all(|n| l.contains(n)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls a condition every 20 ms for at most 10 s (state that changes on its own clock, such as
/// health probes or a config reload, has no event to await).
pub async fn wait_until(mut check: impl AsyncFnMut() -> bool) {
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            std::time::Instant::now() < give_up,
            "condition not reached within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One h2c connection (prior knowledge) to `addr`: its sender, and the task driving it, which
/// ends when the connection does.
pub async fn h2c_connect<B>(
    addr: std::net::SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<B>,
    tokio::task::JoinHandle<hyper::Result<()>>,
)
where
    B: http_body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    (sender, tokio::spawn(connection))
}
