//! Which groups this broker serves. On a single node, every group; in a cluster, the groups of
//! each `__consumer_offsets` partition whose Raft leader this broker is: a new leader replays its
//! partition (groups, stored members, offsets) before it serves, a deposed one drops them.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;

use super::state::Group;
use super::store::OffsetEntry;
use super::store::{self, Key, Value, OFFSETS_TOPIC};
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
                    // Pending joins and syncs see their senders dropped and answer an error.
                    self.drop_partition(p, n);
                }
                continue;
            }
            if matches!(role, Role::Loading(t) | Role::Serving(t) if t == term) {
                continue;
            }
            roles.insert(p, Role::Loading(term));
            self.drop_partition(p, n);
            let (b, all_roles, all_groups) = (b.clone(), self.roles.clone(), self.groups.clone());
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
                match loaded {
                    Some(loaded) => {
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
    let mut groups = HashMap::<String, Group>::new();
    let mut records = 0u64;
    let now = Instant::now();
    store::replay(b, p, |log_offset, key, value| {
        records += 1;
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
                None => tracing::warn!(group = %group, "a consumer group record that does not restore skipped"),
            },
            (Key::Consumer(group), None) => {
                if let Some(g) = groups.get_mut(&group) {
                    g.consumer = None;
                }
            }
            // A value that does not decode for its key: skip it.
            _ => {}
        }
    })
    .await?;
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
