//! The queue of frames waiting for one peer's writer task, bounded by frames and bytes.
//! Pushing never blocks (shards push from their event loops); when the queue is full the
//! oldest heartbeat frames go first, as every tick sends new ones, then the oldest Raft
//! messages, which raft-rs retransmits.

use std::collections::VecDeque;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;

/// How much one peer's queue holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    pub max_frames: usize,
    pub max_bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_frames: 4096,
            max_bytes: 64 << 20,
        }
    }
}

/// What a frame costs to lose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Superseded by the next tick's.
    Heartbeat,
    /// Retransmitted by Raft when lost.
    Raft,
}

#[derive(Default)]
struct State {
    frames: VecDeque<(Class, Vec<u8>)>,
    bytes: usize,
}

pub struct SendQueue {
    limits: QueueLimits,
    state: parking_lot::Mutex<State>,
    ready: Notify,
    dropped: Counter,
}

impl SendQueue {
    /// `dropped` counts frames evicted to make room.
    pub fn new(limits: QueueLimits, dropped: Counter) -> Self {
        SendQueue {
            limits: QueueLimits {
                max_frames: limits.max_frames.max(1),
                max_bytes: limits.max_bytes.max(1),
            },
            state: Default::default(),
            ready: Notify::new(),
            dropped,
        }
    }

    /// Queues `frame`, evicting older frames (heartbeats first) until it fits. A frame larger
    /// than the whole byte budget still goes, alone, rather than never.
    pub fn push(&self, class: Class, frame: Vec<u8>) {
        let mut dropped = 0u64;
        {
            let mut s = self.state.lock();
            while !s.frames.is_empty()
                && (s.frames.len() >= self.limits.max_frames
                    || s.bytes + frame.len() > self.limits.max_bytes)
            {
                let at = s
                    .frames
                    .iter()
                    .position(|(c, _)| *c == Class::Heartbeat)
                    .unwrap_or(0);
                if let Some((_, f)) = s.frames.remove(at) {
                    s.bytes -= f.len();
                    dropped += 1;
                }
            }
            s.bytes += frame.len();
            s.frames.push_back((class, frame));
        }
        if dropped > 0 {
            self.dropped.inc_by(dropped);
        }
        self.ready.notify_one();
    }

    /// The oldest frame, waiting for one.
    pub async fn pop(&self) -> Vec<u8> {
        loop {
            if let Some(f) = self.try_pop() {
                return f;
            }
            self.ready.notified().await;
        }
    }

    /// Waits for a frame, then takes it with those queued behind it, up to `max_bytes` (at
    /// least one frame): they leave in one write.
    pub async fn pop_batch(&self, max_bytes: usize) -> Vec<Vec<u8>> {
        let first = self.pop().await;
        let mut bytes = first.len();
        let mut out = vec![first];
        let mut s = self.state.lock();
        while let Some((_, f)) = s.frames.front() {
            if bytes + f.len() > max_bytes {
                break;
            }
            bytes += f.len();
            let Some((_, f)) = s.frames.pop_front() else {
                break;
            };
            s.bytes -= f.len();
            out.push(f);
        }
        out
    }

    fn try_pop(&self) -> Option<Vec<u8>> {
        let mut s = self.state.lock();
        let (_, f) = s.frames.pop_front()?;
        s.bytes -= f.len();
        Some(f)
    }

    /// Frames and bytes queued.
    pub fn queued(&self) -> (usize, usize) {
        let s = self.state.lock();
        (s.frames.len(), s.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(max_frames: usize, max_bytes: usize) -> (SendQueue, Counter) {
        let dropped = Counter::default();
        let q = SendQueue::new(
            QueueLimits {
                max_frames,
                max_bytes,
            },
            dropped.clone(),
        );
        (q, dropped)
    }

    fn drain(q: &SendQueue) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| q.try_pop()).collect()
    }

    #[test]
    fn full_by_frames_drops_oldest_heartbeat_first() {
        let (q, dropped) = queue(3, 1 << 20);
        q.push(Class::Raft, vec![1]);
        q.push(Class::Heartbeat, vec![2]);
        q.push(Class::Heartbeat, vec![3]);
        q.push(Class::Raft, vec![4]);
        q.push(Class::Raft, vec![5]);
        assert_eq!(dropped.get(), 2);
        assert_eq!(drain(&q), vec![vec![1], vec![4], vec![5]]);
    }

    #[test]
    fn without_heartbeats_the_oldest_raft_frame_goes() {
        let (q, dropped) = queue(2, 1 << 20);
        for i in 0..5u8 {
            q.push(Class::Raft, vec![i]);
        }
        assert_eq!(dropped.get(), 3);
        assert_eq!(drain(&q), vec![vec![3], vec![4]]);
    }

    #[test]
    fn bounded_by_bytes_and_an_oversized_frame_still_goes() {
        let (q, _) = queue(100, 10);
        q.push(Class::Raft, vec![0; 4]);
        q.push(Class::Heartbeat, vec![0; 4]);
        q.push(Class::Raft, vec![0; 4]);
        assert_eq!(q.queued(), (2, 8), "the heartbeat made room");
        q.push(Class::Raft, vec![0; 50]);
        assert_eq!(q.queued(), (1, 50));
        assert_eq!(drain(&q).len(), 1);
        assert_eq!(q.queued(), (0, 0));
    }

    #[tokio::test]
    async fn a_batch_takes_what_is_queued_up_to_its_bytes_and_at_least_one_frame() {
        let (q, _) = queue(10, 1000);
        for n in [3, 4, 5, 200] {
            q.push(Class::Raft, vec![n as u8; n]);
        }
        assert_eq!(q.pop_batch(10).await, vec![vec![3; 3], vec![4; 4]]);
        assert_eq!(q.pop_batch(1).await, vec![vec![5; 5]]);
        assert_eq!(q.pop_batch(1000).await, vec![vec![200; 200]]);
        assert_eq!(q.queued(), (0, 0));
    }

    #[tokio::test]
    async fn pop_waits_for_a_push() {
        let (q, _) = queue(10, 100);
        let q = std::sync::Arc::new(q);
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.pop().await }
        });
        tokio::task::yield_now().await;
        q.push(Class::Raft, vec![9]);
        assert_eq!(waiter.await.unwrap(), vec![9]);
    }
}
