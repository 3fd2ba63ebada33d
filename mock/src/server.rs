//! [`MockServer`]: binds a listener, serves HTTP/1.1 (keep-alive) and h2c on every accepted
//! connection, and shuts down gracefully with a short deadline.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::options::MockOptions;
use crate::service::{self, Shared};
use crate::stats::MockStats;

/// How long in-flight requests get to finish on [`MockServer::shutdown`] before their
/// connections are cut.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(20);

/// Concurrent h2 streams per connection: enough for the benchmark's 2048 streams.
const MAX_H2_STREAMS: u32 = 4096;

/// A running mock Azure OpenAI backend. Dropping it stops it at once; [`MockServer::shutdown`]
/// lets in-flight requests finish first.
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: oneshot::Sender<()>,
    accept_loop: JoinHandle<()>,
}

impl MockServer {
    /// Starts a backend on `127.0.0.1` on a free port.
    pub async fn start(options: MockOptions) -> io::Result<MockServer> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), options).await
    }

    /// Starts a backend on `addr` (port 0 picks a free port).
    pub async fn start_on(addr: SocketAddr, options: MockOptions) -> io::Result<MockServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(options));
        let (stop, stopped) = oneshot::channel();
        let accept_loop = tokio::spawn(accept_loop(listener, Arc::clone(&shared), stopped));
        Ok(MockServer {
            addr,
            shared,
            stop,
            accept_loop,
        })
    }

    /// The address the backend listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, the endpoint to configure in a client.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Counters and the request log.
    pub fn stats(&self) -> &MockStats {
        &self.shared.stats
    }

    /// Replaces the options; requests that arrive afterwards see the new ones.
    pub fn set_options(&self, options: MockOptions) {
        self.shared.set_options(options);
    }

    /// The options in force.
    pub fn options(&self) -> MockOptions {
        self.shared.profile().options.clone()
    }

    /// Stops accepting, lets in-flight requests finish for a short while, then closes every
    /// connection.
    pub async fn shutdown(self) {
        let MockServer {
            stop, accept_loop, ..
        } = self;
        // The loop may already be gone; then there is nothing left to stop.
        let _ = stop.send(());
        let _ = accept_loop.await;
    }
}

impl std::fmt::Debug for MockServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockServer")
            .field("addr", &self.addr)
            .field("stats", &self.shared.stats)
            .finish_non_exhaustive()
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(MAX_H2_STREAMS);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    // `Ok` is an explicit shutdown; `Err` means the server handle was dropped.
    let graceful_stop = loop {
        tokio::select! {
            signal = &mut stopped => break signal.is_ok(),
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // Streams send small events that must not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    shared.stats.connection_accepted();
                    let builder = Arc::clone(&builder);
                    let shared = Arc::clone(&shared);
                    let watcher = graceful.watcher();
                    connections.spawn(async move {
                        let service = service_fn(move |request| {
                            service::handle(Arc::clone(&shared), request)
                        });
                        let connection = builder.serve_connection(TokioIo::new(stream), service);
                        // A connection error is the client's business, not the mock's.
                        let _ = watcher.watch(connection).await;
                    });
                }
                Err(_) => tokio::time::sleep(ACCEPT_ERROR_PAUSE).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    };
    drop(listener);
    if graceful_stop {
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    }
    connections.shutdown().await;
}
