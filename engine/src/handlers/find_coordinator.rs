//! FindCoordinator (v0-v4, batched keys from v4). On a single node this broker coordinates
//! every consumer group. In a cluster the coordinator of every group is the Raft leader of
//! `__consumer_offsets` partition 0 (created through the controller on first use, as Kafka
//! does); COORDINATOR_NOT_AVAILABLE while it has no leader. Transactions are not implemented,
//! so transaction coordinators (key type 1) are COORDINATOR_NOT_AVAILABLE.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::sb;
use crate::broker::Broker;
use crate::group::store::{self, OFFSETS_TOPIC};

const KEY_TYPE_GROUP: i8 = 0;

/// Where group requests go: (node id, host, port), or an error code and message.
type Found = Result<(i32, String, u16), (i16, Option<String>)>;

/// The coordinator of every group, as this broker sees it now.
async fn group_coordinator(b: &Broker) -> Found {
    let Some(cluster) = &b.cluster else {
        let (host, port) = &b.advertised;
        return Ok((b.node_id(), host.clone(), *port));
    };
    let unavailable = |m: String| (ResponseError::CoordinatorNotAvailable.code(), Some(m));
    if let Err(e) = store::partition(b).await {
        return Err(unavailable(e.to_string()));
    }
    let t = b
        .topics
        .get(OFFSETS_TOPIC)
        .ok_or_else(|| unavailable(format!("{OFFSETS_TOPIC} does not exist")))?;
    let leader = b.partition_leader(&t, 0);
    if leader < 0 {
        return Err(unavailable(format!("{OFFSETS_TOPIC} has no leader")));
    }
    let m = cluster
        .members
        .get(leader)
        .ok_or_else(|| unavailable(format!("broker {leader} is not known yet")))?;
    Ok((leader, m.kafka_host, m.kafka_port))
}

pub async fn handle(
    b: &Broker,
    version: i16,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    // Every group has the same coordinator: look it up once for all keys.
    let needs_group = if version >= 4 {
        req.key_type == KEY_TYPE_GROUP && req.coordinator_keys.iter().any(|k| !k.is_empty())
    } else {
        req.key_type == KEY_TYPE_GROUP && !req.key.is_empty()
    };
    let found: Found = if needs_group {
        group_coordinator(b).await
    } else {
        Err((ResponseError::CoordinatorNotAvailable.code(), None))
    };
    let answer = |key: &StrBytes| -> Found {
        if req.key_type != KEY_TYPE_GROUP {
            return Err((
                ResponseError::CoordinatorNotAvailable.code(),
                Some("transactions are not supported".into()),
            ));
        }
        if key.is_empty() {
            return Err((ResponseError::InvalidGroupId.code(), None));
        }
        found.clone()
    };
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|k| {
                let c = Coordinator::default().with_key(k.clone());
                match answer(k) {
                    Ok((node, host, port)) => c
                        .with_node_id(BrokerId(node))
                        .with_host(sb(host))
                        .with_port(port as i32),
                    Err((code, msg)) => c
                        .with_error_code(code)
                        .with_error_message(msg.map(sb))
                        .with_node_id(BrokerId(-1))
                        .with_port(-1),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match answer(&req.key) {
        Ok((node, host, port)) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(node))
            .with_host(sb(host))
            .with_port(port as i32),
        Err((code, msg)) => {
            let r = FindCoordinatorResponse::default()
                .with_error_code(code)
                .with_node_id(BrokerId(-1))
                .with_port(-1);
            if version >= 1 {
                r.with_error_message(msg.map(sb))
            } else {
                r
            }
        }
    }
}
