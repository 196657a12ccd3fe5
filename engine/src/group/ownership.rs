//! Which groups this broker serves. On a single node, every group; in a cluster, the groups of
//! each `__consumer_offsets` partition whose Raft leader this broker is: a new leader replays its
//! partition (groups, stored members, offsets) before it serves, a deposed one drops them.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;

use super::state::Group;
use super::store::OffsetEntry;
use super::store::{self, Key, Replayed, Value, OFFSETS_TOPIC};
use super::{Coordinator, GroupError};
use crate::internal_topic::TopicHost;

/// Whether this broker coordinates the groups of one `__consumer_offsets` partition (cluster
/// only; on a single node it coordinates every group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    NotLeader,
    /// Replaying the partition as the leader of this term.
    Loading(i32),
    Serving(i32),
}

impl Coordinator {
    /// Whether this broker may serve requests for `group` now: `NotCoordinator` when another
    /// broker leads the group's `__consumer_offsets` partition, or nobody does;
    /// `CoordinatorLoadInProgress` when this broker leads it but has not replayed it yet.
    pub fn check(&self, b: &dyn TopicHost, group: &str) -> Result<(), GroupError> {
        if !self.clustered {
            return Ok(());
        }
        let t = b
            .topics()
            .get(OFFSETS_TOPIC)
            .ok_or(GroupError::NotCoordinator)?;
        let p = store::partition_for(group, t.partitions.len());
        let (leader, term) = b.partition_leader_epoch(&t, p);
        if leader != b.node_id() {
            return Err(GroupError::NotCoordinator);
        }
        match self.roles.lock().get(&p) {
            Some(Role::Serving(t)) if *t == term => Ok(()),
            _ => Err(GroupError::CoordinatorLoadInProgress),
        }
    }

    /// The broker this one sees coordinating `group`, when that is another broker (cluster
    /// only): the Raft leader of the group's `__consumer_offsets` partition.
    pub fn coordinator_elsewhere(&self, b: &dyn TopicHost, group: &str) -> Option<i32> {
        if !self.clustered {
            return None;
        }
        let t = b.topics().get(OFFSETS_TOPIC)?;
        let leader = b.partition_leader(&t, store::partition_for(group, t.partitions.len()));
        (leader >= 0 && leader != b.node_id()).then_some(leader)
    }

    /// Follows the leaders of `__consumer_offsets` partitions (cluster only, from the ticker):
    /// a new leader replays its partition and then serves the partition's groups; a deposed
    /// one drops them.
    pub fn follow_leader(&self, b: &Arc<dyn TopicHost>) {
        if !self.clustered {
            return;
        }
        let Some(t) = b.topics().get(OFFSETS_TOPIC) else {
            return;
        };
        let n = t.partitions.len();
        let mut roles = self.roles.lock();
        for p in 0..n as i32 {
            let (leader, term) = b.partition_leader_epoch(&t, p);
            let role = roles.get(&p).copied().unwrap_or(Role::NotLeader);
            if leader != b.node_id() {
                if role != Role::NotLeader {
                    tracing::info!(partition = p, "no longer the coordinator of its groups");
                    roles.remove(&p);
                    self.deferred_txns.lock().remove(&p);
                    // Pending joins and syncs see their senders dropped and answer an error.
                    self.drop_partition(p, n);
                }
                continue;
            }
            if matches!(role, Role::Loading(t) | Role::Serving(t) if t == term) {
                continue;
            }
            roles.insert(p, Role::Loading(term));
            // The replay sees every marker written before it starts; those written while it
            // runs are deferred ([`Coordinator::complete_txn`]) and applied after it.
            self.deferred_txns.lock().remove(&p);
            self.drop_partition(p, n);
            let (b, all_roles, all_groups, deferred) = (
                b.clone(),
                self.roles.clone(),
                self.groups.clone(),
                self.deferred_txns.clone(),
            );
            tokio::task::spawn_local(async move {
                let loaded = match load_as_leader(&*b, p).await {
                    Ok(groups) => Some(groups),
                    Err(e) => {
                        tracing::warn!(partition = p, error = %e, "cannot load groups as the new coordinator; retrying");
                        None
                    }
                };
                let mut roles = all_roles.lock();
                if roles.get(&p) != Some(&Role::Loading(term)) {
                    return;
                }
                let completed = deferred.lock().remove(&p).unwrap_or_default();
                match loaded {
                    Some(mut loaded) => {
                        for (pid, commit) in completed {
                            for g in loaded.values_mut() {
                                g.complete_pending(p, pid, commit);
                            }
                        }
                        tracing::info!(
                            partition = p,
                            term,
                            groups = loaded.len(),
                            "now the coordinator of its groups"
                        );
                        all_groups.lock().extend(loaded);
                        roles.insert(p, Role::Serving(term));
                    }
                    // The next tick tries again if this broker still leads.
                    None => {
                        roles.remove(&p);
                    }
                }
            });
        }
    }

    /// The `__consumer_offsets` partitions whose groups this broker serves now (cluster only;
    /// loaded as the leader of the term it leads).
    pub fn served_partitions(&self, b: &dyn TopicHost) -> Vec<i32> {
        let Some(t) = b.topics().get(OFFSETS_TOPIC) else {
            return vec![];
        };
        let roles = self.roles.lock();
        let mut out: Vec<i32> = roles
            .iter()
            .filter(|(&p, role)| {
                let (leader, term) = b.partition_leader_epoch(&t, p);
                leader == b.node_id() && **role == Role::Serving(term)
            })
            .map(|(&p, _)| p)
            .collect();
        out.sort_unstable();
        out
    }

    /// Forgets the groups of partition `p` of `n`.
    fn drop_partition(&self, p: i32, n: usize) {
        self.groups
            .lock()
            .retain(|id, _| store::partition_for(id, n) != p);
    }

    /// Rebuilds offsets and group records from `__consumer_offsets` (start-up, single node;
    /// in a cluster each partition's leader does it, see [`Coordinator::check`]).
    pub async fn load(&self, b: &dyn TopicHost) -> Result<(), store::StoreError> {
        if self.clustered {
            return Ok(());
        }
        let n = b
            .topics()
            .get(OFFSETS_TOPIC)
            .map_or(0, |t| t.partitions.len());
        let mut groups = HashMap::new();
        for p in 0..n as i32 {
            groups.extend(replay_groups(b, p).await?);
        }
        *self.groups.lock() = groups;
        Ok(())
    }
}

/// A new leader's view: once its own write to the partition is committed, every entry of
/// earlier terms is applied locally, so the replay that follows sees every acknowledged commit.
async fn load_as_leader(
    b: &dyn TopicHost,
    p: i32,
) -> Result<HashMap<String, Group>, store::StoreError> {
    store::barrier(b, p).await?;
    replay_groups(b, p).await
}

/// Groups and their offsets as `__consumer_offsets` records them, up to its high watermark.
async fn replay_groups(
    b: &dyn TopicHost,
    p: i32,
) -> Result<HashMap<String, Group>, store::StoreError> {
    let mut rebuild = Rebuild::new(p, Instant::now());
    store::replay(b, p, |r| rebuild.apply(r)).await?;
    let records = rebuild.records;
    let groups = rebuild.finish();
    if records > 0 {
        tracing::info!(
            groups = groups.len(),
            records,
            partition = p,
            "restored consumer groups from {OFFSETS_TOPIC}"
        );
    }
    Ok(groups)
}

/// The groups of one `__consumer_offsets` partition rebuilt from its entries, in log order.
/// Transactional records are held per producer until that producer's marker: applied on a
/// commit marker, dropped on an abort marker, left pending when no marker follows yet.
pub(super) struct Rebuild {
    partition: i32,
    now: Instant,
    groups: HashMap<String, Group>,
    /// Records of open transactions, by producer id, in log order.
    open: HashMap<i64, Vec<(i64, Key, Option<Value>)>>,
    pub(super) records: u64,
}

impl Rebuild {
    pub(super) fn new(partition: i32, now: Instant) -> Self {
        Rebuild {
            partition,
            now,
            groups: HashMap::new(),
            open: HashMap::new(),
            records: 0,
        }
    }

    pub(super) fn apply(&mut self, r: Replayed) {
        self.records += 1;
        match r {
            Replayed::Record {
                log_offset,
                producer_id: Some(pid),
                key,
                value,
            } => self
                .open
                .entry(pid)
                .or_default()
                .push((log_offset, key, value)),
            Replayed::Record {
                log_offset,
                producer_id: None,
                key,
                value,
            } => self.record(log_offset, key, value),
            Replayed::Marker {
                producer_id,
                commit,
            } => {
                let ended = self.open.remove(&producer_id).unwrap_or_default();
                if commit {
                    for (log_offset, key, value) in ended {
                        self.record(log_offset, key, value);
                    }
                }
            }
        }
    }

    /// The groups, with the transactions still open left pending in them.
    pub(super) fn finish(mut self) -> HashMap<String, Group> {
        for (pid, records) in std::mem::take(&mut self.open) {
            for (log_offset, key, value) in records {
                let Key::Offset {
                    group,
                    topic,
                    partition,
                } = key
                else {
                    continue;
                };
                let g = self
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group));
                match value {
                    Some(Value::Offset(v)) => g.add_pending(
                        pid,
                        self.partition,
                        topic,
                        partition,
                        OffsetEntry::stored(v, log_offset),
                    ),
                    None => g.drop_pending(pid, &topic, partition),
                    _ => {}
                }
            }
        }
        self.groups
    }

    /// Applies one record that counts (not transactional, or of a committed transaction).
    fn record(&mut self, log_offset: i64, key: Key, value: Option<Value>) {
        let (groups, now) = (&mut self.groups, self.now);
        match (key, value) {
            (
                Key::Offset {
                    group,
                    topic,
                    partition,
                },
                Some(Value::Offset(v)),
            ) => groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group))
                .apply_offset(&topic, partition, OffsetEntry::stored(v, log_offset)),
            (
                Key::Offset {
                    group,
                    topic,
                    partition,
                },
                None,
            ) => {
                if let Some(g) = groups.get_mut(&group) {
                    g.offsets.remove(&(topic, partition));
                }
            }
            (Key::Group(group), Some(Value::Group(v))) => groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group))
                .restore(v, now),
            (Key::Group(group), None) => {
                groups.remove(&group);
            }
            (Key::Consumer(group), Some(Value::Consumer(rec))) => match rec.restore(now) {
                Some(c) => {
                    groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group))
                        .consumer = Some(c)
                }
                None => {
                    tracing::warn!(group = %group, "a consumer group record that does not restore skipped")
                }
            },
            (Key::Consumer(group), None) => {
                if let Some(g) = groups.get_mut(&group) {
                    g.consumer = None;
                }
            }
            // A value that does not decode for its key: skip it.
            _ => {}
        }
    }
}
