//! Heartbeat: keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::authorize;
use super::group_error::code;
use crate::broker::Broker;
use crate::security::acl::Operation;
use crate::security::Session;

pub fn handle(b: &Broker, s: &Session, req: HeartbeatRequest) -> HeartbeatResponse {
    if !authorize::group(b, s, Operation::Read, req.group_id.as_str()) {
        return HeartbeatResponse::default()
            .with_error_code(kafka_protocol::ResponseError::GroupAuthorizationFailed.code());
    }
    let outcome = b.groups.heartbeat(
        b,
        req.group_id.as_str(),
        req.generation_id,
        req.member_id.as_str(),
        req.group_instance_id.as_deref(),
    );
    HeartbeatResponse::default().with_error_code(code(outcome.err()))
}
