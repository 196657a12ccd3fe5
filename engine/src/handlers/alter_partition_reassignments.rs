//! AlterPartitionReassignments: starts moving partitions to new replica lists (a null list
//! cancels an ongoing move) through the controller ([`crate::cluster::reassign`]). The answer
//! comes once the controller has recorded the target; the move itself runs in the background
//! (ListPartitionReassignments shows it until it completes). The target may have another replica
//! count than the partition (a replication factor change), unless v1's
//! `allow_replication_factor_change` is false (KIP-860).

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};

use super::{authorize, sb};
use crate::broker::Broker;
use crate::cluster::reassign::{plan, ReassignError};
use crate::security::acl::Operation;
use crate::security::Session;

/// How long a broker that does not know a topic yet waits for the controller's log to reach
/// it: a client that created the topic through another broker and asks this one at once (as
/// Kafka's admin client does, the controller knowing every committed topic) finds it.
const TOPIC_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(3);

/// [`plan`], after this broker's view of the metadata has caught up with a topic it does not
/// know yet (or [`TOPIC_CATCH_UP`] has passed).
async fn plan_waiting(
    b: &Broker,
    topic: &str,
    partition: i32,
    target: Option<&[i32]>,
    allow_rf_change: bool,
) -> Result<crate::cluster::Command, ReassignError> {
    let deadline = tokio::time::Instant::now() + TOPIC_CATCH_UP;
    loop {
        let planned = plan(
            &b.topics,
            b.cluster.as_deref(),
            topic,
            partition,
            target,
            allow_rf_change,
        );
        match planned {
            Err(ReassignError::UnknownPartition(..))
                if b.topics.record(topic).is_none() && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            other => return other,
        }
    }
}

pub async fn handle(
    b: &Broker,
    s: &Session,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    if !authorize::cluster(b, s, Operation::Alter) {
        return AlterPartitionReassignmentsResponse::default()
            .with_error_code(kafka_protocol::ResponseError::ClusterAuthorizationFailed.code());
    }
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let target: Option<Vec<i32>> = p.replicas.map(|r| r.iter().map(|id| id.0).collect());
            let res = match plan_waiting(
                b,
                t.name.as_str(),
                p.partition_index,
                target.as_deref(),
                req.allow_replication_factor_change,
            )
            .await
            {
                Ok(cmd) => match &b.cluster {
                    Some(c) => c.propose(cmd).await.map_err(ReassignError::from),
                    None => Err(ReassignError::NotCluster),
                },
                Err(e) => Err(e),
            };
            let r =
                ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            partitions.push(match res {
                Ok(()) => r,
                Err(e) => r
                    .with_error_code(e.code())
                    .with_error_message(Some(sb(e.to_string()))),
            });
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    AlterPartitionReassignmentsResponse::default().with_responses(responses)
}
