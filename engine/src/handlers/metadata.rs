//! Metadata: brokers, controller and topics; creates missing topics when the cluster allows
//! `auto.create.topics.enable` and the client asks for it.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{sb, topic_name};
use crate::broker::{Broker, BrokerError};
use crate::topics::Topic;

/// Answers `session` with the brokers at the addresses of the listener it connected to.
pub async fn handle(
    b: &Broker,
    session: &crate::security::Session,
    version: i16,
    req: MetadataRequest,
) -> MetadataResponse {
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && version == 0,
    };
    let mut topics = Vec::new();
    if all {
        topics.extend(b.topics.all().iter().map(|t| describe(b, t)));
    } else {
        for rt in req.topics.unwrap_or_default() {
            let found = match &rt.name {
                Some(name) => b.topics.get(name.as_str()),
                None => b.topics.by_id(rt.topic_id),
            };
            topics.push(match (found, rt.name) {
                (Some(t), _) => describe(b, &t),
                (None, Some(name)) => {
                    missing(
                        b,
                        name.as_str(),
                        req.allow_auto_topic_creation || version < 4,
                    )
                    .await
                }
                (None, None) => MetadataResponseTopic::default()
                    .with_topic_id(rt.topic_id)
                    .with_error_code(ResponseError::UnknownTopicId.code()),
            });
        }
    }
    // The group coordinator's topic is internal (the field exists from v1).
    if version >= 1 {
        for t in &mut topics {
            if t.name
                .as_ref()
                .is_some_and(|n| crate::topics::is_internal(n.as_str()))
            {
                t.is_internal = true;
            }
        }
    }
    let brokers = b.listed_brokers(session);
    // Every broker forwards admin requests to the controller leader, so, as KRaft brokers do,
    // a client is sent to a live broker (this one) rather than to the leader itself: a client
    // that cached a leader that then died would wait on it until its request timed out.
    // DescribeCluster names the leader.
    let controller = b.cluster.as_ref().map_or(Some(b.node_id()), |c| {
        c.controller_leader().map(|_| b.node_id())
    });
    MetadataResponse::default()
        .with_brokers(
            brokers
                .into_iter()
                .map(|(id, host, port, rack)| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(id))
                        .with_host(sb(host))
                        .with_port(port as i32)
                        // The field exists from v1.
                        .with_rack(rack.filter(|_| version >= 1).map(sb))
                })
                .collect(),
        )
        .with_cluster_id(Some(sb(b.topics.cluster_id.clone())))
        .with_controller_id(BrokerId(controller.unwrap_or(-1)))
        .with_topics(topics)
}

pub(crate) fn describe(b: &Broker, t: &Arc<Topic>) -> MetadataResponseTopic {
    let partitions = (0..t.partitions.len() as i32)
        .map(|p| {
            let (leader, epoch) = b.partition_leader_epoch(t, p);
            let leader = BrokerId(leader);
            let replicas = match t.assignments.get(p as usize) {
                Some(r) => r.iter().map(|&id| BrokerId(id)).collect(),
                None => vec![leader],
            };
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(leader)
                .with_leader_epoch(epoch)
                .with_replica_nodes(replicas)
                .with_isr_nodes(
                    b.isr(t, p, leader.0, epoch)
                        .into_iter()
                        .map(BrokerId)
                        .collect(),
                )
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&t.name)))
        .with_topic_id(t.id)
        .with_partitions(partitions)
        .with_topic_authorized_operations(i32::MIN)
}

async fn missing(b: &Broker, name: &str, client_allows: bool) -> MetadataResponseTopic {
    let unknown = MetadataResponseTopic::default()
        .with_name(Some(topic_name(name)))
        .with_topic_id(Uuid::nil());
    if !(b.defaults().auto_create_topics && client_allows) {
        return unknown.with_error_code(ResponseError::UnknownTopicOrPartition.code());
    }
    let created = match b.plan_topic(name, -1, -1, &[]) {
        Ok(rec) => b.create_topic(rec).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(t) => describe(b, &t),
        // Lost a race with another creator: describe what exists.
        Err(BrokerError::TopicExists(_)) => match b.topics.get(name) {
            Some(t) => describe(b, &t),
            None => unknown.with_error_code(ResponseError::LeaderNotAvailable.code()),
        },
        Err(BrokerError::InvalidTopicName(_)) => {
            unknown.with_error_code(ResponseError::InvalidTopicException.code())
        }
        Err(e) => {
            tracing::warn!(topic = name, error = %e, "auto-creating topic failed");
            unknown.with_error_code(ResponseError::LeaderNotAvailable.code())
        }
    }
}
