//! A minimal accept loop shared by the mock identity endpoint and the mock Key Vault: plain HTTP
//! or TLS (rustls), HTTP/1.1 and h2 on every accepted connection, a per-connection hook that can
//! refuse or stall a connection (to simulate a service that is down), and shutdown on demand.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// A whole response.
pub(crate) type Reply = Response<Full<Bytes>>;

/// What happens to a freshly accepted connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnConnect {
    /// Serve it.
    Serve,
    /// Close it at once, before any byte (a service that resets connections).
    Close,
    /// Keep it open and never answer (a service that hangs).
    Stall,
}

/// The behaviour of one server: a connection hook and a request handler.
pub(crate) trait Site: Send + Sync + 'static {
    fn on_connect(&self) -> OnConnect {
        OnConnect::Serve
    }
    fn handle(self: Arc<Self>, request: Request<Incoming>) -> impl Future<Output = Reply> + Send;
}

/// A running server; dropping it stops the accept loop and cuts every connection.
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    stop: oneshot::Sender<()>,
    accept_loop: JoinHandle<()>,
}

impl Running {
    /// Binds `addr` (port 0 picks a free port) and serves `site`, over TLS when `tls` is given.
    pub(crate) async fn start<S: Site>(
        addr: SocketAddr,
        site: Arc<S>,
        tls: Option<TlsAcceptor>,
    ) -> io::Result<Running> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let accept_loop = tokio::spawn(accept_loop(listener, site, tls, stopped));
        Ok(Running {
            addr,
            stop,
            accept_loop,
        })
    }

    /// Stops accepting and closes every connection.
    pub(crate) async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.accept_loop.await;
    }
}

async fn accept_loop<S: Site>(
    listener: TcpListener,
    site: Arc<S>,
    tls: Option<TlsAcceptor>,
    mut stopped: oneshot::Receiver<()>,
) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else { continue };
                let action = site.on_connect();
                let site = Arc::clone(&site);
                let builder = Arc::clone(&builder);
                let tls = tls.clone();
                connections.spawn(async move {
                    match action {
                        OnConnect::Close => drop(stream),
                        OnConnect::Stall => {
                            // Held until the server stops (the task is aborted then).
                            let _held = stream;
                            std::future::pending::<()>().await;
                        }
                        OnConnect::Serve => serve(stream, site, builder, tls).await,
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Dropping the set aborts every connection task.
    connections.shutdown().await;
}

async fn serve<S: Site>(
    stream: TcpStream,
    site: Arc<S>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    tls: Option<TlsAcceptor>,
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| {
        let site = Arc::clone(&site);
        async move { Ok::<_, Infallible>(site.handle(request).await) }
    });
    // Connection and handshake errors are the client's business, not the mock's.
    match tls {
        None => {
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
        Some(acceptor) => {
            if let Ok(stream) = acceptor.accept(stream).await {
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
        }
    }
}

/// A JSON response.
pub(crate) fn json(status: http::StatusCode, value: &serde_json::Value) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// The query parameters of a request, decoded.
pub(crate) fn query_pairs(uri: &http::Uri) -> Vec<(String, String)> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        index += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_are_percent_decoded() {
        let uri: http::Uri = "/t?resource=https%3A%2F%2Fvault.azure.net&api-version=2019-08-01&x"
            .parse()
            .unwrap();
        assert_eq!(
            query_pairs(&uri),
            [
                ("resource".into(), "https://vault.azure.net".into()),
                ("api-version".into(), "2019-08-01".into()),
                ("x".into(), String::new()),
            ]
        );
        let odd: http::Uri = "/t?a=%zz&b=%4".parse().unwrap();
        assert_eq!(
            query_pairs(&odd),
            [("a".into(), "%zz".into()), ("b".into(), "%4".into())]
        );
    }
}
