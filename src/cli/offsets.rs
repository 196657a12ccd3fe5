//! Looking up a topic's partitions and their earliest/latest offsets.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::client::Client;
use super::errors::topic_error;

/// ListOffsets timestamp for the log start offset.
pub const EARLIEST: i64 = -2;
/// ListOffsets timestamp for the high watermark.
pub const LATEST: i64 = -1;

/// One partition as the metadata describes it.
#[derive(Debug, Clone)]
pub struct PartitionInfo {
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub error_code: i16,
}

/// A topic as the metadata describes it.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub name: String,
    pub topic_id: String,
    pub internal: bool,
    /// Sorted by partition.
    pub partitions: Vec<PartitionInfo>,
}

/// Metadata for one existing topic, or the one-line "does not exist" error.
pub async fn topic_info(client: &mut Client, topic: &str, action: &str) -> Result<TopicInfo> {
    let md = client.metadata(Some(&[topic.to_string()])).await?;
    let Some(t) = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic))
    else {
        return Err(topic_error(action, topic, 3, None));
    };
    if t.error_code != 0 {
        return Err(topic_error(action, topic, t.error_code, None));
    }
    let mut partitions: Vec<PartitionInfo> = t
        .partitions
        .iter()
        .map(|p| PartitionInfo {
            partition: p.partition_index,
            leader: p.leader_id.0,
            replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
            isr: p.isr_nodes.iter().map(|b| b.0).collect(),
            error_code: p.error_code,
        })
        .collect();
    partitions.sort_by_key(|p| p.partition);
    Ok(TopicInfo {
        name: topic.to_string(),
        topic_id: if t.topic_id.is_nil() {
            String::new()
        } else {
            t.topic_id.to_string()
        },
        internal: t.is_internal,
        partitions,
    })
}

/// The offset at `timestamp` (`EARLIEST`/`LATEST`) of each partition, asked of each
/// partition's leader; a partition maps to `Err(error code)` when it has no answer.
pub async fn list_offsets(
    client: &mut Client,
    topic: &str,
    partitions: &[PartitionInfo],
    timestamp: i64,
) -> Result<BTreeMap<i32, Result<i64, i16>>> {
    let mut out = BTreeMap::new();
    let mut by_leader: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in partitions {
        if p.leader < 0 {
            out.insert(p.partition, Err(5)); // LEADER_NOT_AVAILABLE
        } else {
            by_leader.entry(p.leader).or_default().push(p.partition);
        }
    }
    for (leader, parts) in by_leader {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(
                    parts
                        .iter()
                        .map(|&p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(p)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                )]);
        let resp = client.node(leader).await?.send(&req).await?;
        for t in resp.topics.iter().filter(|t| t.name.0.as_str() == topic) {
            for p in &t.partitions {
                let v = if p.error_code == 0 {
                    Ok(p.offset)
                } else {
                    Err(p.error_code)
                };
                out.insert(p.partition_index, v);
            }
        }
        for p in parts {
            out.entry(p).or_insert(Err(-1));
        }
    }
    Ok(out)
}
