//! DescribeTopicPartitions (KIP-966), which Kafka 4's AdminClient.describeTopics and
//! `kafka-topics --describe` use: the named topics (or all, by name) with their partitions'
//! leaders, replicas and in-sync replicas, paged by `response_partition_limit` and a cursor.
//! Icestream has no eligible leader replicas (Raft elects leaders), so those lists are empty.

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse};
use kafka_protocol::ResponseError;

use super::authorize::{self, Decisions};
use super::{metadata, topic_name};
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;

/// Kafka's `max.request.partition.size.limit` default.
const MAX_PARTITIONS: i32 = 2000;

pub fn handle(
    b: &Broker,
    s: &Session,
    req: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    // DESCRIBE on each topic: all topics leave out the others, named ones answer
    // TOPIC_AUTHORIZATION_FAILED (checked before existence, so nothing is disclosed).
    let mut describe = Decisions::new(b, s, Operation::Describe, ResourceType::Topic);
    let mut names: Vec<String> = if req.topics.is_empty() {
        b.topics
            .all()
            .iter()
            .map(|t| t.name.clone())
            .filter(|n| describe.allows(n))
            .collect()
    } else {
        req.topics
            .iter()
            .map(|t| t.name.as_str().to_string())
            .collect()
    };
    names.sort();
    names.dedup();
    let limit = match req.response_partition_limit {
        n if n <= 0 || n > MAX_PARTITIONS => MAX_PARTITIONS,
        n => n,
    } as usize;
    let (start_topic, mut start_partition) = match &req.cursor {
        Some(c) => (
            Some(c.topic_name.as_str().to_string()),
            c.partition_index.max(0),
        ),
        None => (None, 0),
    };
    let mut topics = Vec::new();
    let mut count = 0usize;
    let mut next_cursor = None;
    for name in names
        .into_iter()
        .filter(|n| start_topic.as_ref().is_none_or(|s| n >= s))
    {
        if count >= limit {
            next_cursor = Some(
                Cursor::default()
                    .with_topic_name(topic_name(&name))
                    .with_partition_index(0),
            );
            break;
        }
        if !describe.allows(&name) {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(topic_name(&name)))
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                    .with_topic_authorized_operations(authorize::OPERATIONS_OMITTED),
            );
            continue;
        }
        let Some(t) = b.topics.get(&name) else {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(topic_name(&name)))
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
            );
            continue;
        };
        let md = metadata::describe(b, &t);
        let mut partitions = Vec::new();
        for p in md.partitions.into_iter().skip(start_partition as usize) {
            if count >= limit {
                next_cursor = Some(
                    Cursor::default()
                        .with_topic_name(topic_name(&name))
                        .with_partition_index(p.partition_index),
                );
                break;
            }
            count += 1;
            partitions.push(
                DescribeTopicPartitionsResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_leader_id(p.leader_id)
                    .with_leader_epoch(p.leader_epoch)
                    .with_replica_nodes(p.replica_nodes)
                    .with_isr_nodes(p.isr_nodes)
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new()))
                    .with_offline_replicas(p.offline_replicas),
            );
        }
        start_partition = 0;
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(topic_name(&name)))
                .with_topic_id(t.id)
                .with_is_internal(crate::topics::is_internal(&name))
                .with_partitions(partitions)
                .with_topic_authorized_operations(authorize::operations(
                    b,
                    s,
                    ResourceType::Topic,
                    &name,
                )),
        );
        if next_cursor.is_some() {
            break;
        }
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor)
}
