//! The remote-tier seam: how tiered storage plugs into partitions without the engine knowing
//! about object stores.
//!
//! The partition actor offers each sealed segment to the tier, asks it what is safely uploaded
//! before local retention removes a segment, and owns retention for both tiers (it knows the
//! local bytes, the tier reports its segments). Fetch and ListOffsets below the local start
//! offset go to the tier directly from the handler, so a slow object store never stalls the
//! partition. The `tiering` crate implements this trait; the binary wires it in.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use bytes::Bytes;
use uuid::Uuid;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A partition as the tier knows it. Objects are keyed by topic id, so a topic keeps its
/// remote data when it is mounted back under a new name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemotePartition {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
}

/// A sealed local segment offered for upload. Its files do not change until local retention
/// removes them, which it does only once the tier's extent covers the segment.
#[derive(Debug, Clone)]
pub struct SealedSegment {
    pub base_offset: i64,
    /// The offset after the segment's last record.
    pub next_offset: i64,
    pub size: u64,
    /// Largest record timestamp in the segment, -1 if none.
    pub max_timestamp: i64,
    pub log: PathBuf,
    pub index: PathBuf,
    pub time_index: PathBuf,
    /// The producer-state snapshot taken when the segment was sealed, if there is one.
    pub producer_snapshot: Option<PathBuf>,
}

/// One uploaded segment, as recorded in the partition's manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteSegment {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size: u64,
    pub max_timestamp: i64,
}

/// What the object store holds for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RemoteExtent {
    /// First offset readable remotely; equal to `end` when nothing is.
    pub start: i64,
    /// The offset after the last uploaded segment: every offset in `start..end` is durably in
    /// the object store and named by the manifest.
    pub end: i64,
    pub bytes: u64,
    pub segments: u64,
}

/// Which replica writes a partition's remote data. A single node's one replica always leads;
/// in a cluster only the Raft leader uploads and trims, stamping its leader epoch (the Raft
/// term) into the manifest so a deposed leader's late write is refused, and followers re-read
/// the manifest the leader writes (their local retention and remote reads follow it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierRole {
    Leader { epoch: i32 },
    Follower,
}

impl RemoteExtent {
    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("remote tier does not track partition {0}")]
    UnknownPartition(String),
    #[error("offset {0} is not in the remote tier")]
    OffsetNotRemote(i64),
    #[error("object store: {0}")]
    Store(String),
    #[error("damaged remote metadata: {0}")]
    Corrupt(String),
}

pub trait RemoteTier: Send + Sync {
    /// Starts tracking a partition and returns what its manifest records. Called before the
    /// partition serves anything, at creation and at every start.
    fn open(&self, p: &RemotePartition) -> BoxFuture<'_, Result<RemoteExtent, RemoteError>>;

    /// Says whether this replica leads the partition. Until told otherwise a partition leads
    /// with epoch 0 (a single node). A follower's upload queue is dropped.
    fn set_role(&self, p: &RemotePartition, role: TierRole);

    /// A follower re-reads, in the background, the manifest its leader writes (a leader's
    /// is always current): `extent` and `segments` then answer from it.
    fn refresh(&self, p: &RemotePartition);

    /// Queues sealed segments for upload, in offset order. Offering a segment that is queued
    /// or uploaded already does nothing. Never blocks: uploads run in the background with
    /// retries, and the tier's metrics show the backlog.
    fn offer(&self, p: &RemotePartition, segments: Vec<SealedSegment>);

    /// What is safely uploaded now (in memory, cheap). `None` for an untracked partition.
    fn extent(&self, p: &RemotePartition) -> Option<RemoteExtent>;

    /// The uploaded segments, ascending (in memory): retention decides from these.
    fn segments(&self, p: &RemotePartition) -> Vec<RemoteSegment>;

    /// Reads whole batches from the batch holding `offset`, up to about `max_bytes` but
    /// always at least one batch; `None` past the remote end.
    fn read(
        &self,
        p: &RemotePartition,
        offset: i64,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<Option<Bytes>, RemoteError>>;

    /// The first remote offset whose timestamp is at or after `ts`, with that timestamp.
    fn offset_for_timestamp(
        &self,
        p: &RemotePartition,
        ts: i64,
    ) -> BoxFuture<'_, Result<Option<(i64, i64)>, RemoteError>>;

    /// The producer-state snapshot uploaded with the remote segment that ends at `end` (the
    /// producers and aborted transactions as of `end`), read through the stored manifest so
    /// the partition need not be open (a mount). `None` when no uploaded segment ends there or
    /// it was uploaded without one (before transactions, or its snapshot was pruned first).
    fn producer_snapshot(
        &self,
        p: &RemotePartition,
        end: i64,
    ) -> BoxFuture<'_, Result<Option<Bytes>, RemoteError>>;

    /// Makes offsets below `offset` unreadable (persisted in the manifest) and removes the
    /// segments wholly below it: DeleteRecords and total retention.
    fn delete_before(
        &self,
        p: &RemotePartition,
        offset: i64,
    ) -> BoxFuture<'_, Result<RemoteExtent, RemoteError>>;

    /// Stops tracking the partition. With `delete_data` (the topic was deleted) its objects
    /// and manifest are removed; otherwise (shutdown, unmount) they stay.
    fn close(
        &self,
        p: &RemotePartition,
        delete_data: bool,
    ) -> BoxFuture<'_, Result<(), RemoteError>>;
}
