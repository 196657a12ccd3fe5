//! SyncGroup: the leader's assignment is stored and handed to every member; followers wait
//! for it.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::sb;
use crate::broker::Broker;

pub async fn handle(b: &Broker, version: i16, req: SyncGroupRequest) -> SyncGroupResponse {
    let assignments = req
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    let res = b
        .groups
        .sync(
            b,
            req.group_id.as_str(),
            req.generation_id,
            req.member_id.as_str(),
            req.group_instance_id.as_deref(),
            req.protocol_type.as_deref(),
            req.protocol_name.as_deref(),
            assignments,
        )
        .await;
    let resp = SyncGroupResponse::default()
        .with_error_code(res.error)
        .with_assignment(res.assignment);
    if version >= 5 {
        resp.with_protocol_type(res.protocol_type.map(sb))
            .with_protocol_name(res.protocol_name.map(sb))
    } else {
        resp
    }
}
