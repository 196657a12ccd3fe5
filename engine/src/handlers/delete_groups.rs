//! DeleteGroups: only empty groups (NON_EMPTY_GROUP otherwise); their offsets and record are
//! tombstoned in `__consumer_offsets` before the answer.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::authorize;
use super::group_error::code;
use crate::broker::Broker;
use crate::security::acl::Operation;
use crate::security::Session;

pub async fn handle(b: &Broker, s: &Session, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(req.groups_names.len());
    for g in req.groups_names {
        if !authorize::group(b, s, Operation::Delete, g.as_str()) {
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(g)
                    .with_error_code(
                        kafka_protocol::ResponseError::GroupAuthorizationFailed.code(),
                    ),
            );
            continue;
        }
        let outcome = b.groups.delete(b, g.as_str()).await;
        results.push(
            DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(code(outcome.err())),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
