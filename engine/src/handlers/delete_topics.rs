//! DeleteTopics, by name (all versions) or by topic id (v6).

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use kafka_protocol::ResponseError;

use super::authorize::Decisions;
use super::{broker_error, sb, topic_name};
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;

pub async fn handle(
    b: &Broker,
    s: &Session,
    version: i16,
    req: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let mut delete = Decisions::new(b, s, Operation::Delete, ResourceType::Topic);
    let mut describe = Decisions::new(b, s, Operation::Describe, ResourceType::Topic);
    let targets: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.as_str().to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.as_str().to_string()), uuid::Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let name = name.or_else(|| b.topics.by_id(id).map(|t| t.name.clone()));
        let r = DeletableTopicResult::default()
            .with_topic_id(id)
            .with_name(name.as_deref().map(topic_name));
        let Some(name) = name else {
            responses.push(r.with_error_code(ResponseError::UnknownTopicId.code()));
            continue;
        };
        // A topic named by id is not disclosed to who may not describe it (as Kafka).
        if !id.is_nil() && !describe.allows(&name) {
            responses.push(
                DeletableTopicResult::default()
                    .with_topic_id(id)
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code()),
            );
            continue;
        }
        if !delete.allows(&name) {
            responses.push(r.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
            continue;
        }
        responses.push(match b.delete_topic(&name).await {
            Ok(()) => r,
            Err(e) => {
                let (code, msg) = broker_error(&e);
                r.with_error_code(code).with_error_message(Some(sb(msg)))
            }
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
