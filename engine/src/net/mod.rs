//! The Kafka listener: sockets, frames and connections.

pub mod connection;
pub mod forwarded;
pub mod frame;
pub mod listener;
mod outgoing;
pub mod sasl;
mod throttle;

use std::sync::Arc;

use crate::broker::{Broker, StartError};
use crate::config::BrokerConfig;
use crate::durability::IoBackend;

/// Starts a broker and serves Kafka for it: the listeners are bound first, so that the broker
/// advertises the ports actually bound (a listener may ask for port 0), and accept on every
/// shard once the broker has opened its partitions (and its scrape-time metrics are hooked
/// up, which read the broker from above it). In a cluster the membership and controller start
/// in between, with the broker's reconciler acting on what the controller applies.
pub async fn start_broker(
    mut config: BrokerConfig,
    io_backend: IoBackend,
    remote: Option<Arc<dyn crate::remote::RemoteTier>>,
    cluster: Option<crate::cluster::ClusterConfig>,
) -> Result<Arc<Broker>, StartError> {
    let mut listeners = config.kafka_listeners();
    if let (Some(l), None) = (listeners.iter().find(|l| l.protocol.is_tls()), &config.tls) {
        return Err(StartError::NoTls(l.name.to_string()));
    }
    let mut bound = Vec::with_capacity(listeners.len());
    for l in &mut listeners {
        let asked = l.addr;
        let sockets =
            listener::bind(asked, config.smp.max(1)).map_err(|e| StartError::Bind(asked, e))?;
        l.addr = sockets[0]
            .local_addr()
            .map_err(|e| StartError::Bind(asked, e))?;
        if l.advertised.1 == 0 {
            l.advertised.1 = l.addr.port();
        }
        bound.push(sockets);
    }
    config.kafka_addr = listeners[0].addr;
    config.advertised_kafka_addr = listeners[0].advertised.clone();
    config.listeners = listeners.clone();
    let broker = Broker::start(config, io_backend, remote, cluster).await?;
    if let Some(c) = &broker.cluster {
        c.set_kafka_host(Arc::new(forwarded::ForwardedRequests::new(&broker)));
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
    let acceptor = broker
        .tls
        .as_ref()
        .map(|t| tokio_rustls::TlsAcceptor::from(t.kafka.clone()));
    let mut served = Vec::with_capacity(bound.len());
    for (l, sockets) in listeners.into_iter().zip(bound) {
        // Checked above: a TLS listener has an acceptor.
        let tls = acceptor.clone().filter(|_| l.protocol.is_tls());
        let listener = Arc::new(l);
        served.push((listener::Served { listener, tls }, sockets));
    }
    listener::serve(served, &broker);
    Ok(broker)
}
