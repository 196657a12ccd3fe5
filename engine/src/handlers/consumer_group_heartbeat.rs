//! ConsumerGroupHeartbeat (KIP-848): joins, heartbeats and leaves of consumer-protocol members.
//! The state machine is `crate::group::consumer`; this maps the wire format. v0 lets the
//! coordinator pick a member id for a member that sends none; from v1 the client picks it.

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, RequestHeader,
};

use super::group_error::code;
use kafka_protocol::ResponseError;

use super::authorize::{self, Decisions};
use super::sb;
use crate::broker::Broker;
use crate::group::consumer::HeartbeatRequest;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;

pub async fn handle(
    b: &Broker,
    s: &Session,
    h: &RequestHeader,
    version: i16,
    req: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    // READ on the group, DESCRIBE on every topic it subscribes to by name (as Kafka 4).
    let denied =
        |e: ResponseError| ConsumerGroupHeartbeatResponse::default().with_error_code(e.code());
    if !authorize::group(b, s, Operation::Read, req.group_id.as_str()) {
        return denied(ResponseError::GroupAuthorizationFailed);
    }
    let mut describable = Decisions::new(b, s, Operation::Describe, ResourceType::Topic);
    if let Some(ts) = &req.subscribed_topic_names {
        if ts.iter().any(|t| !describable.allows(t.as_str())) {
            return denied(ResponseError::TopicAuthorizationFailed);
        }
    }
    let mut member_id = req.member_id.to_string();
    if version == 0 && member_id.is_empty() && req.member_epoch == 0 {
        member_id = uuid::Uuid::new_v4().to_string();
    }
    let r = HeartbeatRequest {
        member_id,
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.map(|s| s.to_string()),
        rack_id: req.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed: req
            .subscribed_topic_names
            .map(|ts| ts.into_iter().map(|t| t.to_string()).collect()),
        regex: req.subscribed_topic_regex.map(|s| s.to_string()),
        server_assignor: req.server_assignor.map(|s| s.to_string()),
        owned: req.topic_partitions.map(|ts| {
            ts.into_iter()
                .flat_map(|t| {
                    let id = t.topic_id;
                    t.partitions.into_iter().map(move |p| (id, p))
                })
                .collect()
        }),
        client_id: h
            .client_id
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default(),
        client_host: String::new(),
    };
    let res = b
        .groups
        .consumer_heartbeat(b, req.group_id.as_str(), r)
        .await;
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(code(res.error))
        .with_error_message(res.message.map(sb))
        .with_member_id(Some(sb(res.member_id)))
        .with_member_epoch(res.member_epoch)
        .with_heartbeat_interval_ms(res.heartbeat_interval_ms)
        .with_assignment(res.assignment.map(|a| {
            let mut topics: Vec<TopicPartitions> = Vec::new();
            for (id, p) in a {
                match topics.last_mut() {
                    Some(t) if t.topic_id == id => t.partitions.push(p),
                    _ => topics.push(
                        TopicPartitions::default()
                            .with_topic_id(id)
                            .with_partitions(vec![p]),
                    ),
                }
            }
            Assignment::default().with_topic_partitions(topics)
        }))
}
