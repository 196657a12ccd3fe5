//! The reassignment throttle on a partition replica (`raft::throttle`): appends a replica a
//! reassignment adds takes in wait their turn here, in order, and are stepped once the broker's follower budget
//! allows. Only a few wait: past that the leader's further appends are dropped, and Raft sends
//! them again once the learner has caught up with those (its usual recovery from a lost
//! message), so memory stays bounded however far behind the learner is.

use std::collections::VecDeque;

use raft::eraftpb::{Message, MessageType};
use tokio::time::Instant;

use super::Actor;

/// Appends held at most per partition (each at most `max_size_per_msg`, 1 MiB).
const HELD: usize = 4;

/// Appends held back by the follower throttle, with when each may be stepped.
#[derive(Default)]
pub(super) struct Held(VecDeque<(Instant, Message)>);

impl Actor {
    /// Steps a Raft message from another replica, holding back the appends the follower
    /// throttle says must wait.
    pub(super) fn step_raft(&mut self, m: Message) {
        if let Some(r) = &self.raft {
            let paced = m.get_msg_type() == MessageType::MsgAppend
                && !m.entries.is_empty()
                && r.is_adding()
                && r.throttles().follower.is_on();
            if paced || !self.held.0.is_empty() && m.get_msg_type() == MessageType::MsgAppend {
                if self.held.0.len() >= HELD {
                    return;
                }
                let bytes = m.entries.iter().map(|e| e.data.len() as u64).sum();
                let wait = r.throttles().follower.reserve(bytes);
                if !wait.is_zero() || !self.held.0.is_empty() {
                    self.held.0.push_back((Instant::now() + wait, m));
                    return;
                }
            }
        }
        self.step_now(m);
    }

    /// Steps the held appends whose turn came (at every Raft tick).
    pub(super) fn release_held(&mut self) {
        let now = Instant::now();
        while self.held.0.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, m)) = self.held.0.pop_front() {
                self.step_now(m);
            }
        }
    }

    fn step_now(&mut self, m: Message) {
        if let Some(snap) = self.raft.as_mut().and_then(|r| r.step(m)) {
            self.begin_install(snap);
        }
    }
}
