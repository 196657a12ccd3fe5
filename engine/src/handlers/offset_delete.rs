//! OffsetDelete: removes a group's committed offsets for topics its members are not
//! subscribed to (GROUP_SUBSCRIBED_TO_TOPIC otherwise).

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::group_error::{code, per_partition};
use crate::broker::Broker;

pub async fn handle(b: &Broker, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let topics = req
        .topics
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
        Ok(answers) => OffsetDeleteResponse::default().with_topics(per_partition(
            answers,
            |name, ps| {
                OffsetDeleteResponseTopic::default()
                    .with_name(name)
                    .with_partitions(ps)
            },
            |p, c| {
                OffsetDeleteResponsePartition::default()
                    .with_partition_index(p)
                    .with_error_code(c)
            },
        )),
    }
}
