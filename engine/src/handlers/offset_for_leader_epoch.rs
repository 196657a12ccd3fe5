//! OffsetForLeaderEpoch: where a leader epoch ended, so clients can detect truncation.
//!
//! Consumers (librdkafka, the Java client) ask it whenever a partition's leader epoch changes
//! under a fetch position (KIP-320), and retry on UNKNOWN_LEADER_EPOCH until the answer is
//! clean: the leader must accept its own current epoch, which in a cluster is the Raft term
//! (1 and up). It answers as Kafka's leader does: NOT_LEADER_OR_FOLLOWER elsewhere, the
//! client's `current_leader_epoch` (-1: unchecked) FENCED_LEADER_EPOCH when older than the
//! leader's and UNKNOWN_LEADER_EPOCH when newer.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;

use super::authorize::{self, Decisions};
use super::partition_error;
use crate::broker::Broker;
use crate::partition::Cmd;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;

pub async fn handle(
    b: &Broker,
    s: &Session,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    // Replicas may ask about any topic; consumers need DESCRIBE on it (as Kafka).
    let replica = authorize::enabled(b) && authorize::cluster(b, s, Operation::ClusterAction);
    let mut describe = Decisions::new(b, s, Operation::Describe, ResourceType::Topic);
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let denied = !replica && !describe.allows(t.topic.as_str());
        let topic = b.topics.get(t.topic.as_str()).filter(|_| !denied);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let r = EpochEndOffset::default()
                .with_partition(p.partition)
                .with_leader_epoch(-1)
                .with_end_offset(-1);
            let Some(h) = topic.as_ref().and_then(|t| t.partition(p.partition)) else {
                partitions.push(r.with_error_code(authorize::unserved(denied)));
                continue;
            };
            let (leader, current) = topic
                .as_ref()
                .map_or((-1, -1), |t| b.partition_leader_epoch(t, p.partition));
            let refused = if leader != b.node_id() {
                Some(ResponseError::NotLeaderOrFollower)
            } else if p.current_leader_epoch >= 0 && p.current_leader_epoch < current {
                Some(ResponseError::FencedLeaderEpoch)
            } else if p.current_leader_epoch > current {
                Some(ResponseError::UnknownLeaderEpoch)
            } else {
                None
            };
            if let Some(e) = refused {
                partitions.push(r.with_error_code(e.code()));
                continue;
            }
            let epoch = p.leader_epoch;
            partitions.push(match h.ask(|reply| Cmd::EpochEnd { epoch, reply }).await {
                Ok(Some((e, end))) => r.with_leader_epoch(e).with_end_offset(end),
                Ok(None) => r,
                Err(e) => r.with_error_code(partition_error(&e)),
            });
        }
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions),
        );
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
