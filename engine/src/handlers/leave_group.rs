//! LeaveGroup: v0-2 name one member id, v3+ a batch of members by member or instance id.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::group_error::code;
use super::{authorize, sb};
use crate::broker::Broker;
use crate::security::acl::Operation;
use crate::security::Session;

pub fn handle(b: &Broker, s: &Session, version: i16, req: LeaveGroupRequest) -> LeaveGroupResponse {
    if !authorize::group(b, s, Operation::Read, req.group_id.as_str()) {
        return LeaveGroupResponse::default()
            .with_error_code(kafka_protocol::ResponseError::GroupAuthorizationFailed.code());
    }
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    match b.groups.leave(b, req.group_id.as_str(), &members) {
        Err(e) => LeaveGroupResponse::default().with_error_code(code(Some(e))),
        Ok(outcomes) if version >= 3 => LeaveGroupResponse::default().with_members(
            members
                .into_iter()
                .zip(outcomes)
                .map(|((m, i), o)| {
                    MemberResponse::default()
                        .with_member_id(sb(m))
                        .with_group_instance_id(i.map(sb))
                        .with_error_code(code(o.err()))
                })
                .collect(),
        ),
        // v0-2 name one member.
        Ok(outcomes) => LeaveGroupResponse::default()
            .with_error_code(code(outcomes.first().and_then(|o| o.err()))),
    }
}
