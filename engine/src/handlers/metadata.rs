//! Metadata: brokers, controller and topics; creates missing topics when the cluster allows
//! `auto.create.topics.enable` and the client asks for it.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::authorize::{self, Decisions};
use super::{sb, topic_name};
use crate::broker::{Broker, BrokerError};
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;
use crate::topics::Topic;

/// Answers `s` with the brokers at the addresses of the listener it connected to, and the
/// topics it may describe.
pub async fn handle(
    b: &Broker,
    s: &Session,
    version: i16,
    req: MetadataRequest,
) -> MetadataResponse {
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && version == 0,
    };
    // DESCRIBE on a topic shows it: all topics leave out the others, and a named topic the
    // client may not describe answers TOPIC_AUTHORIZATION_FAILED whether it exists or not.
    let mut describable = Decisions::new(b, s, Operation::Describe, ResourceType::Topic);
    let denied = || {
        MetadataResponseTopic::default()
            .with_error_code(ResponseError::TopicAuthorizationFailed.code())
            .with_topic_id(Uuid::nil())
    };
    // Whose operations to fill in: the topics this broker describes (not the errors).
    let mut shown = Vec::new();
    let mut topics = Vec::new();
    if all {
        for t in b
            .topics
            .all()
            .iter()
            .filter(|t| describable.allows(&t.name))
        {
            shown.push(topics.len());
            topics.push(describe(b, t));
        }
    } else {
        for rt in req.topics.unwrap_or_default() {
            let found = match &rt.name {
                Some(name) => b.topics.get(name.as_str()),
                None => b.topics.by_id(rt.topic_id),
            };
            let name = rt.name.as_ref().map(|n| n.as_str().to_string());
            let Some(name) = name.or_else(|| found.as_ref().map(|t| t.name.clone())) else {
                topics.push(
                    MetadataResponseTopic::default()
                        .with_topic_id(rt.topic_id)
                        .with_error_code(ResponseError::UnknownTopicId.code()),
                );
                continue;
            };
            if !describable.allows(&name) {
                // By id: the id is no secret, the name is (as Kafka).
                topics.push(match rt.name {
                    Some(n) => denied().with_name(Some(n)),
                    None => denied().with_topic_id(rt.topic_id),
                });
                continue;
            }
            if found.is_some() {
                shown.push(topics.len());
            }
            topics.push(match (found, rt.name) {
                (Some(t), _) => describe(b, &t),
                (None, Some(name)) => {
                    let asked = req.allow_auto_topic_creation || version < 4;
                    // Auto-creation needs CREATE on the cluster or the topic.
                    if asked
                        && b.defaults().auto_create_topics
                        && !authorize::cluster(b, s, Operation::Create)
                        && !authorize::allowed(
                            b,
                            s,
                            Operation::Create,
                            ResourceType::Topic,
                            name.as_str(),
                        )
                    {
                        topics.push(denied().with_name(Some(name)));
                        continue;
                    }
                    let t = missing(b, name.as_str(), asked).await;
                    if t.error_code == 0 {
                        shown.push(topics.len());
                    }
                    t
                }
                (None, None) => MetadataResponseTopic::default()
                    .with_topic_id(rt.topic_id)
                    .with_error_code(ResponseError::UnknownTopicId.code()),
            });
        }
    }
    if version >= 8 && req.include_topic_authorized_operations {
        for i in shown {
            let t = &mut topics[i];
            if let Some(name) = &t.name {
                t.topic_authorized_operations =
                    authorize::operations(b, s, ResourceType::Topic, name.as_str());
            }
        }
    }
    // Metadata v8-v10 carry the cluster's (DescribeCluster does from v11).
    let cluster_operations =
        if (8..=10).contains(&version) && req.include_cluster_authorized_operations {
            if authorize::cluster(b, s, Operation::Describe) {
                authorize::operations(b, s, ResourceType::Cluster, authorize::CLUSTER_NAME)
            } else {
                0
            }
        } else {
            authorize::OPERATIONS_OMITTED
        };
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
    let brokers = b.listed_brokers(s).await;
    // Every broker forwards admin requests to the controller leader, so, as KRaft brokers do,
    // a client is sent to a live broker (this one) rather than to the leader itself: a client
    // that cached a leader that then died would wait on it until its request timed out. This
    // broker is named even while no leader is known (an election after a restart): proposals
    // wait for one here, whereas librdkafka, told -1, parks its admin requests until they time
    // out without asking again. DescribeCluster names the leader.
    let controller = b.node_id();
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
        .with_controller_id(BrokerId(controller))
        .with_topics(topics)
        .with_cluster_authorized_operations(cluster_operations)
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
