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

use super::sb;
use crate::broker::Broker;
use crate::cluster::reassign::{plan, ReassignError};

pub async fn handle(
    b: &Broker,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let target: Option<Vec<i32>> = p.replicas.map(|r| r.iter().map(|id| id.0).collect());
            let res = match plan(
                &b.topics,
                b.cluster.as_deref(),
                t.name.as_str(),
                p.partition_index,
                target.as_deref(),
                req.allow_replication_factor_change,
            ) {
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
