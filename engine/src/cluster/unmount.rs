//! Unmount and mount in a cluster, as controller commands: each step of a job is an entry in
//! the controller log, applied to the topic's record ([`crate::topic_jobs`]). Brokers take the
//! steps (the tiering crate's driver): partition leaders seal, group coordinators report and
//! restore committed offsets, the controller leader writes or deletes the topic manifest. A new
//! controller leader, or a restarted broker, finds the job where the log left it.

use std::collections::BTreeSet;

use super::metadata_state::{Changed, MetadataState};
use super::{features, ApplyError, Command};
use crate::topic_jobs::{Mounting, Unmounting};
use crate::topics::TopicRecord;

impl MetadataState {
    /// Applies one of the unmount or mount commands (others are not handed here).
    pub(super) fn apply_job(&mut self, cmd: Command, index: u64) -> Result<Changed, ApplyError> {
        let state = self;
        state.require(features::CLUSTER_UNMOUNT, "unmount and mount in a cluster")?;
        match cmd {
            Command::Unmount {
                name,
                id,
                started_ms,
            } => {
                let rec = state.topic_mut(&name, id)?;
                if rec.unmounting.is_some() {
                    return other(format!("topic '{name}' is being unmounted already"));
                }
                if rec.mounting.is_some() {
                    return other(format!(
                        "topic '{name}' is still being mounted (restoring group offsets)"
                    ));
                }
                if !rec.targets.is_empty() {
                    return other(format!(
                        "topic '{name}' has a reassignment in progress; wait for it or cancel it"
                    ));
                }
                if !rec.config.remote_storage_set() {
                    return other(format!("topic '{name}' does not have remote storage on"));
                }
                rec.unmounting = Some(Box::new(Unmounting {
                    started_ms,
                    ..Default::default()
                }));
                rec.changed_at = index;
                Ok(Changed::Topic(name))
            }
            Command::UnmountSealed {
                name,
                id,
                partition,
                start,
                end,
            } => {
                let rec = state.topic_mut(&name, id)?;
                let partitions = rec.partitions;
                let job = unmounting(rec)?;
                if !(0..partitions).contains(&partition) || start > end {
                    return Err(ApplyError::Invalid(format!(
                        "partition {partition} sealed at [{start}, {end}]"
                    )));
                }
                // Every leader of the partition seals at the same offset (the Seal is an entry of
                // its log); the first report stands.
                job.sealed.entry(partition).or_insert((start, end));
                rec.changed_at = index;
                Ok(Changed::Topic(name))
            }
            Command::UnmountOffsets {
                name,
                id,
                from,
                offsets,
            } => {
                let rec = state.topic_mut(&name, id)?;
                let partitions = rec.partitions;
                let job = unmounting(rec)?;
                if !job.all_sealed(partitions) {
                    return other(format!("topic '{name}' is not sealed yet"));
                }
                job.add_offsets(&from, offsets);
                rec.changed_at = index;
                Ok(Changed::Topic(name))
            }
            Command::UnmountDone { name, id } => {
                let rec = state.topic_mut(&name, id)?;
                let partitions = rec.partitions;
                if !unmounting(rec)?.all_sealed(partitions) {
                    return other(format!("topic '{name}' is not sealed yet"));
                }
                state.topics.remove(&name);
                state.unmounted.insert(id, name.clone());
                Ok(Changed::Topic(name))
            }
            Command::Mount(mut rec) => {
                if state.topics.contains_key(&rec.name) {
                    return Err(ApplyError::TopicExists(rec.name));
                }
                if let Some(other) = state.topics.values().find(|t| t.id == rec.id) {
                    return Err(ApplyError::TopicExists(format!(
                        "{} (it has topic id {})",
                        other.name, rec.id
                    )));
                }
                rec.incarnation = index;
                state.unmounted.remove(&rec.id);
                let name = rec.name.clone();
                state.topics.insert(name.clone(), rec);
                Ok(Changed::Topic(name))
            }
            Command::MountRestored { name, id, from } => {
                let rec = state.topic_mut(&name, id)?;
                let job = rec.mounting.as_mut().ok_or_else(|| {
                    ApplyError::Other(format!("topic '{name}' is not being mounted"))
                })?;
                job.restored.extend(from);
                rec.changed_at = index;
                Ok(Changed::Topic(name))
            }
            Command::MountDone { name, id } => {
                let rec = state.topic_mut(&name, id)?;
                if rec.mounting.take().is_none() {
                    return other(format!("topic '{name}' is not being mounted"));
                }
                rec.changed_at = index;
                Ok(Changed::Topic(name))
            }
            other_cmd => Err(ApplyError::Invalid(format!(
                "not an unmount or mount command: {other_cmd:?}"
            ))),
        }
    }
}

fn unmounting(rec: &mut TopicRecord) -> Result<&mut Unmounting, ApplyError> {
    let name = rec.name.clone();
    rec.unmounting
        .as_deref_mut()
        .ok_or_else(|| ApplyError::Other(format!("topic '{name}' is not being unmounted")))
}

fn other<T>(why: String) -> Result<T, ApplyError> {
    Err(ApplyError::Other(why))
}

/// A new mount's record: the manifest's topic, placed on `assignments`, with its offsets.
pub fn mount_record(
    mut rec: TopicRecord,
    offsets: Vec<(i64, i64)>,
    from: &str,
    group_offsets: Vec<crate::topic_jobs::GroupOffset>,
    started_ms: i64,
) -> TopicRecord {
    rec.mounted = offsets;
    rec.mounting = Some(Box::new(Mounting {
        started_ms,
        from: from.to_string(),
        group_offsets,
        restored: BTreeSet::new(),
    }));
    rec
}

/// The id of the topic's incarnation a broker holds differs from the cluster's (`wanted`).
pub fn replaced(local: &TopicRecord, wanted: Option<&TopicRecord>) -> bool {
    wanted.is_none_or(|w| w.id != local.id || w.incarnation != local.incarnation)
}

/// Whether a topic this broker deletes keeps its remote data: it was unmounted (its manifest
/// and segments wait in the object store for a mount), or it comes back as a new incarnation
/// of the same id (mounted).
pub fn keeps_remote(state: &MetadataState, local: &TopicRecord) -> bool {
    state.unmounted.contains_key(&local.id) || state.topics.values().any(|t| t.id == local.id)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::topic_jobs::GroupOffset;

    fn tiered(name: &str) -> TopicRecord {
        let mut config = crate::config::TopicConfig::default();
        config.set_entry("remote.storage.enable", "true").unwrap();
        TopicRecord::new(
            name,
            uuid::Uuid::new_v4(),
            2,
            config,
            vec![vec![1, 2], vec![2, 3]],
            2,
        )
    }

    fn with_feature() -> MetadataState {
        let mut s = MetadataState::default();
        s.features.insert(features::CLUSTER_UNMOUNT.into(), 1);
        s
    }

    fn offset(group: &str, partition: i32, offset: i64) -> GroupOffset {
        GroupOffset {
            group: group.into(),
            partition,
            offset,
            metadata: None,
        }
    }

    #[test]
    fn an_unmount_runs_step_by_step_and_a_mount_brings_the_topic_back() {
        let brokers: BTreeSet<i32> = [1, 2, 3].into();
        let mut s = with_feature();
        let t = tiered("orders");
        let (name, id) = (t.name.clone(), t.id);
        s.apply(Command::CreateTopic(t.clone()), 1, &brokers)
            .unwrap();
        let unmount = Command::Unmount {
            name: name.clone(),
            id,
            started_ms: 5,
        };
        s.apply(unmount.clone(), 2, &brokers).unwrap();
        // Started once; no other change to the topic meanwhile.
        assert!(s.apply(unmount, 3, &brokers).is_err());
        let reassign = Command::Reassign {
            topic: name.clone(),
            id,
            partition: 0,
            target: Some(vec![3, 1]),
        };
        assert!(s.apply(reassign, 3, &brokers).is_err());
        let delete = Command::DeleteTopic {
            name: name.clone(),
            id,
        };
        assert!(s.apply(delete, 3, &brokers).is_err());
        let sealed = |partition, end| Command::UnmountSealed {
            name: name.clone(),
            id,
            partition,
            start: 0,
            end,
        };
        s.apply(sealed(0, 10), 4, &brokers).unwrap();
        // Offsets are reported only once every partition is sealed, and the job cannot end
        // before.
        let report = |from: Vec<i32>, offsets| Command::UnmountOffsets {
            name: name.clone(),
            id,
            from,
            offsets,
        };
        assert!(s
            .apply(report(vec![0], vec![offset("g", 0, 3)]), 5, &brokers)
            .is_err());
        let done = Command::UnmountDone {
            name: name.clone(),
            id,
        };
        assert!(s.apply(done.clone(), 5, &brokers).is_err());
        s.apply(sealed(1, 20), 6, &brokers).unwrap();
        // A second seal report of a partition keeps the first.
        s.apply(sealed(1, 99), 7, &brokers).unwrap();
        s.apply(report(vec![0], vec![offset("g", 0, 3)]), 8, &brokers)
            .unwrap();
        // A repeated report of the same coordinator partition adds nothing.
        s.apply(report(vec![0], vec![offset("g", 0, 9)]), 9, &brokers)
            .unwrap();
        let job = s.topics[&name].unmounting.clone().unwrap();
        assert_eq!(job.sealed[&1], (0, 20));
        assert_eq!(job.group_offsets, vec![offset("g", 0, 3)]);
        assert!(job.offsets_complete(1) && !job.offsets_complete(2));
        s.apply(done, 10, &brokers).unwrap();
        assert!(!s.topics.contains_key(&name));
        assert_eq!(s.unmounted[&id], name);

        // Mounted back under a new name: a new incarnation of the same id.
        let mut back = t.clone();
        back.name = "orders-2".into();
        let back = mount_record(back, vec![(0, 10), (0, 20)], &name, job.group_offsets, 11);
        s.apply(Command::Mount(back.clone()), 12, &brokers).unwrap();
        assert!(s.unmounted.is_empty());
        let rec = &s.topics["orders-2"];
        assert_eq!(rec.incarnation, 12);
        assert!(replaced(&t, Some(rec)), "an older incarnation is replaced");
        assert!(keeps_remote(&s, &t), "its remote data is the mount's");
        // The same id cannot be mounted twice.
        let mut twice = back.clone();
        twice.name = "orders-3".into();
        assert!(matches!(
            s.apply(Command::Mount(twice), 13, &brokers),
            Err(ApplyError::TopicExists(_))
        ));
        let restored = Command::MountRestored {
            name: "orders-2".into(),
            id,
            from: vec![0, 1],
        };
        s.apply(restored, 14, &brokers).unwrap();
        let mount_done = Command::MountDone {
            name: "orders-2".into(),
            id,
        };
        s.apply(mount_done.clone(), 15, &brokers).unwrap();
        assert!(s.topics["orders-2"].mounting.is_none());
        assert!(s.apply(mount_done, 16, &brokers).is_err());
        // The checkpoint's encoding carries all of it.
        assert_eq!(MetadataState::decode(&s.encode()).unwrap(), s);
    }

    #[test]
    fn unmount_needs_the_feature_remote_storage_and_no_move_in_progress() {
        let brokers: BTreeSet<i32> = [1, 2, 3].into();
        let t = tiered("orders");
        let unmount = Command::Unmount {
            name: t.name.clone(),
            id: t.id,
            started_ms: 0,
        };
        let mut s = MetadataState::default();
        s.apply(Command::CreateTopic(t.clone()), 1, &brokers)
            .unwrap();
        assert!(s.apply(unmount.clone(), 2, &brokers).is_err());
        let mut s = with_feature();
        let mut plain = t.clone();
        plain.config = Default::default();
        s.apply(Command::CreateTopic(plain), 1, &brokers).unwrap();
        assert!(s.apply(unmount.clone(), 2, &brokers).is_err());
        let mut s = with_feature();
        s.apply(Command::CreateTopic(t.clone()), 1, &brokers)
            .unwrap();
        let reassign = Command::Reassign {
            topic: t.name.clone(),
            id: t.id,
            partition: 0,
            target: Some(vec![3, 1]),
        };
        s.apply(reassign, 2, &brokers).unwrap();
        assert!(s.apply(unmount, 3, &brokers).is_err());
        // Internal topics are never unmounted, and a create cannot carry a job.
        let internal = Command::Unmount {
            name: "__consumer_offsets".into(),
            id: t.id,
            started_ms: 0,
        };
        assert!(matches!(
            s.apply(internal, 4, &brokers),
            Err(ApplyError::Invalid(_))
        ));
        let mut forged = tiered("forged");
        forged.unmounting = Some(Default::default());
        assert!(matches!(
            s.apply(Command::CreateTopic(forged), 5, &brokers),
            Err(ApplyError::Invalid(_))
        ));
        // A mount's offsets must match its partitions.
        let bad = mount_record(tiered("m"), vec![(0, 1)], "m", vec![], 0);
        assert!(matches!(
            s.apply(Command::Mount(bad), 6, &brokers),
            Err(ApplyError::Invalid(_))
        ));
    }
}
