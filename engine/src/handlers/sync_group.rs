//! SyncGroup: the leader's assignment is stored and handed to every member; followers wait
//! for it.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::group_error::code;
use super::{authorize, sb};
use crate::broker::Broker;
use crate::group::state::SyncRequest;
use crate::security::acl::Operation;
use crate::security::Session;

pub async fn handle(
    b: &Broker,
    s: &Session,
    version: i16,
    req: SyncGroupRequest,
) -> SyncGroupResponse {
    if !authorize::group(b, s, Operation::Read, req.group_id.as_str()) {
        return SyncGroupResponse::default()
            .with_error_code(kafka_protocol::ResponseError::GroupAuthorizationFailed.code());
    }
    let assignments = req
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    let r = SyncRequest {
        generation: req.generation_id,
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.map(|s| s.to_string()),
        protocol_type: req.protocol_type.map(|s| s.to_string()),
        protocol_name: req.protocol_name.map(|s| s.to_string()),
        assignments,
    };
    let res = b.groups.sync(b, req.group_id.as_str(), r).await;
    let resp = SyncGroupResponse::default()
        .with_error_code(code(res.error))
        .with_assignment(res.assignment);
    if version >= 5 {
        resp.with_protocol_type(res.protocol_type.map(sb))
            .with_protocol_name(res.protocol_name.map(sb))
    } else {
        resp
    }
}
