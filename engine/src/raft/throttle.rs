//! The reassignment throttle: bytes per second a broker spends bringing new replicas up to
//! date, as Kafka's `leader.replication.throttled.rate` and
//! `follower.replication.throttled.rate` (dynamic broker configs, which
//! `kafka-reassign-partitions --throttle` sets).
//!
//! As Kafka's, only the replicas a reassignment moves are throttled, so replicas that are in
//! sync never wait: the receiving broker paces the appends and snapshot chunks a replica being
//! added takes in (the follower rate); the leader paces the snapshot chunks it serves its
//! group's learners, which is what a new replica is until it has caught up (the leader rate). A token bucket with debt: a reservation larger than the budget goes
//! through and the next ones wait it off, so a message bigger than a second's worth never
//! blocks forever.

use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// One direction's budget, shared by every partition of the broker.
#[derive(Debug, Default)]
pub struct Throttle {
    state: Mutex<Bucket>,
    /// Bytes that had to wait (`icestream_replication_throttled_bytes_total`).
    pub waited: prometheus_client::metrics::counter::Counter,
}

#[derive(Debug, Default)]
struct Bucket {
    /// Bytes per second; 0: not throttled.
    rate: u64,
    /// Bytes that may go now; negative: owed.
    tokens: f64,
    at: Option<Instant>,
}

impl Throttle {
    /// Sets the rate (bytes per second); `None` turns the throttle off.
    pub fn set_rate(&self, rate: Option<u64>) {
        let mut b = self.state.lock();
        let rate = rate.unwrap_or(0);
        if b.rate != rate {
            *b = Bucket {
                rate,
                tokens: 0.0,
                at: None,
            };
        }
    }

    pub fn is_on(&self) -> bool {
        self.state.lock().rate > 0
    }

    /// Takes `bytes` from the budget; how long the caller must wait before they go (zero when
    /// off or within budget).
    pub fn reserve(&self, bytes: u64) -> Duration {
        let mut b = self.state.lock();
        if b.rate == 0 {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let rate = b.rate as f64;
        let elapsed = b.at.map_or(1.0, |t| now.duration_since(t).as_secs_f64());
        // At most a second's worth saved up.
        b.tokens = (b.tokens + elapsed * rate).min(rate);
        b.at = Some(now);
        b.tokens -= bytes as f64;
        if b.tokens >= 0.0 {
            return Duration::ZERO;
        }
        self.waited.inc_by(bytes);
        Duration::from_secs_f64(-b.tokens / rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_beyond_the_rate_wait_in_proportion() {
        let t = Throttle::default();
        assert_eq!(t.reserve(1 << 30), Duration::ZERO, "off by default");
        t.set_rate(Some(1000));
        // A second's worth saved up at first, then each byte past it owes a millisecond.
        assert_eq!(t.reserve(1000), Duration::ZERO);
        let w = t.reserve(500);
        assert!(
            w > Duration::from_millis(450) && w <= Duration::from_millis(500),
            "{w:?}"
        );
        let w = t.reserve(500);
        assert!(
            w > Duration::from_millis(950) && w <= Duration::from_millis(1000),
            "{w:?}"
        );
        assert_eq!(t.waited.get(), 1000);
        t.set_rate(None);
        assert_eq!(t.reserve(1 << 30), Duration::ZERO);
        assert!(!t.is_on());
    }
}
