//! What the controller needs from outside itself, as traits, so that the cluster never imports
//! the broker and a simulator can run the production controller: the [`Reconciler`] (the broker
//! side, which acts on metadata changes) and the [`Peers`] (the other brokers, over RPC here).

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;

use raft::eraftpb::Message;

use super::metadata_state::MetadataState;
use crate::dynamic_config::DynamicConfigs;
use crate::security::state::SecurityState;

pub type ReconcileFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(), ReconcileError>> + Send + 'a>>;

/// Why this broker could not be brought in line with the metadata (retried by the controller's
/// next full reconcile).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReconcileError(pub String);

/// Acts on the metadata the controller applied: opens, stops, moves and deletes this broker's
/// partitions (as Redpanda's controller backend does). The controller only applies commands to
/// its [`MetadataState`] and hands the result here.
pub trait Reconciler: Send + Sync {
    /// Brings every topic on this broker in line with `state` (after start, after installing a
    /// snapshot, and every few seconds to retry what failed).
    fn reconcile_all<'a>(&'a self, state: &'a MetadataState) -> ReconcileFuture<'a>;
    /// Brings one topic in line with its record in `state` (absent: it was deleted or
    /// unmounted).
    fn reconcile_topic<'a>(
        &'a self,
        name: &'a str,
        state: &'a MetadataState,
    ) -> ReconcileFuture<'a>;
    /// Puts the dynamic broker configs in force on this broker.
    fn broker_configs<'a>(&'a self, configs: &'a DynamicConfigs) -> ReconcileFuture<'a>;
    /// Puts the users, ACLs and quotas in force on this broker (nothing by default: a
    /// simulated broker has none).
    fn security<'a>(&'a self, _state: &'a SecurityState) -> ReconcileFuture<'a> {
        Box::pin(async { Ok(()) })
    }
}

/// The other brokers, as the controller sees them.
pub trait Peers: Send + Sync {
    /// Sends a controller Raft message to broker `to` (dropped if it cannot be sent: Raft
    /// retransmits).
    fn send_controller(&self, to: u64, msg: &Message);
    /// The brokers gossip knows to be alive.
    fn alive(&self) -> Vec<i32>;
    /// The feature levels each broker gossip knows of (live or not) supports.
    fn features(&self) -> std::collections::BTreeMap<i32, super::features::Levels>;
    /// The brokers being decommissioned, as of the last entry applied.
    fn set_draining(&self, draining: BTreeSet<i32>);
    /// On the controller leader: starts moving replicas off draining brokers.
    fn drain(&self);
}

pub type KafkaFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send>>;

/// Runs the Kafka requests other brokers forward for their clients over the authenticated
/// RPC ([`super::kafka_rpc`]): the broker's handlers, as for a client of its own.
pub trait KafkaHost: Send + Sync {
    /// Handles one request frame (header and body, no length) as `session`: the response
    /// frame (header and body), or why there is none.
    fn handle(&self, session: crate::security::Session, request: bytes::Bytes) -> KafkaFuture;
}
