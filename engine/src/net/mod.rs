//! The Kafka listener: sockets, frames and connections.

pub mod connection;
pub mod frame;
pub mod listener;
pub mod sasl;

use std::sync::Arc;

use crate::broker::{Broker, StartError};
use crate::config::BrokerConfig;
use crate::durability::IoBackend;

/// Starts a broker and serves Kafka for it: the listener is bound first, so that the broker
/// advertises the port actually bound (`kafka_addr` may ask for port 0), and accepts on every
/// shard once the broker has opened its partitions (and its scrape-time metrics are hooked
/// up, which read the broker from above it). In a cluster the membership and controller start
/// in between, with the broker's reconciler acting on what the controller applies.
pub async fn start_broker(
    mut config: BrokerConfig,
    io_backend: IoBackend,
    remote: Option<Arc<dyn crate::remote::RemoteTier>>,
    cluster: Option<crate::cluster::ClusterConfig>,
) -> Result<Arc<Broker>, StartError> {
    let asked = config.kafka_addr;
    let sockets =
        listener::bind(asked, config.smp.max(1)).map_err(|e| StartError::Bind(asked, e))?;
    config.kafka_addr = sockets[0]
        .local_addr()
        .map_err(|e| StartError::Bind(asked, e))?;
    let broker = Broker::start(config, io_backend, remote, cluster).await?;
    if let Some(c) = &broker.cluster {
        c.start(
            broker.topics.clone(),
            broker.metrics.clone(),
            broker.config.data_dir.clone(),
            Arc::new(crate::reconciler::BrokerReconciler(Arc::downgrade(&broker))),
        );
        crate::broker::adopt::propose(&broker);
    }
    broker.set_ready();
    crate::scrape::install(&broker);
    listener::serve(sockets, &broker);
    Ok(broker)
}
