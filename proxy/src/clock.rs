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

/// Microseconds since the limit counters' clock origin (never 0; monotonic). On Linux read
/// straight from `CLOCK_MONOTONIC` as µs (the clock `Instant` reads, without its `Duration`
/// arithmetic: half of what a reading cost a limited request).
pub fn now_us() -> u64 {
    #[cfg(target_os = "linux")]
    {
        micros_since_origin(rustix::time::ClockId::Monotonic)
    }
    #[cfg(not(target_os = "linux"))]
    {
        origin().elapsed().as_micros() as u64 + 1
    }
}

/// [`now_us`] to within one kernel tick, for the limit counters' settlement: whether a
/// reservation's window (seconds long) is still running is decided a few milliseconds either
/// way, without reading the time-stamp counter. The same clock as [`now_us`] (never ahead).
pub fn coarse_us() -> u64 {
    #[cfg(target_os = "linux")]
    {
        micros_since_origin(rustix::time::ClockId::MonotonicCoarse)
    }
    #[cfg(not(target_os = "linux"))]
    {
        coarse().saturating_duration_since(origin()).as_micros() as u64 + 1
    }
}

/// µs of `clock` (the monotonic clock, precise or coarse) since the first reading, plus one.
#[cfg(target_os = "linux")]
fn micros_since_origin(clock: rustix::time::ClockId) -> u64 {
    fn micros(clock: rustix::time::ClockId) -> u64 {
        let now = rustix::time::clock_gettime(clock);
        (now.tv_sec as u64)
            .saturating_mul(1_000_000)
            .saturating_add(now.tv_nsec as u64 / 1_000)
    }
    // The coarse clock lags the precise one by up to a tick: the origin is the coarse reading,
    // so neither is ever before it.
    static ORIGIN_US: OnceLock<u64> = OnceLock::new();
    let origin = *ORIGIN_US.get_or_init(|| micros(rustix::time::ClockId::MonotonicCoarse));
    micros(clock).saturating_sub(origin) + 1
}

/// [`now_ms`] of an instant already read (saves reading the clock again).
pub fn ms_at(instant: Instant) -> u64 {
    instant.saturating_duration_since(origin()).as_millis() as u64 + 1
}

/// The monotonic clock to within one kernel tick (a few milliseconds, either way), for
/// deadlines of seconds that are moved often: a connection's next keep-alive deadline, a
/// stream's last chunk. The kernel's last tick is read without the time-stamp counter, several
/// times cheaper than [`Instant::now`], which a stream would otherwise pay on every chunk.
/// Latencies are never measured with it.
pub fn coarse() -> Instant {
    #[cfg(target_os = "linux")]
    {
        use rustix::time::{ClockId, clock_gettime};
        fn read() -> Duration {
            let now = clock_gettime(ClockId::MonotonicCoarse);
            Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
        }
        // One precise reading paired with a coarse one: later coarse readings are mapped onto
        // `Instant`s from there (the same clock, so the pair is off by less than one tick).
        static PAIR: OnceLock<(Instant, Duration)> = OnceLock::new();
        let (origin, at) = *PAIR.get_or_init(|| (Instant::now(), read()));
        origin + read().saturating_sub(at)
    }
    #[cfg(not(target_os = "linux"))]
    Instant::now()
}

/// Milliseconds from now until `at_ms`, or zero if that is past.
pub fn until(at_ms: u64) -> Duration {
    Duration::from_millis(at_ms.saturating_sub(now_ms()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_clock_is_the_monotonic_clock_to_within_a_tick() {
        // Not a timing threshold: the two readings of one clock must agree to its resolution.
        #[cfg(target_os = "linux")]
        let tick = {
            let res = rustix::time::clock_getres(rustix::time::ClockId::MonotonicCoarse);
            Duration::new(res.tv_sec as u64, res.tv_nsec as u32)
        };
        #[cfg(not(target_os = "linux"))]
        let tick = Duration::ZERO;
        let _ = coarse();
        for _ in 0..1000 {
            let before = Instant::now();
            let reading = coarse();
            let after = Instant::now();
            assert!(
                reading + 2 * tick >= before,
                "{reading:?} behind {before:?}"
            );
            assert!(
                reading <= after + 2 * tick,
                "{reading:?} ahead of {after:?}"
            );
        }
    }

    /// The limit counters' two µs clocks are one: a coarse reading is never ahead of the
    /// precise one read after it, and behind the one before it only by the kernel's lag in
    /// updating it (a tick or two, more on a VM whose ticks are late: bounded here at a second,
    /// which a clock in the wrong unit or from the wrong origin is off by far more).
    #[test]
    fn the_limit_clocks_are_one_clock() {
        const MAX_LAG_US: u64 = 1_000_000;
        let mut last = now_us();
        assert!(last >= 1);
        for _ in 0..1000 {
            let before = now_us();
            let coarse = coarse_us();
            let after = now_us();
            assert!(before >= last, "the precise clock went back");
            assert!(coarse <= after, "coarse {coarse} ahead of {after}");
            assert!(
                coarse + MAX_LAG_US >= before,
                "coarse {coarse} behind {before}"
            );
            last = after;
        }
    }
}
