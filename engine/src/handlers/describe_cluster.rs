//! DescribeCluster: the brokers Metadata lists (with their racks) and the controller leader.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{authorize, sb};
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;

/// The brokers are listed at the addresses of the listener `s` connected to.
pub async fn handle(
    b: &Broker,
    s: &Session,
    req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    // As Kafka: anyone may ask; the operations are filled only for who may describe the cluster.
    let operations = match req.include_cluster_authorized_operations {
        false => authorize::OPERATIONS_OMITTED,
        true if !authorize::cluster(b, s, Operation::Describe) => 0,
        true => authorize::operations(b, s, ResourceType::Cluster, authorize::CLUSTER_NAME),
    };
    let brokers = b.listed_brokers(s).await;
    let controller = match &b.cluster {
        Some(c) => c.controller_leader().unwrap_or(-1),
        None => b.node_id(),
    };
    DescribeClusterResponse::default()
        .with_cluster_id(sb(b.topics.cluster_id.clone()))
        .with_controller_id(BrokerId(controller))
        .with_brokers(
            brokers
                .into_iter()
                .map(|(id, host, port, rack)| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(id))
                        .with_host(sb(host))
                        .with_port(port as i32)
                        .with_rack(rack.map(sb))
                })
                .collect(),
        )
        .with_cluster_authorized_operations(operations)
}
