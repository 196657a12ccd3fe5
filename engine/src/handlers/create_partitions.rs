//! CreatePartitions: grows a topic to a new partition count.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::ResponseError;

use super::authorize::Decisions;
use super::{broker_error, sb};
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;

pub async fn handle(
    b: &Broker,
    s: &Session,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut alter = Decisions::new(b, s, Operation::Alter, ResourceType::Topic);
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        if !alter.allows(t.name.as_str()) {
            results.push(r.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
            continue;
        }
        if t.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
            results.push(
                r.with_error_code(ResponseError::InvalidReplicaAssignment.code())
                    .with_error_message(Some(sb("manual replica assignment is not supported"))),
            );
            continue;
        }
        results.push(
            match b
                .add_partitions(t.name.as_str(), t.count, req.validate_only)
                .await
            {
                Ok(()) => r,
                Err(e) => {
                    let (code, msg) = broker_error(&e);
                    r.with_error_code(code).with_error_message(Some(sb(msg)))
                }
            },
        );
    }
    CreatePartitionsResponse::default().with_results(results)
}
