//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4, KIP-405),
//! the last stable offset for read_committed's latest, and the first offset at or after a
//! timestamp, looked up in the remote tier first when the
//! log starts there.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::authorize::{self, Decisions};
use super::partition_error;
use crate::broker::Broker;
use crate::partition::{Cmd, OffsetQuery};
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;

pub async fn handle(
    b: &Broker,
    s: &Session,
    version: i16,
    req: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let req_committed = req.isolation_level == 1;
    let mut describe = Decisions::new(b, s, Operation::Describe, ResourceType::Topic);
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let denied = !describe.allows(t.name.as_str());
        let topic = b.topics.get(t.name.as_str()).filter(|_| !denied);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let r = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1);
            let Some(h) = topic.as_ref().and_then(|t| t.partition(p.partition_index)) else {
                partitions.push(r.with_error_code(authorize::unserved(denied)));
                continue;
            };
            let query = match p.timestamp {
                -2 => OffsetQuery::Earliest,
                -4 => OffsetQuery::EarliestLocal,
                // isolation_level 1 (read_committed): the last stable offset.
                -1 if req_committed => OffsetQuery::LatestStable,
                -1 => OffsetQuery::Latest,
                -3 => OffsetQuery::MaxTimestamp,
                ts if ts >= 0 => OffsetQuery::Timestamp(ts),
                _ => {
                    partitions.push(r.with_error_code(ResponseError::InvalidRequest.code()));
                    continue;
                }
            };
            let remote = match query {
                OffsetQuery::Timestamp(ts) => {
                    remote_offset(b, &t.name, topic.as_deref(), p.partition_index, h, ts).await
                }
                _ => Ok(None),
            };
            let answer = match remote {
                Ok(Some(found)) => Ok(Some(found)),
                Ok(None) => h.ask(|reply| Cmd::Offsets { query, reply }).await,
                Err(code) => {
                    partitions.push(r.with_error_code(code));
                    continue;
                }
            };
            partitions.push(match answer {
                // The leader epoch field exists from v4.
                Ok(Some((offset, ts))) if version >= 4 => r
                    .with_offset(offset)
                    .with_timestamp(ts)
                    .with_leader_epoch(0),
                Ok(Some((offset, ts))) => r.with_offset(offset).with_timestamp(ts),
                // No record at or after the timestamp: Kafka answers offset -1.
                Ok(None) => r,
                Err(e) => r.with_error_code(partition_error(&e)),
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// The first remote offset at or after `ts`, when the partition's log starts in the remote
/// tier; `Err` carries the Kafka error code when the object store cannot answer.
async fn remote_offset(
    b: &Broker,
    name: &str,
    topic: Option<&crate::topics::Topic>,
    partition: i32,
    h: &crate::partition::PartitionHandle,
    ts: i64,
) -> Result<Option<(i64, i64)>, i16> {
    let marks = *h.marks.borrow();
    let (Some(tier), Some(topic)) = (&b.remote, topic) else {
        return Ok(None);
    };
    if marks.log_start >= marks.local_start {
        return Ok(None);
    }
    let id = crate::remote::RemotePartition {
        topic: name.to_string(),
        topic_id: topic.id,
        partition,
    };
    match tier.offset_for_timestamp(&id, ts).await {
        Ok(found) => Ok(found.filter(|&(o, _)| o >= marks.log_start)),
        Err(e) => {
            tracing::warn!(topic = name, partition, error = %e, "remote timestamp lookup failed");
            Err(ResponseError::KafkaStorageError.code())
        }
    }
}
