//! DeleteRecords: moves a partition's log start offset forward (-1 means the high watermark).

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::authorize::Decisions;
use super::partition_error;
use crate::broker::Broker;
use crate::partition::Cmd;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;

pub async fn handle(b: &Broker, s: &Session, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut delete = Decisions::new(b, s, Operation::Delete, ResourceType::Topic);
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let denied = !delete.allows(t.name.as_str());
        let topic = b.topics.get(t.name.as_str()).filter(|_| !denied);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let r = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let Some(h) = topic.as_ref().and_then(|t| t.partition(p.partition_index)) else {
                partitions.push(r.with_error_code(super::authorize::unserved(denied)));
                continue;
            };
            let before = p.offset;
            partitions.push(
                match h.ask(|reply| Cmd::DeleteRecords { before, reply }).await {
                    Ok(low) => r.with_low_watermark(low),
                    Err(e) => r.with_error_code(partition_error(&e)),
                },
            );
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
