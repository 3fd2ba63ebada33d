//! Logs: one JSON line per event on stdout (`tracing`), written off the request path. A line is
//! formatted where it happens and handed to a bounded queue (`tracing-appender`'s non-blocking
//! writer, lossy); one thread writes the queue to stdout. A stdout that nobody reads (a full pipe,
//! a stuck log shipper) therefore never stalls a worker: once the queue is full, new lines are
//! dropped and counted (`gateway_log_lines_dropped_total`).

use std::sync::OnceLock;
use std::time::Duration;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};

/// Counts the lines dropped since start (set once, by [`init`]).
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Lines dropped because the queue to stdout was full.
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
}

/// Keeps the writer thread; dropping it flushes what is queued, waiting at most
/// [`FLUSH_LIMIT`] (a stdout nobody reads must not hold the exit either).
pub struct LogGuard(Option<WorkerGuard>);

/// Longest the exit waits for queued lines to be written.
const FLUSH_LIMIT: Duration = Duration::from_secs(2);

impl Drop for LogGuard {
    fn drop(&mut self) {
        let Some(guard) = self.0.take() else { return };
        // The writer's own flush waits (and, on a timeout, prints to the very stdout that is
        // stuck), so it runs on a thread of its own, and the exit goes on after the limit.
        let (done, finished) = std::sync::mpsc::channel();
        let flushing = std::thread::Builder::new()
            .name("gateway-log-flush".into())
            .spawn(move || {
                drop(guard);
                let _ = done.send(());
            });
        if flushing.is_ok() {
            let _ = finished.recv_timeout(FLUSH_LIMIT);
        }
    }
}

/// Installs the JSON subscriber at `level`, writing through a queue of at most `queue_lines`.
pub fn init(level: &str, queue_lines: usize) -> LogGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(queue_lines.max(1))
        .thread_name("gateway-log")
        .finish(std::io::stdout());
    let _ = DROPPED.set(writer.error_counter());
    let filter =
        tracing_subscriber::EnvFilter::new(format!("{level},hyper=warn,h2=warn,rustls=warn"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_writer(writer)
        .init();
    LogGuard(Some(guard))
}
