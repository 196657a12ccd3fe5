//! Wall-clock time in Kafka's unit, and the clock the replicated path reads it from.
//!
//! The partition actors take wall-clock time (record timestamps, segment ages, retention,
//! producer expiry) from a [`Clock`] they are given, so that a simulator can run them on its
//! own clock; their monotonic time (Raft ticks, timeouts, flush deadlines) is tokio's, which a
//! paused runtime drives.

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Where wall-clock milliseconds come from.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The machine's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}
