//! The group coordinator (classic protocol, and the KIP-848 consumer protocol in
//! [`consumer`]): every group's state behind one mutex, durable
//! offsets and group records in `__consumer_offsets` (see [`store`]), consumer lag.
//!
//! This file holds the coordinator and its ticker; each request family has its own file:
//! [`membership`] (classic JoinGroup, SyncGroup, Heartbeat, LeaveGroup), [`consumer_heartbeat`]
//! (KIP-848), [`offsets`] (commits, fetches, deletions), [`descriptions`] (what Describe and List
//! show), [`txn_offsets`] (TxnOffsetCommit and transaction outcomes), [`ownership`] (which
//! groups this broker serves), [`lag`] (the lag metric). The state
//! machines are [`state`] (classic) and [`consumer`] (KIP-848, with its assignors in
//! [`assignor`]); [`store`] is the durable encoding. Requests fail with a [`GroupError`]; the
//! handlers give each its Kafka error code.
//!
//! Requests arrive on any shard. Each takes the lock briefly to run the group's state machine
//! ([`state::Group`]); waits (JoinGroup until the rebalance completes, a follower's SyncGroup
//! until the leader's) are oneshot channels awaited outside the lock. A ticker on shard 0
//! (started by the broker) drives session expiry and rebalance timeouts every [`TICK`]. In a cluster a group is served
//! only by the Raft leader of its `__consumer_offsets` partition ([`Coordinator::check`]); the
//! ticker also follows those leaders, loading and dropping groups. See
//! `docs/consumer-groups.md`.

mod assignor;
pub mod consumer;
mod consumer_heartbeat;
pub mod consumer_record;
mod descriptions;
mod error;
mod expiry;
mod lag;
mod membership;
mod offsets;
mod ownership;
pub mod state;
pub mod store;
mod txn_offsets;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::time::{Duration, Instant};

pub use crate::config::OffsetsRetention;
use crate::internal_topic::TopicHost;
use crate::metrics::LagLabels;
pub use descriptions::{
    ConsumerGroupDescription, ConsumerMemberDescription, FetchedTopic, GroupDescription,
    GroupOffset, MemberDescription, TopicAssignment,
};
pub use error::GroupError;
pub use offsets::{CommitPartition, CommitRequest, PartitionResults};
use ownership::Role;
use state::Group;
pub use txn_offsets::{PendingTxn, TxnCommitRequest};

/// How often session and rebalance timeouts are checked.
pub const TICK: Duration = Duration::from_millis(100);
/// Kafka's `group.min.session.timeout.ms` / `group.max.session.timeout.ms` defaults.
pub const MIN_SESSION_TIMEOUT_MS: i32 = 6_000;
pub const MAX_SESSION_TIMEOUT_MS: i32 = 1_800_000;
/// Kafka's `offset.metadata.max.bytes` default.
pub const MAX_METADATA_BYTES: usize = 4096;

/// Transaction outcomes `(producer id, commit)` by `__consumer_offsets` partition.
type DeferredTxns = HashMap<i32, Vec<(i64, bool)>>;

pub struct Coordinator {
    /// Shared with the tasks that finish a SyncGroup once its group record is committed.
    groups: Arc<Mutex<HashMap<String, Group>>>,
    lag_labels: Mutex<HashSet<LagLabels>>,
    /// In a cluster: groups follow the leaders of `__consumer_offsets` partitions.
    clustered: bool,
    /// By `__consumer_offsets` partition (cluster only; absent = not the leader). Lock order:
    /// `roles` before `groups`. Shared with the tasks that load a partition's groups.
    roles: Arc<Mutex<HashMap<i32, Role>>>,
    /// When each group was last seen with members (see [`expiry`]). Lock order: after `groups`.
    active_seen: Mutex<HashMap<String, i64>>,
    retention: OffsetsRetention,
    /// Transaction outcomes (producer id, commit) for `__consumer_offsets` partitions this
    /// broker is loading (cluster only), applied once the load completes. Lock order: after
    /// `roles`, before `groups`.
    deferred_txns: Arc<Mutex<DeferredTxns>>,
}

impl Default for Coordinator {
    fn default() -> Self {
        Self::new(false, OffsetsRetention::default())
    }
}

impl Coordinator {
    /// `clustered`: the groups of each `__consumer_offsets` partition are coordinated by its
    /// Raft leader.
    pub fn new(clustered: bool, retention: OffsetsRetention) -> Self {
        Coordinator {
            groups: Arc::default(),
            lag_labels: Mutex::default(),
            clustered,
            roles: Arc::default(),
            active_seen: Mutex::default(),
            retention,
            deferred_txns: Arc::default(),
        }
    }

    /// Offsets retention, as configured.
    pub fn retention(&self) -> OffsetsRetention {
        self.retention
    }

    pub fn tick(&self, b: &dyn TopicHost, now: Instant) {
        let now_ms = b.now_ms();
        let mut groups = self.groups.lock();
        let mut active = self.active_seen.lock();
        for g in groups.values_mut() {
            g.tick(now);
            self.store_record(b, g);
            if !g.is_empty() {
                expiry::note_active(&mut active, &g.id, now_ms);
            }
        }
    }
}
