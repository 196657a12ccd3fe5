//! ListPartitionReassignments: ongoing reassignments as the controller records them, with the
//! replicas being added and removed (Kafka lists the union as `replicas`: target first).

use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

use super::{authorize, sb};
use crate::broker::Broker;
use crate::security::acl::Operation;
use crate::security::Session;
use crate::topics::TopicRecord;

pub fn handle(
    b: &Broker,
    s: &Session,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    if !authorize::cluster(b, s, Operation::Describe) {
        return ListPartitionReassignmentsResponse::default()
            .with_error_code(kafka_protocol::ResponseError::ClusterAuthorizationFailed.code());
    }
    // Which (topic, partitions) to look at; `None` partitions: all of the topic's.
    let wanted: Vec<(String, Option<Vec<i32>>)> = match req.topics {
        Some(ts) => ts
            .into_iter()
            .map(|t| (t.name.to_string(), Some(t.partition_indexes)))
            .collect(),
        None => b
            .topics
            .all()
            .iter()
            .map(|t| (t.name.clone(), None))
            .collect(),
    };
    let mut topics = Vec::new();
    for (name, parts) in wanted {
        // Unknown topics and partitions have no ongoing reassignment (as in Kafka).
        let Some(rec) = b.topics.record(&name) else {
            continue;
        };
        let partitions: Vec<_> = rec
            .targets
            .iter()
            .filter(|(p, _)| parts.as_ref().is_none_or(|ps| ps.contains(p)))
            .filter_map(|(&p, target)| ongoing(&rec, p, target))
            .collect();
        if !partitions.is_empty() {
            topics.push(
                OngoingTopicReassignment::default()
                    .with_name(sb(name).into())
                    .with_partitions(partitions),
            );
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}

fn ongoing(rec: &TopicRecord, p: i32, target: &[i32]) -> Option<OngoingPartitionReassignment> {
    let current = rec.assignments.get(usize::try_from(p).ok()?)?;
    let ids = |v: Vec<i32>| v.into_iter().map(BrokerId).collect::<Vec<_>>();
    // Replicas leaving: the current ones and any a replaced or cancelled target had added.
    let mut removing: Vec<i32> = current
        .iter()
        .copied()
        .filter(|r| !target.contains(r))
        .collect();
    for r in rec.moving.get(&p).into_iter().flatten() {
        if !target.contains(r) && !removing.contains(r) {
            removing.push(*r);
        }
    }
    let mut replicas = target.to_vec();
    replicas.extend(&removing);
    Some(
        OngoingPartitionReassignment::default()
            .with_partition_index(p)
            .with_replicas(ids(replicas))
            .with_adding_replicas(ids(target
                .iter()
                .copied()
                .filter(|r| !current.contains(r))
                .collect()))
            .with_removing_replicas(ids(removing)),
    )
}
