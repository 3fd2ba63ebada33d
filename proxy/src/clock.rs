//! A monotonic millisecond clock shared by cooldowns and health state, so they fit in atomics.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Milliseconds since the process's clock origin (never 0 after start-up math; monotonic).
pub fn now_ms() -> u64 {
    // +1 so that 0 can mean "never set" in the atomics that store these.
    origin().elapsed().as_millis() as u64 + 1
}

/// [`now_ms`] of an instant already read (saves reading the clock again).
pub fn ms_at(instant: Instant) -> u64 {
    instant.saturating_duration_since(origin()).as_millis() as u64 + 1
}

/// Milliseconds from now until `at_ms`, or zero if that is past.
pub fn until(at_ms: u64) -> Duration {
    Duration::from_millis(at_ms.saturating_sub(now_ms()))
}
