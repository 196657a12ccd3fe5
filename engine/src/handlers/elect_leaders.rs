//! ElectLeaders (`kafka-leader-election`, AdminClient.electLeaders). PREFERRED moves a
//! partition's leadership to its preferred replica (the first, or the one
//! `redpanda.leaders.preference` pins, see [`crate::broker::leader_preference`]), when that
//! replica is an in-sync Raft voter:
//! the broker leading the partition transfers Raft leadership (a broker that does not lead it
//! asks the leader, one hop) and the answer waits until the preferred replica leads. A single
//! broker's partitions have one replica, so nothing is ever needed there (ELECTION_NOT_NEEDED).
//! UNCLEAN is refused: Raft never elects a replica that misses committed records.

use std::time::{Duration, Instant};

use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, RequestHeader};
use kafka_protocol::ResponseError;

use super::{authorize, forward, sb, topic_name};
use crate::broker::Broker;
use crate::raft::PreferredElection;
use crate::security::acl::Operation;
use crate::security::Session;

const PREFERRED: i8 = 0;

pub async fn handle(
    b: &Broker,
    s: &Session,
    h: &RequestHeader,
    version: i16,
    req: ElectLeadersRequest,
) -> ElectLeadersResponse {
    if !authorize::cluster(b, s, Operation::Alter) {
        return denied(req);
    }
    // Null: every partition (Kafka then lists only those whose election did something).
    let all = req.topic_partitions.is_none();
    let wanted: Vec<(String, Vec<i32>)> = match req.topic_partitions {
        Some(tps) => tps
            .into_iter()
            .map(|t| (t.topic.as_str().to_string(), t.partitions))
            .collect(),
        None => b
            .topics
            .all()
            .iter()
            .filter(|t| !crate::topics::is_internal(&t.name))
            .map(|t| (t.name.clone(), (0..t.partitions.len() as i32).collect()))
            .collect(),
    };
    let wait = Duration::from_millis(req.timeout_ms.clamp(0, 60_000) as u64);
    let mut results = Vec::with_capacity(wanted.len());
    for (name, parts) in wanted {
        let mut partition_result = Vec::with_capacity(parts.len());
        for p in parts {
            let (code, msg) = if req.election_type != PREFERRED {
                (
                    ResponseError::InvalidRequest.code(),
                    Some("unclean leader election is not supported: partition leaders are elected by Raft, which never elects a replica missing committed records".to_string()),
                )
            } else {
                elect_preferred(b, s, h, version, &name, p, wait).await
            };
            if all && code == ResponseError::ElectionNotNeeded.code() {
                continue;
            }
            partition_result.push(
                PartitionResult::default()
                    .with_partition_id(p)
                    .with_error_code(code)
                    .with_error_message(msg.map(sb)),
            );
        }
        if !partition_result.is_empty() || !all {
            results.push(
                ReplicaElectionResult::default()
                    .with_topic(topic_name(&name))
                    .with_partition_result(partition_result),
            );
        }
    }
    ElectLeadersResponse::default().with_replica_election_results(results)
}

/// How long a preferred election waits for the preferred replica to count as in sync.
const CATCH_UP: Duration = Duration::from_secs(5);

async fn elect_preferred(
    b: &Broker,
    s: &Session,
    h: &RequestHeader,
    version: i16,
    name: &str,
    p: i32,
    wait: Duration,
) -> (i16, Option<String>) {
    let Some(t) = b.topics.get(name) else {
        return (ResponseError::UnknownTopicOrPartition.code(), None);
    };
    let Some(handle) = t.partition(p) else {
        return (ResponseError::UnknownTopicOrPartition.code(), None);
    };
    let preferred = match b.topics.record(name) {
        Some(rec) if !rec.assignments.is_empty() => {
            crate::broker::leader_preference::preferred(b, &rec, p, &t.resolved)
        }
        _ => b.node_id(),
    };
    let (leader, _) = b.partition_leader_epoch(&t, p);
    if leader == preferred {
        return (ResponseError::ElectionNotNeeded.code(), None);
    }
    if leader != b.node_id() {
        // The leader transfers leadership; ask it, unless this request was forwarded already.
        if b.cluster.is_none() || leader < 0 || forward::forwarded(h) {
            return (
                ResponseError::PreferredLeaderNotAvailable.code(),
                Some(format!("partition {name}-{p} has no leader that can hand over to its preferred replica {preferred} now")),
            );
        }
        let req = ElectLeadersRequest::default()
            .with_election_type(PREFERRED)
            .with_timeout_ms(wait.as_millis() as i32)
            .with_topic_partitions(Some(vec![TopicPartitions::default()
                .with_topic(topic_name(name))
                .with_partitions(vec![p])]));
        return match forward::ask_broker(b, s, leader, version, &req).await {
            Ok(r) => r
                .replica_election_results
                .into_iter()
                .flat_map(|t| t.partition_result)
                .find(|r| r.partition_id == p)
                .map_or((ResponseError::UnknownServerError.code(), None), |r| {
                    (r.error_code, r.error_message.map(|m| m.to_string()))
                }),
            Err(e) => (
                ResponseError::PreferredLeaderNotAvailable.code(),
                Some(format!("asking leader {leader}: {e}")),
            ),
        };
    }
    // A leader elected a moment ago counts a voter in sync only once it has heard from it: a
    // preferred replica that is merely not heard from yet is waited for, within the request's
    // timeout (at most CATCH_UP), rather than refused.
    let heard_by = Instant::now() + wait.min(CATCH_UP);
    let asked = loop {
        let r = handle
            .ask(|reply| crate::partition::Cmd::ElectPreferred { reply })
            .await;
        match r {
            Ok(PreferredElection::NotAvailable) if Instant::now() < heard_by => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => break other,
        }
    };
    match asked {
        Ok(PreferredElection::NotNeeded) => (ResponseError::ElectionNotNeeded.code(), None),
        Ok(PreferredElection::NotLeader) => (ResponseError::NotLeaderOrFollower.code(), None),
        Ok(PreferredElection::NotAvailable) => (
            ResponseError::PreferredLeaderNotAvailable.code(),
            Some(format!(
                "preferred replica {preferred} of {name}-{p} is not an in-sync voter"
            )),
        ),
        Ok(PreferredElection::Started(_)) => {
            let deadline = Instant::now() + wait;
            loop {
                if b.partition_leader_epoch(&t, p).0 == preferred {
                    return (0, None);
                }
                if Instant::now() >= deadline {
                    return (
                        ResponseError::RequestTimedOut.code(),
                        Some(format!(
                            "replica {preferred} did not take over {name}-{p} in time"
                        )),
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Err(e) => (super::partition_error(&e), Some(e.to_string())),
    }
}

/// Without ALTER on the cluster: every named partition, and the request, answer
/// CLUSTER_AUTHORIZATION_FAILED (as Kafka).
fn denied(req: ElectLeadersRequest) -> ElectLeadersResponse {
    let code = ResponseError::ClusterAuthorizationFailed.code();
    let results = req
        .topic_partitions
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            ReplicaElectionResult::default()
                .with_topic(t.topic)
                .with_partition_result(
                    t.partitions
                        .into_iter()
                        .map(|p| {
                            PartitionResult::default()
                                .with_partition_id(p)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    ElectLeadersResponse::default()
        .with_error_code(code)
        .with_replica_election_results(results)
}
