//! What a controller command must satisfy to be applied, checked where it is applied (the
//! authority: every broker reaches the same decision from the same log), and again where a
//! proposal arrives so that its proposer gets a clear error.
//!
//! The RPC listener has no authentication yet, so a command may come from anyone who can reach
//! it; and a command in the log outlives the code that proposed it. The handlers' own checks
//! (Kafka's topic-name rules, the internal-topic guard, reassignment planning) are therefore
//! repeated here against the command alone and the brokers the controller group knows, which
//! is deterministic: the group's voters and learners at the entry's index, on every broker.
//! Checks that need the topic table (the topic exists with that id, a `Reassigned` matches the
//! reassignment in progress) stay where the table is changed.

use std::collections::{BTreeSet, HashSet};

use super::{ApplyError, Command};
use crate::topics::TopicRecord;

/// The most partitions a topic may have (as `CreateTopics` allows).
pub const MAX_PARTITIONS: i32 = 100_000;

/// `Ok` if `cmd` may be applied in a cluster whose controller group has `brokers` as voters
/// and learners.
pub fn command(cmd: &Command, brokers: &BTreeSet<i32>) -> Result<(), ApplyError> {
    match cmd {
        Command::CreateTopic(rec) => create(rec, brokers),
        Command::DeleteTopic { name, .. } => {
            topic_name(name)?;
            // No code path deletes an internal topic (the handlers refuse it), so a command
            // that does is never legitimate.
            if crate::topics::is_internal(name) {
                return invalid(format!(
                    "'{name}' is an internal topic and cannot be deleted"
                ));
            }
            Ok(())
        }
        Command::Reassign {
            topic,
            partition,
            target,
            ..
        } => {
            topic_name(topic)?;
            partition_index(*partition)?;
            match target {
                Some(t) => replicas("reassignment target", t, None, brokers),
                None => Ok(()),
            }
        }
        Command::Reassigned {
            topic,
            partition,
            replicas: r,
            ..
        } => {
            topic_name(topic)?;
            partition_index(*partition)?;
            replicas("reassigned replicas", r, None, brokers)
        }
        Command::Decommission { node } => known(*node, brokers),
        Command::FinalizeFeatures { levels } => {
            // Only what every broker supports is finalized, this one included.
            let lacking = super::features::missing(levels, &super::features::supported());
            if !lacking.is_empty() || levels.values().any(|l| *l < 1) {
                return invalid(format!(
                    "feature levels {levels:?} are not ones this broker supports"
                ));
            }
            Ok(())
        }
        Command::Security(change) => {
            crate::security::validate::change(change).map_err(|e| ApplyError::Invalid(e.0))
        }
        Command::SetBrokerConfig { broker, config } => {
            if let Some(b) = broker {
                known(*b, brokers)?;
            }
            crate::dynamic_config::validate(config).map_err(|e| ApplyError::Invalid(e.0))
        }
        Command::AllocateProducerIds { broker, .. } => {
            if !(1..super::MAX_NODE_ID).contains(&i64::from(*broker)) {
                return invalid(format!("producer ids for broker {broker}, not a node id"));
            }
            Ok(())
        }
        Command::SetTopicConfig { name, config, .. } => {
            topic_name(name)?;
            let pairs = config
                .overrides
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()));
            crate::config::TopicConfig::from_pairs(pairs)
                .and_then(|c| c.check_combination())
                .map_err(|e| ApplyError::Invalid(e.to_string()))
        }
        Command::Unmount { name, .. }
        | Command::UnmountDone { name, .. }
        | Command::MountDone { name, .. } => unmountable(name),
        Command::UnmountSealed {
            name, partition, ..
        } => {
            unmountable(name)?;
            partition_index(*partition)
        }
        Command::UnmountOffsets { name, from, .. } | Command::MountRestored { name, from, .. } => {
            unmountable(name)?;
            from.iter().try_for_each(|p| partition_index(*p))
        }
        Command::Mount(rec) => {
            unmountable(&rec.name)?;
            let mut plain = rec.clone();
            plain.mounted.clear();
            plain.mounting = None;
            create(&plain, brokers)?;
            mount(rec)
        }
        Command::AddPartitions {
            name,
            from,
            assignments,
            ..
        } => {
            topic_name(name)?;
            let count = i64::from(*from) + assignments.len() as i64;
            if *from < 1 || assignments.is_empty() || count > i64::from(MAX_PARTITIONS) {
                return invalid(format!(
                    "growing a topic from {from} to {count} partitions is out of range"
                ));
            }
            for (i, r) in assignments.iter().enumerate() {
                replicas(
                    &format!("new partition {}", i as i64 + i64::from(*from)),
                    r,
                    None,
                    brokers,
                )?;
            }
            Ok(())
        }
    }
}

/// What a proposal arriving from a peer must also satisfy against this broker's topic table
/// (applying checks it again against the table at its index): a reassignment names an
/// existing topic and partition, and a `Reassigned` the reassignment in progress.
pub fn against_table(topics: &crate::topics::TopicTable, cmd: &Command) -> Result<(), ApplyError> {
    let Some((topic, id, partition)) = cmd.reassignment() else {
        return Ok(());
    };
    let rec = topics
        .record(topic)
        .filter(|r| r.id == id && (0..r.partitions).contains(&partition))
        .ok_or_else(|| {
            ApplyError::Invalid(format!(
                "topic '{topic}' ({id}) has no partition {partition}"
            ))
        })?;
    if let Command::Reassigned { replicas, .. } = cmd {
        if rec.targets.get(&partition) != Some(replicas) {
            return invalid(format!(
                "'{topic}' partition {partition} is not moving to {replicas:?}"
            ));
        }
    }
    Ok(())
}

fn invalid<T>(why: String) -> Result<T, ApplyError> {
    Err(ApplyError::Invalid(why))
}

fn topic_name(name: &str) -> Result<(), ApplyError> {
    crate::names::topic(name)
        .map(|_| ())
        .map_err(|e| ApplyError::Invalid(e.to_string()))
}

/// A topic an unmount or mount may name: not an internal one.
fn unmountable(name: &str) -> Result<(), ApplyError> {
    topic_name(name)?;
    if crate::topics::is_internal(name) {
        return invalid(format!("'{name}' is an internal topic"));
    }
    Ok(())
}

fn partition_index(p: i32) -> Result<(), ApplyError> {
    if !(0..MAX_PARTITIONS).contains(&p) {
        return invalid(format!("partition {p} is out of range"));
    }
    Ok(())
}

fn known(node: i32, brokers: &BTreeSet<i32>) -> Result<(), ApplyError> {
    if !brokers.contains(&node) {
        return invalid(format!(
            "broker {node} is not in the controller group {brokers:?}"
        ));
    }
    Ok(())
}

/// A replica list: not empty, `count` long if given, no duplicates, only known brokers.
fn replicas(
    what: &str,
    r: &[i32],
    count: Option<usize>,
    brokers: &BTreeSet<i32>,
) -> Result<(), ApplyError> {
    if r.is_empty() || r.len() > brokers.len() {
        return invalid(format!(
            "{what} {r:?}: needs 1 to {} brokers",
            brokers.len()
        ));
    }
    if let Some(n) = count.filter(|&n| n != r.len()) {
        return invalid(format!("{what} {r:?}: needs {n} brokers"));
    }
    if r.iter().collect::<HashSet<_>>().len() != r.len() {
        return invalid(format!("{what} {r:?}: a broker appears twice"));
    }
    r.iter().try_for_each(|&id| known(id, brokers))
}

/// A topic record a controller snapshot carries: a valid name, a partition count in range with
/// one replica list each, no broker twice in a list. (Its brokers may have left the group
/// since, so membership is not checked.)
pub fn snapshot_record(rec: &TopicRecord) -> Result<(), ApplyError> {
    topic_name(&rec.name)?;
    if !(1..=MAX_PARTITIONS).contains(&rec.partitions)
        || rec.assignments.len() != rec.partitions as usize
    {
        return invalid(format!(
            "topic '{}': {} partitions with {} replica lists",
            rec.name,
            rec.partitions,
            rec.assignments.len()
        ));
    }
    for r in &rec.assignments {
        if r.is_empty() || r.iter().collect::<HashSet<_>>().len() != r.len() {
            return invalid(format!("topic '{}': replica list {r:?}", rec.name));
        }
    }
    Ok(())
}

fn create(rec: &TopicRecord, brokers: &BTreeSet<i32>) -> Result<(), ApplyError> {
    topic_name(&rec.name)?;
    if !(1..=MAX_PARTITIONS).contains(&rec.partitions) {
        return invalid(format!(
            "partition count {} is out of range",
            rec.partitions
        ));
    }
    let rf = rec.replication_factor;
    if rf < 1 || rf as usize > brokers.len() {
        return invalid(format!(
            "replication factor {rf} is not possible with {} brokers",
            brokers.len()
        ));
    }
    if rec.assignments.len() != rec.partitions as usize {
        return invalid(format!(
            "{} partitions but {} assignments",
            rec.partitions,
            rec.assignments.len()
        ));
    }
    for (p, r) in rec.assignments.iter().enumerate() {
        replicas(&format!("partition {p}"), r, Some(rf as usize), brokers)?;
    }
    // A new topic has no history: these only ever come from applying later commands.
    if rec.adopted
        || !rec.initial.is_empty()
        || !rec.targets.is_empty()
        || !rec.moving.is_empty()
        || rec.changed_at != 0
        || rec.unmounting.is_some()
        || rec.mounting.is_some()
        || !rec.mounted.is_empty()
        || rec.incarnation != 0
    {
        return invalid("a new topic cannot carry reassignment state".into());
    }
    crate::config::TopicConfig::from_pairs(
        rec.config
            .overrides
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .map(|_| ())
    .map_err(|e| ApplyError::Invalid(e.to_string()))
}

/// A mount's record as proposed: a new topic's (see [`create`]), plus each partition's
/// offsets and the offsets to restore, and nothing a later command sets.
fn mount(rec: &TopicRecord) -> Result<(), ApplyError> {
    let bad = |why: String| Err(ApplyError::Invalid(why));
    if rec.mounted.len() != rec.partitions.max(0) as usize {
        return bad(format!(
            "a mount of {} partitions with offsets for {}",
            rec.partitions,
            rec.mounted.len()
        ));
    }
    if let Some((p, (s, e))) = rec
        .mounted
        .iter()
        .enumerate()
        .find(|(_, (s, e))| *s < 0 || s > e)
    {
        return bad(format!("partition {p} mounted at [{s}, {e}]"));
    }
    let Some(job) = &rec.mounting else {
        return bad("a mount without its group offsets".into());
    };
    crate::names::topic(&job.from).map_err(|e| ApplyError::Invalid(e.to_string()))?;
    if rec.unmounting.is_some() || rec.incarnation != 0 || !job.restored.is_empty() {
        return bad("a mount cannot carry later state".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn brokers() -> BTreeSet<i32> {
        [1, 2, 3].into()
    }

    fn topic(name: &str, assignments: Vec<Vec<i32>>) -> TopicRecord {
        let rf = assignments.first().map_or(1, |a| a.len() as i16);
        let n = assignments.len() as i32;
        TopicRecord::new(name, Uuid::new_v4(), rf, Default::default(), assignments, n)
    }

    fn check(cmd: Command) -> Result<(), ApplyError> {
        command(&cmd, &brokers())
    }

    #[test]
    fn creates_need_a_legal_name_and_a_placement_on_known_brokers() {
        let ok = topic("orders", vec![vec![1, 2, 3], vec![2, 3, 1]]);
        assert!(check(Command::CreateTopic(ok.clone())).is_ok());
        for name in ["../../../x", "..", "a/b", "", &"x".repeat(250)] {
            let mut bad = ok.clone();
            bad.name = name.into();
            assert!(check(Command::CreateTopic(bad)).is_err(), "{name:?}");
        }
        let bad = |f: &dyn Fn(&mut TopicRecord)| {
            let mut r = ok.clone();
            f(&mut r);
            matches!(check(Command::CreateTopic(r)), Err(ApplyError::Invalid(_)))
        };
        assert!(bad(&|r| r.assignments[1] = vec![1, 2, 9]));
        assert!(bad(&|r| r.assignments[1] = vec![1, 1, 2]));
        assert!(bad(&|r| r.assignments[1] = vec![1, 2]));
        assert!(bad(&|r| r.partitions = 3));
        assert!(bad(&|r| r.partitions = 0));
        assert!(bad(&|r| r.replication_factor = 4));
        assert!(bad(&|r| r.replication_factor = 0));
        assert!(bad(&|r| {
            r.moving.insert(0, vec![3]);
        }));
        assert!(bad(&|r| {
            r.config
                .overrides
                .insert("retention.ms".into(), "soon".into());
        }));
    }

    #[test]
    fn internal_topics_cannot_be_deleted_and_names_must_be_legal() {
        let id = Uuid::new_v4();
        let del = |name: &str| {
            check(Command::DeleteTopic {
                name: name.into(),
                id,
            })
        };
        assert!(del("orders").is_ok());
        assert!(del(crate::topics::OFFSETS_TOPIC).is_err());
        assert!(del(crate::topics::SCHEMAS_TOPIC).is_err());
        assert!(del("../x").is_err());
    }

    #[test]
    fn reassignments_target_distinct_known_brokers() {
        let id = Uuid::new_v4();
        let re = |partition, target: Option<Vec<i32>>| {
            check(Command::Reassign {
                topic: "t".into(),
                id,
                partition,
                target,
            })
        };
        assert!(re(0, Some(vec![3, 1])).is_ok());
        assert!(re(0, None).is_ok());
        assert!(re(0, Some(vec![1, 2, 77])).is_err());
        assert!(re(0, Some(vec![1, 1])).is_err());
        assert!(re(0, Some(vec![])).is_err());
        assert!(re(0, Some(vec![1, 2, 3, 4])).is_err());
        assert!(re(-1, Some(vec![1])).is_err());
        let done = |replicas: Vec<i32>| {
            check(Command::Reassigned {
                topic: "t".into(),
                id,
                partition: 0,
                replicas,
            })
        };
        assert!(done(vec![1, 2]).is_ok());
        assert!(done(vec![1, 99]).is_err());
        assert!(check(Command::Decommission { node: 2 }).is_ok());
        assert!(check(Command::Decommission { node: 9 }).is_err());
    }
}
