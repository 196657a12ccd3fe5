//! The replication seam: how a partition's appends become committed.
//!
//! On a single node the partition actor appends to its local log, makes it durable, and asks
//! its replication group what is committed; the answer is the high watermark that consumers
//! may read up to and that acks=1/all produces wait for. [`SingleNode`], a group of one, is the
//! only implementation. A replicated partition does not use this trait: its actor proposes the
//! batches to the partition's Raft group (`crate::raft`) and appends them once committed, and
//! its high watermark is what it has applied and flushed.

/// A partition's replication group, seen from its leader.
pub trait ReplicationGroup {
    /// The epoch stamped into batches this leader appends.
    fn leader_epoch(&self) -> i32;

    /// Called after local progress: the log holds data up to `appended` (exclusive) and is
    /// durable up to `flushed`. Returns the commit offset (the new high watermark).
    /// `ack_from_memory` is the topic's write caching: the group may then count data that is
    /// only in memory, as Redpanda's `write.caching` does.
    fn committed(&mut self, appended: i64, flushed: i64, ack_from_memory: bool) -> i64;
}

/// A group of one: whatever the local log holds durably (or in memory, with write caching) is
/// committed.
#[derive(Debug, Default)]
pub struct SingleNode {
    pub epoch: i32,
}

impl ReplicationGroup for SingleNode {
    fn leader_epoch(&self) -> i32 {
        self.epoch
    }

    fn committed(&mut self, appended: i64, flushed: i64, ack_from_memory: bool) -> i64 {
        if ack_from_memory {
            appended
        } else {
            flushed
        }
    }
}
