//! DescribeCluster: the brokers Metadata lists (with their racks) and the controller leader.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::sb;
use crate::broker::Broker;

/// The brokers are listed at the addresses of the listener `session` connected to.
pub fn handle(
    b: &Broker,
    session: &crate::security::Session,
    _req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let brokers = b.listed_brokers(session);
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
        .with_cluster_authorized_operations(i32::MIN)
}
