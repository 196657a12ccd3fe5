//! TxnOffsetCommit (v0-5): a transactional producer's consumer offsets, written to the group's
//! `__consumer_offsets` partition as one transactional batch and kept pending until the
//! transaction ends (`crate::group::Coordinator::txn_commit`). v2 adds the leader epoch, v3
//! the member fields fenced as KIP-447 says (absent before: generation -1, no member).

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::group_error::per_partition;
use crate::broker::Broker;
use crate::group::{CommitPartition, TxnCommitRequest};

pub async fn handle(
    b: &Broker,
    version: i16,
    req: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let parts = t
                .partitions
                .into_iter()
                .map(|p| CommitPartition {
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: if version >= 2 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    },
                    metadata: p.committed_metadata.map(|m| m.to_string()),
                })
                .collect();
            (t.name.to_string(), parts)
        })
        .collect();
    let (generation, member_id, instance_id) = if version >= 3 {
        (
            req.generation_id,
            req.member_id.to_string(),
            req.group_instance_id.map(|s| s.to_string()),
        )
    } else {
        (-1, String::new(), None)
    };
    let answers = b
        .groups
        .txn_commit(
            b,
            req.group_id.as_str(),
            TxnCommitRequest {
                transactional_id: req.transactional_id.to_string(),
                producer_id: req.producer_id.0,
                producer_epoch: req.producer_epoch,
                generation,
                member_id,
                instance_id,
                topics,
            },
        )
        .await;
    TxnOffsetCommitResponse::default().with_topics(per_partition(
        answers,
        |name, ps| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(name)
                .with_partitions(ps)
        },
        |p, c| {
            TxnOffsetCommitResponsePartition::default()
                .with_partition_index(p)
                .with_error_code(c)
        },
    ))
}
