//! Listeners: the API listener (HTTP/1.1 served by [`h1`], h2c on the same port by [`h2`],
//! `TCP_NODELAY`) and the admin listener (`/healthz`, `/readyz`, `/metrics`), and the graceful
//! drain on shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::config::GatewayConfig;
use crate::error::{ResponseBody, full_body};
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::worker;

pub(crate) mod drain;
mod h1;
mod h2;

/// The request-head parser, for the fuzz target `fuzz/fuzz_targets/request_head.rs`.
#[doc(hidden)]
pub use h1::{Bad, Head, parse_request};

use drain::{Drain, DrainWatch};

/// A running gateway (both listeners).
pub struct RunningGateway {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub current: Arc<ArcSwap<Gateway>>,
    shutdown: watch::Sender<bool>,
    api: JoinHandle<()>,
    /// One per extra worker thread: fires when its API loop has drained.
    workers: Vec<oneshot::Receiver<()>>,
    admin: JoinHandle<()>,
}

impl RunningGateway {
    /// Binds both listeners from the config and serves them on the current runtime.
    pub async fn start(config: GatewayConfig) -> std::io::Result<Self> {
        Self::start_with_workers(config, 1).await
    }

    /// Binds both listeners and serves the API from `workers` threads (see [`crate::worker`]):
    /// the current runtime is worker 0 (it also serves the admin listener, health probes and
    /// reloads); each other worker is a thread with a single-threaded runtime accepting on the
    /// same listening socket. The worker count is fixed for the process by the first call.
    pub async fn start_with_workers(
        config: GatewayConfig,
        workers: usize,
    ) -> std::io::Result<Self> {
        let workers = if workers > 1 {
            worker::set_count(workers)
        } else {
            1
        };
        let api_listener = bind(config.server.listen)?;
        let admin_listener = TcpListener::bind(config.server.admin_listen).await?;
        let drain = config.server.drain_timeout;
        let metrics = Arc::new(Metrics::new());
        let current = Arc::new(ArcSwap::new(Gateway::new(config, metrics, None)));
        let (shutdown, watcher) = watch::channel(false);
        let addr = api_listener.local_addr()?;
        let admin_addr = admin_listener.local_addr()?;
        let mut extra = Vec::new();
        for index in 1..workers {
            let listener = api_listener.try_clone()?;
            let (current, stop) = (current.clone(), watcher.clone());
            let (done, finished) = oneshot::channel();
            std::thread::Builder::new()
                .name(format!("gateway-worker-{index}"))
                .spawn(move || {
                    worker::enter(index);
                    let served = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .and_then(|runtime| {
                            runtime.block_on(async {
                                let listener = TcpListener::from_std(listener)?;
                                serve_api(listener, current, stop, drain).await;
                                Ok(())
                            })
                        });
                    if let Err(error) = served {
                        tracing::error!(worker = index, %error, "worker failed to start");
                    }
                    let _ = done.send(());
                })?;
            extra.push(finished);
        }
        let api = tokio::spawn(serve_api(
            TcpListener::from_std(api_listener)?,
            current.clone(),
            watcher.clone(),
            drain,
        ));
        let admin = tokio::spawn(serve_admin(admin_listener, current.clone(), watcher));
        tracing::info!(%addr, %admin_addr, workers, "gateway listening");
        Ok(Self {
            addr,
            admin_addr,
            current,
            shutdown,
            api,
            workers: extra,
            admin,
        })
    }

    /// Swaps in a new config: requests in flight finish on the old one, new requests use the new
    /// one. Listener addresses cannot move without a restart; a change there is reported and the
    /// rest of the config is applied.
    pub fn reload(&self, config: GatewayConfig) {
        let old = self.current.load_full();
        for (what, before, after) in [
            (
                "server.listen",
                old.config.server.listen,
                config.server.listen,
            ),
            (
                "server.admin_listen",
                old.config.server.admin_listen,
                config.server.admin_listen,
            ),
        ] {
            if before != after {
                tracing::warn!(field = what, %before, %after, "listener address changes need a restart; keeping the old one");
            }
        }
        let metrics = old.metrics.clone();
        let next = Gateway::new(config, metrics.clone(), Some(&old));
        self.current.store(next);
        metrics.reload(true);
        tracing::info!(
            backends = self.current.load().backends.len(),
            "config reloaded"
        );
    }

    /// Counts and logs a rejected reload; the running config stays.
    pub fn reject_reload(&self, error: &dyn std::fmt::Display) {
        self.current.load().metrics.reload(false);
        tracing::error!(%error, "new config rejected; keeping the running one");
    }

    /// Stops accepting, lets in-flight requests and streams finish (up to the drain timeout),
    /// then returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.api.await;
        for worker in self.workers {
            let _ = worker.await;
        }
        let _ = self.admin.await;
    }
}

async fn serve_api(
    listener: TcpListener,
    current: Arc<ArcSwap<Gateway>>,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
) {
    let connections = TaskTracker::new();
    let draining = Arc::new(Drain::default());
    let heartbeat = tokio::spawn(heartbeat());
    loop {
        let Some((stream, client)) = next_connection(&listener, "api", &current, &mut stop).await
        else {
            break;
        };
        let _ = stream.set_nodelay(true);
        let drain = DrainWatch::new(draining.clone());
        let gateway = current.load();
        let slot = gateway
            .run
            .connection(gateway.config.server.max_connections);
        connections.spawn(h1::serve(stream, client, current.clone(), drain, slot));
    }
    drop(listener);
    draining.begin();
    heartbeat.abort();
    connections.close();
    tracing::info!("draining in-flight requests");
    if tokio::time::timeout(drain, connections.wait())
        .await
        .is_err()
    {
        // Streams still running end now, each with a final SSE error event (a cut the client
        // can tell from an end), and get a moment to write it; what still runs after that is
        // dropped with the runtime. Either way each such request ends as `shutdown`.
        let running = connections.len();
        current.load().run.cut();
        let ended = tokio::time::timeout(CUT_GRACE, connections.wait())
            .await
            .is_ok();
        tracing::warn!(
            ?drain,
            connections = running,
            all_ended = ended,
            "drain timed out: requests still in flight were cut (streams end with an error event)"
        );
    }
}

/// How long connections cut at the drain deadline get to write their last bytes.
const CUT_GRACE: Duration = Duration::from_secs(1);

/// How long a listener stops accepting after running out of file descriptors or memory.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// The listener's next connection, or `None` once `stop` changes. A failed accept is skipped or
/// followed by a pause (see [`accept_failed`]).
async fn next_connection(
    listener: &TcpListener,
    name: &str,
    current: &ArcSwap<Gateway>,
    stop: &mut watch::Receiver<bool>,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => return Some(pair),
                Err(error) => {
                    if accept_failed(&error, name, current) {
                        continue;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(ACCEPT_PAUSE) => {}
                        _ = stop.changed() => return None,
                    }
                }
            },
            _ = stop.changed() => return None,
        }
    }
}

/// Handles a failed accept; true when accepting may go on at once. A network error of the
/// queued connection (Linux reports those from `accept`) costs nothing to skip; but without file
/// descriptors or memory every retry fails at once while the connection stays queued, so
/// accepting pauses instead of spinning (as nginx does), counted and logged once per pause.
fn accept_failed(error: &std::io::Error, listener: &str, current: &ArcSwap<Gateway>) -> bool {
    use rustix::io::Errno;
    let starved = [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM]
        .iter()
        .any(|errno| error.raw_os_error() == Some(errno.raw_os_error()));
    if !starved {
        return true;
    }
    current.load().metrics.accept_failed();
    tracing::warn!(listener, %error, pause_ms = ACCEPT_PAUSE.as_millis() as u64, "cannot accept connections (file descriptors or memory exhausted); pausing");
    false
}

/// The API listening socket, shared by the workers: `SO_REUSEADDR` and a backlog of 1024 (as
/// tokio's own `bind`; the standard library's 128 overflows under connection bursts).
fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Keeps a timer at most a second away on this worker's runtime. Tokio wakes its I/O driver (an
/// eventfd write and an extra epoll event) whenever a new timer is due earlier than every
/// existing one; on an otherwise idle worker that is every request's response-head timeout (the
/// only timer there), one extra syscall per request. With this tick always pending, request
/// deadlines (seconds away) never come first.
async fn heartbeat() {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
    }
}

async fn serve_admin(
    listener: TcpListener,
    current: Arc<ArcSwap<Gateway>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let Some((stream, _)) = next_connection(&listener, "admin", &current, &mut stop).await
        else {
            break;
        };
        // The same client limits as the API listener: a head must arrive within
        // `client_timeout`, and a connection lives at most `keepalive_timeout` (probes and
        // scrapes are instant; they reconnect), so slow or idle clients cannot pile up here.
        let limits = &current.load().config.server;
        let (head_timeout, lifetime) = (limits.client_timeout, limits.keepalive_timeout);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(head_timeout);
        let current = current.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let gateway = current.load_full();
            async move { Ok::<_, Infallible>(admin(&gateway, &request)) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(lifetime, connection).await;
        });
    }
}

fn admin(gateway: &Gateway, request: &Request<Incoming>) -> Response<ResponseBody> {
    let (status, content_type, body) = match request.uri().path() {
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/readyz" if gateway.ready() => (StatusCode::OK, "text/plain", "ready\n".to_owned()),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "no backend is usable\n".to_owned(),
        ),
        "/metrics" => {
            gateway
                .metrics
                .limit_store(gateway.stages.limits.store_connected());
            (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                gateway.metrics.encode(&gateway.backends),
            )
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    let mut response = Response::new(full_body(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}
