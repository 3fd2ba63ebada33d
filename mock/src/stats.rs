//! What a mock backend saw: counters (atomics), the request log, and a notification when a client
//! abandons a stream, so that tests wait on events instead of sleeping.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::request::Parts;
use tokio::sync::Notify;

/// One request as the mock received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path_and_query: String,
    /// Header names are lower case; values that are not UTF-8 are converted lossily.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl RecordedRequest {
    /// The first value of header `name` (lower case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Counters of one [`crate::MockServer`]. Cheap to clone: every clone shares the same counters.
#[derive(Clone, Default)]
pub struct MockStats {
    inner: Arc<StatsInner>,
}

/// Statuses 100..=599 each have a counter; anything else lands in the last slot.
const STATUS_SLOTS: usize = 501;

struct StatsInner {
    connections: AtomicU64,
    requests: AtomicU64,
    statuses: Box<[AtomicU64]>,
    streams_started: AtomicU64,
    streams_completed: AtomicU64,
    streams_aborted: AtomicU64,
    streams_disconnected: AtomicU64,
    aborted_changed: Notify,
    log: Mutex<Vec<RecordedRequest>>,
}

impl Default for StatsInner {
    fn default() -> Self {
        Self {
            connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            statuses: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            streams_started: AtomicU64::new(0),
            streams_completed: AtomicU64::new(0),
            streams_aborted: AtomicU64::new(0),
            streams_disconnected: AtomicU64::new(0),
            aborted_changed: Notify::new(),
            log: Mutex::new(Vec::new()),
        }
    }
}

fn status_slot(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status - 100),
        _ => STATUS_SLOTS - 1,
    }
}

impl MockStats {
    /// Connections accepted (tells keep-alive reuse from a connection per request).
    pub fn connections(&self) -> u64 {
        self.inner.connections.load(Ordering::Relaxed)
    }

    /// Requests received (whatever their outcome).
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// Responses sent with `status`.
    pub fn status_count(&self, status: u16) -> u64 {
        self.inner
            .statuses
            .get(status_slot(status))
            .map_or(0, |count| count.load(Ordering::Relaxed))
    }

    /// SSE streams answered with 200.
    pub fn streams_started(&self) -> u64 {
        self.inner.streams_started.load(Ordering::Relaxed)
    }

    /// Streams whose last byte was handed to the connection.
    pub fn streams_completed(&self) -> u64 {
        self.inner.streams_completed.load(Ordering::Relaxed)
    }

    /// Streams dropped before they finished: the client went away or the connection closed.
    pub fn streams_aborted(&self) -> u64 {
        self.inner.streams_aborted.load(Ordering::SeqCst)
    }

    /// Streams the mock cut on purpose (`disconnect_after_chunks`); not counted as aborted.
    pub fn streams_disconnected(&self) -> u64 {
        self.inner.streams_disconnected.load(Ordering::Relaxed)
    }

    /// Every request received so far, in order (empty when `record_requests` is off).
    pub fn requests_log(&self) -> Vec<RecordedRequest> {
        self.inner
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Resolves once [`MockStats::streams_aborted`] reaches `n`.
    pub fn wait_for_streams_aborted(&self, n: u64) -> impl Future<Output = ()> + Send + 'static {
        let inner = Arc::clone(&self.inner);
        async move {
            loop {
                let changed = inner.aborted_changed.notified();
                let mut changed = std::pin::pin!(changed);
                // Register before reading the counter so an increment in between is not missed.
                changed.as_mut().enable();
                if inner.streams_aborted.load(Ordering::SeqCst) >= n {
                    return;
                }
                changed.await;
            }
        }
    }

    pub(crate) fn record(&self, parts: &Parts, body: &Bytes, keep_in_log: bool) {
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        if !keep_in_log {
            return;
        }
        let recorded = RecordedRequest {
            method: parts.method.as_str().to_owned(),
            path_and_query: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_owned(), ToString::to_string),
            headers: parts
                .headers
                .iter()
                .map(|(name, value)| {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    (name.as_str().to_owned(), value)
                })
                .collect(),
            body: body.clone(),
        };
        self.inner
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(recorded);
    }

    pub(crate) fn connection_accepted(&self) {
        self.inner.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_status(&self, status: u16) {
        if let Some(count) = self.inner.statuses.get(status_slot(status)) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn stream_started(&self) {
        self.inner.streams_started.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stream_completed(&self) {
        self.inner.streams_completed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stream_disconnected(&self) {
        self.inner
            .streams_disconnected
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stream_aborted(&self) {
        self.inner.streams_aborted.fetch_add(1, Ordering::SeqCst);
        self.inner.aborted_changed.notify_waiters();
    }
}

impl fmt::Debug for MockStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockStats")
            .field("requests", &self.requests())
            .field("streams_started", &self.streams_started())
            .field("streams_completed", &self.streams_completed())
            .field("streams_aborted", &self.streams_aborted())
            .field("streams_disconnected", &self.streams_disconnected())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_counts_are_per_status() {
        let stats = MockStats::default();
        stats.count_status(200);
        stats.count_status(200);
        stats.count_status(429);
        stats.count_status(42);
        assert_eq!(stats.status_count(200), 2);
        assert_eq!(stats.status_count(429), 1);
        assert_eq!(stats.status_count(500), 0);
    }

    #[tokio::test]
    async fn wait_for_streams_aborted_wakes_on_increment() {
        let stats = MockStats::default();
        let waiter = tokio::spawn(stats.wait_for_streams_aborted(2));
        stats.stream_aborted();
        stats.stream_aborted();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("waiter resolves")
            .expect("waiter task");
    }
}
