//! OffsetCommit: generation and member checks (Kafka's rules, simple commits with generation
//! -1 for empty groups; for KIP-848 groups v9 carries the member epoch, STALE_MEMBER_EPOCH),
//! then an acks=all append to `__consumer_offsets` before the answer.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use kafka_protocol::ResponseError;

use super::authorize;
use super::group_error::per_partition;
use crate::broker::Broker;
use crate::group::{CommitPartition, CommitRequest, PartitionResults};
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;

pub async fn handle(
    b: &Broker,
    s: &Session,
    version: i16,
    req: OffsetCommitRequest,
) -> OffsetCommitResponse {
    // READ on the group (every partition fails without it), then on each topic (as Kafka).
    let group_denied = !authorize::group(b, s, Operation::Read, req.group_id.as_str());
    let (allowed, denied) = if group_denied {
        (Vec::new(), req.topics)
    } else {
        authorize::split(
            b,
            s,
            Operation::Read,
            ResourceType::Topic,
            req.topics,
            |t| t.name.as_str(),
        )
    };
    let code = if group_denied {
        ResponseError::GroupAuthorizationFailed
    } else {
        ResponseError::TopicAuthorizationFailed
    }
    .code();
    let denied: Vec<_> = denied
        .into_iter()
        .map(|t| {
            let ps = t.partitions.iter().map(|p| (p.partition_index, code));
            (t.name.to_string(), ps.collect::<Vec<_>>())
        })
        .collect();
    let topics: Vec<_> = allowed
        .into_iter()
        .map(|t| {
            let parts = t
                .partitions
                .into_iter()
                .map(|p| CommitPartition {
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: if version >= 6 {
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
    let instance = if version >= 7 {
        req.group_instance_id.map(|s| s.to_string())
    } else {
        None
    };
    let answers = if topics.is_empty() && !denied.is_empty() {
        PartitionResults::new()
    } else {
        b.groups
            .commit(
                b,
                req.group_id.as_str(),
                CommitRequest {
                    version,
                    generation: req.generation_id_or_member_epoch,
                    member_id: req.member_id.to_string(),
                    instance_id: instance,
                    topics,
                },
            )
            .await
    };
    let mut responses = per_partition(
        answers,
        |name, ps| {
            OffsetCommitResponseTopic::default()
                .with_name(name)
                .with_partitions(ps)
        },
        |p, c| {
            OffsetCommitResponsePartition::default()
                .with_partition_index(p)
                .with_error_code(c)
        },
    );
    responses.extend(authorize::denied_topics(denied, |name, ps| {
        OffsetCommitResponseTopic::default()
            .with_name(name)
            .with_partitions(
                ps.into_iter()
                    .map(|(p, c)| {
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p)
                            .with_error_code(c)
                    })
                    .collect(),
            )
    }));
    OffsetCommitResponse::default().with_topics(responses)
}
