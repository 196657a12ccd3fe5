//! A single broker's data directory becoming the first broker of a cluster, keeping its topics,
//! their offsets and its consumer groups' committed offsets.
//!
//! On the first start with `--seeds` over a directory that holds topics of a single broker
//! (records without replica assignments), each such topic becomes an RF 1 topic on this broker
//! under the same id: every partition gets a Raft checkpoint saying its segments already hold
//! everything up to their end (so the partition's new Raft group starts from them instead of
//! rebuilding them from an empty log), and the record, marked `adopted`, is persisted with the
//! assignment. A task then proposes each adopted record to the controller; until the controller
//! has it the reconciler never deletes it. Once created there it is an ordinary topic: more
//! replicas come by reassignment (`icestream cluster reassign`, or Kafka's tools), copied from
//! this broker's segments.
//!
//! Only a founding broker (one of its own seeds) adopts: a broker joining an existing cluster
//! with topics of its own is refused at start, since the cluster may have topics of the same
//! names.

use std::sync::Arc;
use std::time::Duration;

use crate::broker::{Broker, StartError};
use crate::cluster::{ApplyError, Command};
use crate::raft::checkpoint::Checkpoint;
use crate::topics::TopicRecord;

/// Turns the single broker's records among `records` into adopted RF 1 records of this broker
/// (in place), writing each partition's Raft checkpoint first; returns the names changed (to
/// be persisted). A record adopted on an earlier start that the controller does not have yet
/// is left as it is.
pub fn prepare(
    b: &Broker,
    records: &mut [TopicRecord],
    founder: bool,
) -> Result<Vec<String>, StartError> {
    let me = b.node_id();
    let single: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].assignments.is_empty())
        .collect();
    if single.is_empty() {
        return Ok(vec![]);
    }
    if !founder {
        let names: Vec<&str> = single.iter().map(|&i| records[i].name.as_str()).collect();
        return Err(StartError::Adopt(format!(
            "this data directory holds topics of a single broker ({}), and this broker joins an \
             existing cluster, which may have topics of the same names. Start it as one of its \
             own --seeds to found a new cluster with these topics, or start it with an empty \
             --data-dir",
            names.join(", ")
        )));
    }
    for &i in &single {
        let rec = &mut records[i];
        for p in 0..rec.partitions {
            write_checkpoint(b, rec, p, me)?;
        }
        rec.assignments = vec![vec![me]; rec.partitions.max(0) as usize];
        rec.replication_factor = 1;
        rec.adopted = true;
        tracing::info!(topic = %rec.name, partitions = rec.partitions, "adopting a single broker's topic into the cluster");
    }
    Ok(single.iter().map(|&i| records[i].name.clone()).collect())
}

/// The checkpoint of partition `p`: its segments hold everything up to their end, as of Raft
/// index 1 of a group whose only voter is this broker.
fn write_checkpoint(b: &Broker, rec: &TopicRecord, p: i32, me: i32) -> Result<(), StartError> {
    let failed = |e: String| StartError::Adopt(format!("topic '{}' partition {p}: {e}", rec.name));
    let dir = b.topic_dir(&rec.name).map_err(|e| failed(e.to_string()))?;
    let resolved = crate::topics::TopicTable::resolve(rec, &b.defaults());
    let log = crate::log::PartitionLog::open(
        &dir.join(p.to_string()),
        resolved.log,
        crate::time::now_ms(),
    )
    .map_err(|e| failed(e.to_string()))?;
    let raft_dir = b.raft_dir(rec, p).map_err(|e| failed(e.to_string()))?;
    crate::log::power::create_dir_all(&raft_dir).map_err(|e| failed(e.to_string()))?;
    let cp = Checkpoint {
        index: 1,
        term: 1,
        conf: raft::eraftpb::ConfState::from((vec![me as u64], vec![])),
        offset: log.next_offset(),
        first_file: 0,
        state: Default::default(),
    };
    cp.write(&raft_dir).map_err(|e| failed(e.to_string()))
}

/// Proposes every adopted record to the controller until it has them all.
pub fn propose(b: &Arc<Broker>) {
    let Some(cluster) = b.cluster.clone() else {
        return;
    };
    let pending: Vec<TopicRecord> = b
        .topics
        .records()
        .into_iter()
        .filter(|r| r.adopted)
        .collect();
    if pending.is_empty() {
        return;
    }
    let weak = Arc::downgrade(b);
    tokio::spawn(async move {
        let mut pending = pending;
        while !pending.is_empty() {
            let mut left = Vec::new();
            for rec in pending {
                let mut cmd_rec = rec.clone();
                cmd_rec.adopted = false;
                match cluster.propose(Command::CreateTopic(cmd_rec)).await {
                    Ok(()) => {
                        tracing::info!(topic = %rec.name, "adopted topic created in the cluster")
                    }
                    Err(ApplyError::TopicExists(_)) => {
                        let same = weak
                            .upgrade()
                            .and_then(|b| b.topics.record(&rec.name))
                            .is_some_and(|r| r.id == rec.id && !r.adopted);
                        if !same {
                            tracing::error!(topic = %rec.name, "another broker's topic of the same name is in the cluster; this broker keeps its own, unserved by the others, until it is renamed or deleted");
                        }
                    }
                    Err(e) => {
                        tracing::debug!(topic = %rec.name, error = %e, "proposing an adopted topic failed; will retry");
                        left.push(rec);
                    }
                }
            }
            pending = left;
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
}
