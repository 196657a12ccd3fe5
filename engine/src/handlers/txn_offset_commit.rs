//! TxnOffsetCommit (v0-5): a transactional producer's consumer offsets, written to the group's
//! `__consumer_offsets` partition as one transactional batch and kept pending until the
//! transaction ends (`crate::group::Coordinator::txn_commit`). v2 adds the leader epoch, v3
//! the member fields fenced as KIP-447 says (absent before: generation -1, no member). v5 is
//! transaction protocol v2 (KIP-890 part 2) once the cluster finalized `transaction.version`
//! 2: the producer sent no AddOffsetsToTxn, so the group's `__consumer_offsets` partition is
//! added to its transaction here before the offsets are written, as a partition leader adds
//! its partition on a Produce (`broker::txn_verify::add`).

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kafka_protocol::ResponseError;

use super::authorize;
use super::group_error::{self, per_partition};
use crate::broker::Broker;
use crate::group::store::{self, OFFSETS_TOPIC};
use crate::group::{CommitPartition, TxnCommitRequest};
use crate::partition::verify::VerifyError;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;

/// Transaction protocol v2: adds the group's `__consumer_offsets` partition to the producer's
/// transaction (once this broker is known to coordinate the group); the error code otherwise.
async fn add_offsets_partition(b: &Broker, req: &TxnOffsetCommitRequest) -> Result<(), i16> {
    let group = req.group_id.as_str();
    if group.is_empty() {
        return Ok(()); // refused below, as before
    }
    b.groups
        .check(b, group)
        .map_err(|e| group_error::code(Some(e)))?;
    let t = store::topic(b).await.map_err(|e| {
        tracing::warn!(error = %e, "cannot create {OFFSETS_TOPIC} for a transaction");
        ResponseError::CoordinatorNotAvailable.code()
    })?;
    let p = store::partition_for(group, t.partitions.len());
    crate::broker::txn_verify::add(
        b,
        req.transactional_id.as_str(),
        OFFSETS_TOPIC,
        p,
        req.producer_id.0,
        req.producer_epoch,
    )
    .await
    .map_err(|e| {
        tracing::debug!(group, error = %e, "cannot add the offsets to the transaction");
        match e {
            VerifyError::NotInTransaction => ResponseError::InvalidTxnState,
            VerifyError::Fenced => ResponseError::InvalidProducerEpoch,
            // Retriable: the client finds the coordinator again and retries.
            VerifyError::Unavailable(_) => ResponseError::CoordinatorNotAvailable,
        }
        .code()
    })
}

/// Every partition of `topics` answered with `code`.
fn all_failed(
    topics: &[kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequestTopic],
    code: i16,
) -> Vec<TxnOffsetCommitResponseTopic> {
    topics
        .iter()
        .map(|t| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect()
}

pub async fn handle(
    b: &Broker,
    s: &Session,
    version: i16,
    mut req: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let failed = |topics, e: ResponseError| {
        TxnOffsetCommitResponse::default().with_topics(all_failed(topics, e.code()))
    };
    // WRITE on the transactional id, READ on the group, then READ on each topic (as Kafka).
    if !authorize::transactional_id(b, s, Operation::Write, req.transactional_id.as_str()) {
        return failed(
            &req.topics,
            ResponseError::TransactionalIdAuthorizationFailed,
        );
    }
    if !authorize::group(b, s, Operation::Read, req.group_id.as_str()) {
        return failed(&req.topics, ResponseError::GroupAuthorizationFailed);
    }
    let (allowed, denied) = authorize::split(
        b,
        s,
        Operation::Read,
        ResourceType::Topic,
        std::mem::take(&mut req.topics),
        |t| t.name.as_str(),
    );
    let denied = all_failed(&denied, ResponseError::TopicAuthorizationFailed.code());
    if allowed.is_empty() && !denied.is_empty() {
        return TxnOffsetCommitResponse::default().with_topics(denied);
    }
    req.topics = allowed;
    if version >= 5 && b.transaction_version() >= 2 {
        if let Err(code) = add_offsets_partition(b, &req).await {
            let mut topics = all_failed(&req.topics, code);
            topics.extend(denied);
            return TxnOffsetCommitResponse::default().with_topics(topics);
        }
    }
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
    let mut topics = per_partition(
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
    );
    topics.extend(denied);
    TxnOffsetCommitResponse::default().with_topics(topics)
}
