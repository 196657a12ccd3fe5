//! DescribeCluster: this broker, which is also the controller.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::sb;
use crate::broker::Broker;

pub fn handle(b: &Broker, _req: DescribeClusterRequest) -> DescribeClusterResponse {
    let (host, port) = &b.advertised;
    DescribeClusterResponse::default()
        .with_cluster_id(sb(b.topics.cluster_id.clone()))
        .with_controller_id(BrokerId(b.node_id()))
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(b.node_id()))
            .with_host(sb(host.clone()))
            .with_port(*port as i32)])
        .with_cluster_authorized_operations(i32::MIN)
}
