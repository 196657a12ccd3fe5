//! When each peer of a raft group was last heard from.
//!
//! raft-rs's `Progress::recent_active` is cleared for every peer at each quorum check (once per
//! election timeout, inside `tick`), so code that reads it right after a tick sees "not heard"
//! for every peer; when that tick is in phase with the check it sees so for a whole term. The
//! group's owner notes each message it accepts here and asks this instead.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::{ELECTION_TICKS, TICK};

/// How long a peer counts as heard from lately: an election timeout.
pub const LATELY: Duration = TICK.saturating_mul(ELECTION_TICKS);

#[derive(Debug, Default)]
pub struct Heard(HashMap<u64, Instant>);

impl Heard {
    /// A message from `id` was accepted just now.
    pub fn note(&mut self, id: u64) {
        self.0.insert(id, Instant::now());
    }

    /// Whether `id` was heard from within `d`.
    pub fn within(&self, id: u64, d: Duration) -> bool {
        self.0.get(&id).is_some_and(|t| t.elapsed() < d)
    }

    /// Whether `id` was heard from within an election timeout.
    pub fn lately(&self, id: u64) -> bool {
        self.within(id, LATELY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_peer_counts_as_heard_for_a_while_after_its_last_message() {
        let mut h = Heard::default();
        assert!(!h.lately(2), "never heard");
        h.note(2);
        assert!(h.lately(2));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(h.within(2, Duration::from_secs(5)));
        assert!(
            !h.within(2, Duration::from_millis(20)),
            "silent for longer than that"
        );
        assert!(!h.lately(3));
    }
}
