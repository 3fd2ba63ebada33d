//! Workers: the gateway can serve the API listener from several threads, each running its own
//! single-threaded Tokio runtime (like nginx's worker processes). A request, its client
//! connection and the backend connections it uses stay on one thread from start to end, so the
//! hot path has no cross-thread wake-ups, and each worker keeps its own idle backend connections
//! (a connection is registered with the I/O driver of the runtime that opened it).
//!
//! [`index`] tells which worker the current thread is; threads that are not workers (tests, a
//! multi-threaded runtime) count as worker 0 and share its idle connections.

use std::cell::Cell;
use std::sync::OnceLock;

static COUNT: OnceLock<usize> = OnceLock::new();

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Number of workers, fixed by the first call to [`set_count`] (1 until then).
pub fn count() -> usize {
    COUNT.get().copied().unwrap_or(1)
}

/// Fixes the number of workers for the process; later calls keep the first value.
pub fn set_count(workers: usize) -> usize {
    *COUNT.get_or_init(|| workers.max(1))
}

/// The worker the current thread serves (0 outside worker threads).
pub fn index() -> usize {
    INDEX.with(Cell::get).min(count() - 1)
}

/// Marks the current thread as worker `index`.
pub fn enter(index: usize) {
    INDEX.with(|cell| cell.set(index));
}

/// Workers to run by default: the CPUs this process may use (affinity and cgroup quota).
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
