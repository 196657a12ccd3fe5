//! The transaction coordinator (transaction protocol v1, as Kafka's TransactionCoordinator):
//! every transactional id's state behind one mutex, durable in `__transaction_state`
//! ([`store`]), its transitions in [`state`].
//!
//! Each job has its file: [`requests`] (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn
//! through it, EndTxn, and the write-then-apply rule they share), [`markers`] (writing the
//! markers of a prepared transaction, then its Complete* record), [`timeouts`] (aborting
//! transactions past their timeout, expiring idle ids), [`ownership`] (which ids this broker serves, loading and
//! recovery), [`describe`] (DescribeTransactions, ListTransactions). The broker reaches in
//! through the handlers and the ticker; the coordinator reaches the broker only through
//! [`host::TxnHost`].
//!
//! A state change is written (acks=all) before it is answered or acted on; while one is being
//! written for an id, other requests for that id get CONCURRENT_TRANSACTIONS. A ticker on
//! shard 0 (started by the broker) follows the `__transaction_state` leaders in a cluster,
//! aborts timed-out transactions and starts the markers of prepared ones: after an EndTxn (the
//! coordinator wakes it, see [`Coordinator::kicked`]) and after a load (recovery).

pub mod describe;
pub mod error;
pub mod host;
mod markers;
mod ownership;
mod requests;
pub mod state;
pub mod store;
mod timeouts;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Duration;

pub use describe::ListFilter;
pub use error::TxnError;
pub use host::{HostFuture, MarkerBatch, MarkerOutcome, TxnHost};
use ownership::Role;
pub use state::{TxnMeta, TxnState, TxnVersion};
pub use timeouts::ID_EXPIRATION_MS;

/// How often timeouts, leaders and pending markers are checked.
pub const TICK: Duration = Duration::from_millis(100);
/// Kafka's `transaction.max.timeout.ms` default: InitProducerId refuses longer timeouts.
pub const MAX_TIMEOUT_MS: i32 = 900_000;

/// One transactional id as the coordinator holds it.
#[derive(Debug, Default)]
struct Entry {
    /// The state as written (`None`: its first record is being written).
    meta: Option<TxnMeta>,
    /// The state being written; requests meanwhile get CONCURRENT_TRANSACTIONS.
    pending: Option<TxnMeta>,
    /// The marker task writing this prepared transaction's markers, by token.
    markers: Option<u64>,
}

struct Inner {
    txns: Mutex<HashMap<String, Entry>>,
    /// In a cluster: ids follow the leaders of `__transaction_state` partitions.
    clustered: bool,
    /// By `__transaction_state` partition (cluster only; absent = not the leader). Lock order:
    /// `roles` before `txns`.
    roles: Mutex<HashMap<i32, Role>>,
    max_timeout_ms: i32,
    /// Wakes the ticker: markers to write.
    kick: Notify,
    /// Tokens of marker tasks.
    next_task: std::sync::atomic::AtomicU64,
}

/// The transaction coordinator; cheap to clone (its tasks hold clones).
#[derive(Clone)]
pub struct Coordinator {
    inner: Arc<Inner>,
}

impl Default for Coordinator {
    fn default() -> Self {
        Self::new(false)
    }
}

impl Coordinator {
    /// `clustered`: the ids of each `__transaction_state` partition are coordinated by its Raft
    /// leader; otherwise this broker coordinates every id.
    pub fn new(clustered: bool) -> Self {
        Self::with_max_timeout(clustered, MAX_TIMEOUT_MS)
    }

    /// With another `transaction.max.timeout.ms`.
    pub fn with_max_timeout(clustered: bool, max_timeout_ms: i32) -> Self {
        Coordinator {
            inner: Arc::new(Inner {
                txns: Mutex::default(),
                clustered,
                roles: Mutex::default(),
                max_timeout_ms,
                kick: Notify::new(),
                next_task: Default::default(),
            }),
        }
    }

    /// One round of the ticker (on shard 0, inside a `LocalSet`: it spawns local tasks):
    /// follows the `__transaction_state` leaders (cluster), aborts timed-out transactions,
    /// forgets long-idle ids, starts the markers of prepared ones (after an EndTxn, a fence or
    /// a load).
    pub fn tick(&self, host: &Arc<dyn TxnHost>) {
        self.follow_leader(host);
        self.abort_timed_out(host);
        self.expire_idle(host);
        self.start_markers(host);
    }

    /// Resolves when there are markers to write: the ticker then runs at once rather than at
    /// its next [`TICK`].
    pub async fn kicked(&self) {
        self.inner.kick.notified().await
    }

    fn kick(&self) {
        self.inner.kick.notify_one();
    }

    /// The transactional ids this broker holds now, with their state.
    fn snapshot(&self) -> Vec<(String, TxnMeta)> {
        self.inner
            .txns
            .lock()
            .iter()
            .filter_map(|(id, e)| Some((id.clone(), e.meta.clone()?)))
            .collect()
    }
}
