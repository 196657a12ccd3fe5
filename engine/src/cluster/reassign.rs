//! Partition reassignment and broker decommission, as the controller log carries them.
//!
//! `Reassign` records a partition's target replicas in its topic record (`targets`); every
//! broker that gains a replica starts it (an empty Raft log bootstrapped with the
//! creation-time voters) and the partition's leader moves the Raft group there
//! ([`crate::raft::PartitionRaft`]'s reconfigure) without stopping writes. When the group's
//! configuration equals the target the leader proposes `Reassigned`: the target becomes the
//! assignment and brokers no longer in it stop their replica and delete its files.
//!
//! `Decommission` marks a broker as draining: it gets no new replicas, and the controller
//! leader reassigns every replica it holds to other brokers ([`drain`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use kafka_protocol::ResponseError;

use super::{ApplyError, Cluster, Command};
use crate::topics::{TopicRecord, TopicTable};

/// Why a reassignment or decommission request is refused.
#[derive(Debug, thiserror::Error)]
pub enum ReassignError {
    #[error("partition reassignment needs a multi-broker cluster")]
    NotCluster,
    #[error("topic '{0}' has no partition {1}")]
    UnknownPartition(String, i32),
    #[error("invalid replica assignment: {0}")]
    InvalidReplicas(String),
    /// AlterPartitionReassignments v1 with `allow_replication_factor_change` false (KIP-860).
    #[error("the replication factor is changed from {0} to {1}")]
    ReplicationFactorChange(usize, usize),
    #[error("no reassignment in progress for '{0}' partition {1}")]
    NoReassignment(String, i32),
    #[error("broker {0} is not a member of the cluster")]
    UnknownBroker(i32),
    #[error("cannot decommission broker {node}: a partition has {needed} replicas and only {available} other brokers can take them")]
    NotEnoughBrokers {
        node: i32,
        needed: usize,
        available: usize,
    },
    /// The controller refused the command or could not be reached.
    #[error("controller: {0}")]
    Controller(#[from] ApplyError),
}

impl ReassignError {
    /// The Kafka error code for a reassignment request.
    pub fn code(&self) -> i16 {
        match self {
            ReassignError::UnknownPartition(..) => ResponseError::UnknownTopicOrPartition.code(),
            ReassignError::NoReassignment(..) => ResponseError::NoReassignmentInProgress.code(),
            ReassignError::ReplicationFactorChange(..) => {
                ResponseError::InvalidReplicationFactor.code()
            }
            ReassignError::NotCluster
            | ReassignError::InvalidReplicas(_)
            | ReassignError::UnknownBroker(_)
            | ReassignError::NotEnoughBrokers { .. } => {
                ResponseError::InvalidReplicaAssignment.code()
            }
            ReassignError::Controller(ApplyError::Invalid(_) | ApplyError::Other(_)) => {
                ResponseError::RequestTimedOut.code()
            }
            ReassignError::Controller(_) => ResponseError::UnknownServerError.code(),
        }
    }
}

/// Checks a reassignment (`target` given) or a cancellation against the cluster metadata;
/// returns the command to propose.
pub fn plan(
    topics: &TopicTable,
    cluster: Option<&Cluster>,
    topic: &str,
    partition: i32,
    target: Option<&[i32]>,
    allow_rf_change: bool,
) -> Result<Command, ReassignError> {
    let cluster = cluster.ok_or(ReassignError::NotCluster)?;
    let unknown = || ReassignError::UnknownPartition(topic.to_string(), partition);
    let rec = topics
        .record(topic)
        .filter(|r| !r.assignments.is_empty() && topics.get(topic).is_some())
        .ok_or_else(unknown)?;
    if partition < 0 || partition >= rec.partitions {
        return Err(unknown());
    }
    let target = match target {
        None if !rec.targets.contains_key(&partition) => {
            return Err(ReassignError::NoReassignment(topic.to_string(), partition))
        }
        None => None,
        Some([]) => {
            return Err(ReassignError::InvalidReplicas(
                "the replica list is empty".into(),
            ))
        }
        Some(t) => {
            let distinct: BTreeSet<i32> = t.iter().copied().collect();
            if distinct.len() != t.len() {
                return Err(ReassignError::InvalidReplicas(format!(
                    "duplicate broker ids in {t:?}"
                )));
            }
            let in_group = cluster.controller_brokers();
            if let Some(&bad) = t
                .iter()
                .find(|&&id| cluster.members.get(id).is_none() || !in_group.contains(&id))
            {
                return Err(ReassignError::UnknownBroker(bad));
            }
            let current = rec.assignments.get(partition as usize).map_or(0, Vec::len);
            if !allow_rf_change && t.len() != current {
                return Err(ReassignError::ReplicationFactorChange(current, t.len()));
            }
            if let Some(&bad) = t.iter().find(|&&id| cluster.is_draining(id)) {
                return Err(ReassignError::InvalidReplicas(format!(
                    "broker {bad} is being decommissioned"
                )));
            }
            Some(t.to_vec())
        }
    };
    Ok(Command::Reassign {
        topic: topic.to_string(),
        id: rec.id,
        partition,
        target,
    })
}

/// Checks a decommission request; returns the command to propose.
pub fn plan_decommission(
    topics: &TopicTable,
    cluster: Option<&Cluster>,
    node: i32,
) -> Result<Command, ReassignError> {
    let cluster = cluster.ok_or(ReassignError::NotCluster)?;
    if cluster.members.get(node).is_none() || !cluster.controller_brokers().contains(&node) {
        return Err(ReassignError::UnknownBroker(node));
    }
    let available = cluster
        .placeable_brokers()
        .into_iter()
        .filter(|&id| id != node)
        .count();
    let needed = topics
        .all()
        .iter()
        .filter_map(|t| topics.record(&t.name))
        .flat_map(|r| r.assignments.into_iter().chain(r.targets.into_values()))
        .filter(|r| r.contains(&node))
        .map(|r| r.len())
        .max()
        .unwrap_or(0);
    if needed > available {
        return Err(ReassignError::NotEnoughBrokers {
            node,
            needed,
            available,
        });
    }
    Ok(Command::Decommission { node })
}

/// Whether a decommissioned broker holds no replica any more (nor is gaining one).
pub fn holds_replicas(topics: &TopicTable, node: i32) -> bool {
    topics
        .all()
        .iter()
        .any(|t| topics.record(&t.name).is_some_and(|r| r.involves(node)))
}

/// Applies a committed `Reassign` or `Reassigned` to the topic's record in the controller's
/// metadata (the reconciler then moves this broker's replicas).
pub(super) fn apply(rec: &mut TopicRecord, cmd: Command, index: u64) -> Result<(), ApplyError> {
    let Some((topic, id, partition)) = cmd.reassignment().map(|(t, id, p)| (t.to_string(), id, p))
    else {
        return Err(ApplyError::Other("not a reassignment".into()));
    };
    if rec.id != id {
        return Err(ApplyError::UnknownTopic(topic));
    }
    let Some(p) = usize::try_from(partition)
        .ok()
        .filter(|&p| p < rec.assignments.len())
    else {
        return Err(ApplyError::Other(format!(
            "topic '{topic}' has no partition {partition}"
        )));
    };
    match cmd {
        Command::Reassign {
            target: Some(t), ..
        } => {
            if rec.assignments[p] == t && !rec.moving.contains_key(&partition) {
                rec.targets.remove(&partition);
            } else {
                let moving = rec.moving.entry(partition).or_default();
                for id in rec.assignments[p].iter().chain(&t) {
                    if !moving.contains(id) {
                        moving.push(*id);
                    }
                }
                rec.targets.insert(partition, t);
            }
        }
        Command::Reassign { target: None, .. } => {
            if !rec.targets.contains_key(&partition) {
                return Err(ApplyError::Other(format!(
                    "no reassignment in progress for '{topic}' partition {partition}"
                )));
            }
            // Back to the assignment: the group may already have moved (part of the way), so
            // this is a move like any other, and every replica involved stays until it is done.
            rec.targets.insert(partition, rec.assignments[p].clone());
        }
        Command::Reassigned { replicas, .. } => {
            if rec.targets.get(&partition) != Some(&replicas) {
                return Err(ApplyError::Other(format!(
                    "'{topic}' partition {partition} is no longer moving to {replicas:?}"
                )));
            }
            if rec.initial.is_empty() {
                rec.initial = rec.assignments.clone();
            }
            rec.assignments[p] = replicas;
            rec.targets.remove(&partition);
            rec.moving.remove(&partition);
            tracing::info!(topic, partition, replicas = ?rec.assignments[p], "reassignment complete");
        }
        _ => {}
    }
    rec.changed_at = index;
    Ok(())
}

/// On the controller leader: reassigns replicas off draining brokers, one partition at a
/// time per broker, in a task (proposals go through the controller this is called from).
pub(crate) fn drain(cluster: &std::sync::Arc<Cluster>) {
    if cluster.draining.lock().is_empty() || cluster.drain_task.swap(true, Ordering::AcqRel) {
        return;
    }
    let cluster = cluster.clone();
    tokio::spawn(async move {
        for cmd in drain_moves(&cluster) {
            if let Err(e) = cluster.propose(cmd).await {
                tracing::warn!(error = %e, "moving a replica off a draining broker failed; will retry");
                tokio::time::sleep(Duration::from_secs(1)).await;
                break;
            }
        }
        cluster.drain_task.store(false, Ordering::Release);
    });
}

/// The reassignments that move replicas off draining brokers, spread over the others.
fn drain_moves(cluster: &Cluster) -> Vec<Command> {
    let Some(topics) = cluster.topics.get() else {
        return vec![];
    };
    let draining: Vec<i32> = cluster.draining.lock().iter().copied().collect();
    let brokers: Vec<i32> = cluster
        .placeable_brokers()
        .into_iter()
        .filter(|&id| cluster.members.is_alive(id))
        .collect();
    let records: Vec<TopicRecord> = topics
        .all()
        .iter()
        .filter_map(|t| topics.record(&t.name))
        .collect();
    let mut load: BTreeMap<i32, usize> = BTreeMap::new();
    for r in &records {
        for (p, a) in r.assignments.iter().enumerate() {
            for id in r.targets.get(&(p as i32)).unwrap_or(a) {
                *load.entry(*id).or_default() += 1;
            }
        }
    }
    let mut moves = Vec::new();
    for r in &records {
        for (p, a) in r.assignments.iter().enumerate() {
            let p = p as i32;
            if r.targets.contains_key(&p) {
                continue;
            }
            let Some(&leaving) = a.iter().find(|id| draining.contains(id)) else {
                continue;
            };
            let Some(target) = super::placement::replace(&brokers, a, leaving, &load) else {
                tracing::debug!(topic = %r.name, partition = p, "no live broker can take a replica of a draining broker yet");
                continue;
            };
            for id in &target {
                if !a.contains(id) {
                    *load.entry(*id).or_default() += 1;
                }
            }
            moves.push(Command::Reassign {
                topic: r.name.clone(),
                id: r.id,
                partition: p,
                target: Some(target),
            });
        }
    }
    moves
}
