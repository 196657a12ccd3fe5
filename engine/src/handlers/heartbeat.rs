//! Heartbeat: keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::group_error::code;
use crate::broker::Broker;

pub fn handle(b: &Broker, req: HeartbeatRequest) -> HeartbeatResponse {
    let outcome = b.groups.heartbeat(
        b,
        req.group_id.as_str(),
        req.generation_id,
        req.member_id.as_str(),
        req.group_instance_id.as_deref(),
    );
    HeartbeatResponse::default().with_error_code(code(outcome.err()))
}
