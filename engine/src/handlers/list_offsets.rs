//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4, the same as
//! earliest until tiered storage), and the first offset at or after a timestamp.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::partition_error;
use crate::broker::Broker;
use crate::partition::{Cmd, OffsetQuery};

pub async fn handle(b: &Broker, version: i16, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = b.topics.get(t.name.as_str());
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let r = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1);
            let Some(h) = topic.as_ref().and_then(|t| t.partition(p.partition_index)) else {
                partitions.push(r.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            let query = match p.timestamp {
                -2 | -4 => OffsetQuery::Earliest,
                -1 => OffsetQuery::Latest,
                -3 => OffsetQuery::MaxTimestamp,
                ts if ts >= 0 => OffsetQuery::Timestamp(ts),
                _ => {
                    partitions.push(r.with_error_code(ResponseError::InvalidRequest.code()));
                    continue;
                }
            };
            partitions.push(match h.ask(|reply| Cmd::Offsets { query, reply }).await {
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
