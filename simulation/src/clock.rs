//! A node's wall clock: the simulated time plus the jumps its faults made.

use std::sync::atomic::{AtomicI64, Ordering};

pub struct SimClock {
    start: tokio::time::Instant,
    /// The wall-clock time at `start`, plus every jump so far.
    base_ms: AtomicI64,
}

/// 2026-12-06 00:00 UTC: a fixed wall clock, so record timestamps repeat run to run.
const EPOCH_MS: i64 = 1_796_515_200_000;

impl SimClock {
    pub fn new() -> Self {
        SimClock {
            start: tokio::time::Instant::now(),
            base_ms: AtomicI64::new(EPOCH_MS),
        }
    }

    pub fn jump(&self, ms: i64) {
        self.base_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Default for SimClock {
    fn default() -> Self {
        Self::new()
    }
}

impl engine::time::Clock for SimClock {
    fn now_ms(&self) -> i64 {
        self.base_ms.load(Ordering::Relaxed) + self.start.elapsed().as_millis() as i64
    }
}
