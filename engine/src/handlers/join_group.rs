//! JoinGroup (classic protocol): member ids, protocol selection, leader election and the
//! rebalance barrier live in `crate::group::state`; this maps the wire format.

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, RequestHeader};
use tokio::time::Duration;

use super::group_error::code;
use super::{authorize, sb};
use crate::broker::Broker;
use crate::group::state::JoinRequest;
use crate::security::acl::Operation;
use crate::security::Session;

pub async fn handle(
    b: &Broker,
    s: &Session,
    h: &RequestHeader,
    version: i16,
    req: JoinGroupRequest,
) -> JoinGroupResponse {
    if !authorize::group(b, s, Operation::Read, req.group_id.as_str()) {
        return JoinGroupResponse::default()
            .with_error_code(kafka_protocol::ResponseError::GroupAuthorizationFailed.code())
            .with_generation_id(-1)
            // The protocol name is only nullable from v7.
            .with_protocol_name((version < 7).then(|| sb("")));
    }
    let rebalance_ms = if version >= 1 {
        req.rebalance_timeout_ms
    } else {
        req.session_timeout_ms
    };
    let r = JoinRequest {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.map(|s| s.to_string()),
        client_id: h
            .client_id
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default(),
        client_host: String::new(),
        session_timeout: Duration::from_millis(req.session_timeout_ms.max(0) as u64),
        rebalance_timeout: Duration::from_millis(rebalance_ms.max(0) as u64),
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let res = b.groups.join(b, req.group_id.as_str(), r).await;
    let members = res
        .members
        .into_iter()
        .map(|m| {
            let jm = JoinGroupResponseMember::default()
                .with_member_id(sb(m.member_id))
                .with_metadata(m.metadata);
            if version >= 5 {
                jm.with_group_instance_id(m.instance_id.map(sb))
            } else {
                jm
            }
        })
        .collect();
    // The protocol name is only nullable from v7.
    let protocol_name = match res.protocol_name {
        Some(n) => Some(sb(n)),
        None if version < 7 => Some(sb("")),
        None => None,
    };
    let mut resp = JoinGroupResponse::default()
        .with_error_code(code(res.error))
        .with_generation_id(res.generation)
        .with_protocol_name(protocol_name)
        .with_leader(sb(res.leader))
        .with_member_id(sb(res.member_id))
        .with_members(members);
    if version >= 7 {
        resp = resp.with_protocol_type(res.protocol_type.map(sb));
    }
    if version >= 9 {
        resp = resp.with_skip_assignment(res.skip_assignment);
    }
    resp
}
