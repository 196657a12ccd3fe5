//! OffsetDelete: removes a group's committed offsets for topics its members are not
//! subscribed to (GROUP_SUBSCRIBED_TO_TOPIC otherwise).

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use kafka_protocol::ResponseError;

use super::authorize;
use super::group_error::{code, per_partition};
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;

pub async fn handle(b: &Broker, s: &Session, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    // DELETE on the group, then READ on each topic (as Kafka).
    if !authorize::group(b, s, Operation::Delete, req.group_id.as_str()) {
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let (allowed, denied) = authorize::split(
        b,
        s,
        Operation::Read,
        ResourceType::Topic,
        req.topics,
        |t| t.name.as_str(),
    );
    let denied: Vec<_> = denied
        .into_iter()
        .map(|t| {
            let code = ResponseError::TopicAuthorizationFailed.code();
            let ps = t.partitions.iter().map(|p| (p.partition_index, code));
            (t.name.to_string(), ps.collect::<Vec<_>>())
        })
        .collect();
    let topics = allowed
        .into_iter()
        .map(|t| {
            (
                t.name.to_string(),
                t.partitions
                    .into_iter()
                    .map(|p| p.partition_index)
                    .collect(),
            )
        })
        .collect();
    match b
        .groups
        .delete_offsets(b, req.group_id.as_str(), topics)
        .await
    {
        Err(e) => OffsetDeleteResponse::default().with_error_code(code(Some(e))),
        Ok(answers) => {
            let partition = |p, c| {
                OffsetDeleteResponsePartition::default()
                    .with_partition_index(p)
                    .with_error_code(c)
            };
            let topic = |name, ps| {
                OffsetDeleteResponseTopic::default()
                    .with_name(name)
                    .with_partitions(ps)
            };
            let mut topics = per_partition(answers, topic, partition);
            topics.extend(authorize::denied_topics(denied, |name, ps| {
                topic(name, ps.into_iter().map(|(p, c)| partition(p, c)).collect())
            }));
            OffsetDeleteResponse::default().with_topics(topics)
        }
    }
}
