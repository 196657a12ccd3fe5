//! FindCoordinator (v0-v4, batched keys from v4). On a single node this broker coordinates
//! every consumer group and transactional id. In a cluster a group's coordinator is the Raft
//! leader of its `__consumer_offsets` partition, a transactional id's (key type 1) the leader
//! of its `__transaction_state` partition (each topic is created through the controller on
//! first use, as Kafka does); COORDINATOR_NOT_AVAILABLE while that partition has no leader.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{authorize, sb};
use crate::broker::Broker;
use crate::group::store;
use crate::internal_topic::InternalTopic;
use crate::security::acl::Operation;
use crate::security::Session;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Where group requests go: (node id, host, port), or an error code and message.
type Found = Result<(i32, String, u16), (i16, Option<String>)>;

/// The coordinator of `key` (a group or a transactional id, placed in `topic` by the same
/// hash), as this broker sees it now, at the address of `session`'s listener.
async fn coordinator(b: &Broker, session: &Session, topic: InternalTopic, key: &str) -> Found {
    let Some(cluster) = &b.cluster else {
        let (host, port) = b.advertised_for(session);
        return Ok((b.node_id(), host, port));
    };
    let unavailable = |m: String| (ResponseError::CoordinatorNotAvailable.code(), Some(m));
    let t = topic
        .topic(b)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let p = store::partition_for(key, t.partitions.len());
    let leader = b.partition_leader(&t, p);
    if leader < 0 {
        return Err(unavailable(format!("{}-{p} has no leader", topic.name)));
    }
    let m = cluster
        .members
        .get(leader)
        .ok_or_else(|| unavailable(format!("broker {leader} is not known yet")))?;
    let (host, port) = b.member_address(session, &m).ok_or_else(|| {
        unavailable(format!(
            "broker {leader} has no listener {}",
            session.listener
        ))
    })?;
    Ok((leader, host, port))
}

async fn answer(b: &Broker, s: &Session, key_type: i8, key: &StrBytes) -> Found {
    // DESCRIBE on the group or transactional id, before anything is looked up (as Kafka).
    let denied = |code: ResponseError| Err((code.code(), None));
    match key_type {
        KEY_TYPE_GROUP if !authorize::group(b, s, Operation::Describe, key.as_str()) => {
            denied(ResponseError::GroupAuthorizationFailed)
        }
        KEY_TYPE_TRANSACTION
            if !authorize::transactional_id(b, s, Operation::Describe, key.as_str()) =>
        {
            denied(ResponseError::TransactionalIdAuthorizationFailed)
        }
        KEY_TYPE_GROUP if key.is_empty() => Err((ResponseError::InvalidGroupId.code(), None)),
        KEY_TYPE_GROUP => coordinator(b, s, store::OFFSETS, key.as_str()).await,
        KEY_TYPE_TRANSACTION if key.is_empty() => Err((
            ResponseError::InvalidRequest.code(),
            Some("the transactional id is empty".into()),
        )),
        KEY_TYPE_TRANSACTION => {
            coordinator(b, s, crate::txn::store::TRANSACTIONS, key.as_str()).await
        }
        _ => Err((
            ResponseError::InvalidRequest.code(),
            Some(format!("unknown key type {key_type}")),
        )),
    }
}

pub async fn handle(
    b: &Broker,
    s: &Session,
    version: i16,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    if version >= 4 {
        let mut coordinators = Vec::with_capacity(req.coordinator_keys.len());
        for k in &req.coordinator_keys {
            let c = Coordinator::default().with_key(k.clone());
            coordinators.push(match answer(b, s, req.key_type, k).await {
                Ok((node, host, port)) => c
                    .with_node_id(BrokerId(node))
                    .with_host(sb(host))
                    .with_port(port as i32),
                Err((code, msg)) => c
                    .with_error_code(code)
                    .with_error_message(msg.map(sb))
                    .with_node_id(BrokerId(-1))
                    .with_port(-1),
            });
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match answer(b, s, req.key_type, &req.key).await {
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
