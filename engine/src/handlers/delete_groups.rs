//! DeleteGroups: only empty groups (NON_EMPTY_GROUP otherwise); their offsets and record are
//! tombstoned in `__consumer_offsets` before the answer.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::group_error::code;
use crate::broker::Broker;

pub async fn handle(b: &Broker, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(req.groups_names.len());
    for g in req.groups_names {
        let outcome = b.groups.delete(b, g.as_str()).await;
        results.push(
            DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(code(outcome.err())),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
