//! A partition group's snapshot, as raft-rs carries it, and how a replica installing one reads
//! the leader's segments.
//!
//! raft-rs sends a snapshot as one message and RPC frames are capped, so the message carries
//! only the checkpoint (index, term, configuration) and the segment log's offset there
//! (`data`: `u8 version (1), i64 offset`, then the checkpoint's `state` if it has one: the
//! controller's metadata, which is small and travels whole). The follower holding
//! it copies the segments from its own log end up to that offset in chunks it asks for one at
//! a time ([`ChunkFn`]): its own log is already a prefix of the leader's, because every
//! replica applies the same committed entries the same way.

use std::sync::Arc;

use bytes::Bytes;
use raft::eraftpb::{Snapshot, SnapshotMetadata};
use tokio::sync::oneshot;

use super::checkpoint::Checkpoint;

const VERSION: u8 = 1;

pub fn to_snapshot(c: &Checkpoint) -> Snapshot {
    let mut data = vec![VERSION];
    data.extend_from_slice(&c.offset.to_be_bytes());
    data.extend_from_slice(&c.state);
    let mut meta = SnapshotMetadata {
        index: c.index,
        term: c.term,
        ..Default::default()
    };
    meta.set_conf_state(c.conf.clone());
    let mut s = Snapshot::default();
    s.set_metadata(meta);
    s.data = data.into();
    s
}

/// The segment log offset a snapshot stands for; `None` if its data is not one of ours.
pub fn offset_of(s: &Snapshot) -> Option<i64> {
    let d = &s.data;
    if d.len() < 9 || d[0] < VERSION {
        return None;
    }
    let offset = i64::from_be_bytes(d[1..9].try_into().ok()?);
    (offset >= 0).then_some(offset)
}

/// The state machine's state a snapshot carries (empty for a partition's).
pub fn state_of(s: &Snapshot) -> &[u8] {
    s.data.get(9..).unwrap_or_default()
}

/// The checkpoint a received snapshot installs, its files starting at `first_file`.
pub fn checkpoint_of(s: &Snapshot, first_file: u64) -> Option<Checkpoint> {
    let meta = s.get_metadata();
    Some(Checkpoint {
        index: meta.index,
        term: meta.term,
        conf: meta.get_conf_state().clone(),
        offset: offset_of(s)?,
        first_file,
        state: bytes::Bytes::copy_from_slice(state_of(s)),
    })
}

/// What a replica installing a snapshot asks another replica for: batches from `from`, never
/// past `upto`, at most `max_bytes` (at least one batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRequest {
    /// Who asks (the leader counts it as progress of that follower's snapshot).
    pub requester: u64,
    pub from: i64,
    pub upto: i64,
    pub max_bytes: u32,
}

/// A chunk of the leader's log, with its log start offsets at the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The first offset over both tiers.
    pub log_start: i64,
    /// The first offset on the leader's local disk: a request below it gets no records.
    pub local_start: i64,
    /// Whole batches from `from` (empty below `local_start`).
    pub records: Bytes,
}

/// Reads a chunk from a replica (by node id), over the cluster's RPC.
pub type ChunkFn =
    Arc<dyn Fn(u64, ChunkRequest) -> oneshot::Receiver<Result<Chunk, String>> + Send + Sync>;
