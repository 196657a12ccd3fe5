//! FindCoordinator: this node coordinates every consumer group. Transactions are not
//! implemented, so transaction coordinators (key type 1) are COORDINATOR_NOT_AVAILABLE.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::sb;
use crate::broker::Broker;

const KEY_TYPE_GROUP: i8 = 0;

pub fn handle(b: &Broker, version: i16, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let (host, port) = &b.advertised;
    let answer = |key: &StrBytes| -> (i16, Option<String>) {
        if req.key_type != KEY_TYPE_GROUP {
            return (
                ResponseError::CoordinatorNotAvailable.code(),
                Some("transactions are not supported".into()),
            );
        }
        if key.is_empty() {
            return (ResponseError::InvalidGroupId.code(), None);
        }
        (0, None)
    };
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|k| {
                let (code, msg) = answer(k);
                let c = Coordinator::default()
                    .with_key(k.clone())
                    .with_error_code(code)
                    .with_error_message(msg.map(sb));
                if code == 0 {
                    c.with_node_id(BrokerId(b.node_id()))
                        .with_host(sb(host.clone()))
                        .with_port(*port as i32)
                } else {
                    c.with_node_id(BrokerId(-1)).with_port(-1)
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let (code, msg) = answer(&req.key);
    let r = FindCoordinatorResponse::default().with_error_code(code);
    let r = if version >= 1 {
        r.with_error_message(msg.map(sb))
    } else {
        r
    };
    if code == 0 {
        r.with_node_id(BrokerId(b.node_id()))
            .with_host(sb(host.clone()))
            .with_port(*port as i32)
    } else {
        r.with_node_id(BrokerId(-1)).with_port(-1)
    }
}
