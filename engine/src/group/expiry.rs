//! Offsets retention (Kafka's `offsets.retention.minutes`, KIP-211): the committed offsets of a
//! group without members expire once the group has been empty for the retention period, and
//! those of a group that never had members (simple consumers that only commit) once each is
//! that old. A group left with neither members nor offsets is deleted. Expired entries are
//! tombstoned in `__consumer_offsets` before they are forgotten, as DeleteGroups does.
//!
//! When a group became empty is not stored: it is when this coordinator last saw members, or
//! when it loaded the group (a restart or a failover starts the period again), never earlier
//! than the offset's own commit.

use std::collections::HashMap;

use super::store::{self, Key, Value};
use super::Coordinator;
use crate::internal_topic::TopicHost;

/// Notes that group `id` has members now (the ticker, under one lock for every group): the
/// start of its empty period once it has none.
pub(super) fn note_active(seen: &mut HashMap<String, i64>, id: &str, now_ms: i64) {
    match seen.get_mut(id) {
        Some(at) => *at = now_ms,
        None => {
            seen.insert(id.to_string(), now_ms);
        }
    }
}

/// What expires in one group.
struct Expiring {
    group: String,
    /// `(topic, partition, commit timestamp)`: a commit made since is kept.
    offsets: Vec<(String, i32, i64)>,
    /// The group record goes too.
    whole: bool,
}

impl Coordinator {
    /// Expires what the retention allows in the groups this broker coordinates.
    pub async fn expire_offsets(&self, b: &dyn TopicHost, now_ms: i64) {
        let retention = self.retention.retention_ms;
        let empty: Vec<String> = {
            let groups = self.groups.lock();
            // Groups deleted otherwise (DeleteGroups, a partition led elsewhere) are forgotten.
            self.active_seen
                .lock()
                .retain(|id, _| groups.contains_key(id));
            groups
                .values()
                .filter(|g| g.is_empty())
                .map(|g| g.id.clone())
                .collect()
        };
        for id in empty {
            // Only the coordinator writes the group's records (`check` locks `roles`, which
            // comes before `groups`).
            if self.check(b, &id).is_err() {
                continue;
            }
            let Some(e) = self.expiring(&id, now_ms, retention) else {
                continue;
            };
            let mut entries: Vec<(Key, Option<Value>)> = e
                .offsets
                .iter()
                .map(|(topic, partition, _)| {
                    let key = Key::Offset {
                        group: id.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                    };
                    (key, None)
                })
                .collect();
            if e.whole {
                entries.push((Key::Group(id.clone()), None));
                entries.push((Key::Consumer(id.clone()), None));
            }
            if let Err(err) = store::append(b, &id, &entries).await {
                tracing::warn!(group = %id, error = %err, "expiring committed offsets not persisted; will retry");
                continue;
            }
            self.forget(&e);
            tracing::info!(
                group = %id,
                offsets = e.offsets.len(),
                deleted = e.whole,
                "committed offsets expired (offsets retention)"
            );
        }
    }

    fn expiring(&self, id: &str, now_ms: i64, retention: i64) -> Option<Expiring> {
        let groups = self.groups.lock();
        let g = groups.get(id).filter(|g| g.is_empty())?;
        let empty_since = *self
            .active_seen
            .lock()
            .entry(id.to_string())
            .or_insert(now_ms);
        let had_members = g.protocol_type.is_some() || g.consumer.is_some();
        // Kafka keeps what an open transaction commits to, and the group with it.
        let pending = g.pending_partitions();
        let offsets: Vec<(String, i32, i64)> = g
            .offsets
            .iter()
            .filter(|(k, _)| !pending.contains(*k))
            .filter(|(_, e)| {
                let from = if had_members {
                    empty_since.max(e.commit_timestamp)
                } else {
                    e.commit_timestamp
                };
                now_ms.saturating_sub(from) >= retention
            })
            .map(|((t, p), e)| (t.clone(), *p, e.commit_timestamp))
            .collect();
        let whole = offsets.len() == g.offsets.len()
            && g.pending_txn.is_empty()
            && now_ms.saturating_sub(empty_since) >= retention;
        (!offsets.is_empty() || whole).then(|| Expiring {
            group: id.to_string(),
            offsets,
            whole,
        })
    }

    /// Forgets what was tombstoned, unless the group changed meanwhile (a new commit, a member).
    fn forget(&self, e: &Expiring) {
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(&e.group) else {
            return;
        };
        for (t, p, at) in &e.offsets {
            let key = (t.clone(), *p);
            if g.offsets
                .get(&key)
                .is_some_and(|o| o.commit_timestamp == *at)
            {
                g.offsets.remove(&key);
            }
        }
        if e.whole && g.is_empty() && g.offsets.is_empty() && g.pending_txn.is_empty() {
            groups.remove(&e.group);
            self.active_seen.lock().remove(&e.group);
        }
    }
}
