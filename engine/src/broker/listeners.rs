//! Which address each broker is announced at to a client: the advertised address of the
//! listener its request arrived on (Kafka's `advertised.listeners`), on every broker of a
//! cluster. A broker without that listener is left out, as Kafka does.

use std::collections::BTreeMap;

use super::Broker;
use crate::cluster::membership::Member;
use crate::config::BrokerConfig;
use crate::security::Session;

/// A broker as Metadata and DescribeCluster list it: id, host, port, rack.
pub type Listed = (i32, String, u16, Option<String>);

/// This broker's listeners' advertised addresses by name, as membership announces them.
pub fn advertised_map(config: &BrokerConfig) -> BTreeMap<String, (String, u16)> {
    config
        .kafka_listeners()
        .into_iter()
        .map(|l| (l.name.to_string(), l.advertised))
        .collect()
}

impl Broker {
    /// The listener whose addresses answer `session`: its own, or (for a request that came
    /// in on no listener of this broker, as an internal call) the first one.
    fn listener_of<'a>(&'a self, session: &'a Session) -> Option<&'a str> {
        self.config
            .listeners
            .iter()
            .any(|l| l.name == session.listener)
            .then_some(&*session.listener)
    }

    /// Where a client of `session`'s listener reaches this broker.
    pub fn advertised_for(&self, session: &Session) -> (String, u16) {
        self.listener_of(session)
            .and_then(|name| self.config.listeners.iter().find(|l| &*l.name == name))
            .map_or_else(|| self.advertised.clone(), |l| l.advertised.clone())
    }

    /// Where a client of `session`'s listener reaches member `m`; `None` when `m` lacks that
    /// listener.
    pub fn member_address(&self, session: &Session, m: &Member) -> Option<(String, u16)> {
        match self.listener_of(session) {
            Some(name) => m.kafka_address(name),
            None => Some((m.kafka_host.clone(), m.kafka_port)),
        }
    }

    /// The brokers Metadata and DescribeCluster list to `session`, at its listener's
    /// addresses (just after a start, once the other seeds answered, `Cluster::await_peers`).
    pub async fn listed_brokers(&self, session: &Session) -> Vec<Listed> {
        if let Some(c) = &self.cluster {
            c.await_peers().await;
        }
        match &self.cluster {
            Some(c) => c
                .listed_brokers()
                .into_iter()
                .filter_map(|m| {
                    let (host, port) = self.member_address(session, &m)?;
                    Some((m.node_id, host, port, m.rack))
                })
                .collect(),
            None => {
                let (host, port) = self.advertised_for(session);
                vec![(self.node_id(), host, port, None)]
            }
        }
    }
}
