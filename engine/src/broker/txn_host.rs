//! What the transaction coordinator gets of the broker ([`TxnHost`]: producer ids, markers;
//! its internal topic through `TopicHost`, in `internal_topics`), and its ticker.

use std::sync::{Arc, Weak};

use super::Broker;
use crate::txn::{HostFuture, MarkerBatch, MarkerOutcome, TxnHost};

/// The transaction coordinator's ticker on shard 0: every [`crate::txn::TICK`], or at once
/// when the coordinator has markers to write (an EndTxn, a fence).
pub(super) fn start_txn_ticker(b: &Arc<Broker>) {
    let weak: Weak<Broker> = Arc::downgrade(b);
    let txns = b.txns.clone();
    b.shards.run_on(0, move |_| {
        tokio::task::spawn_local(async move {
            let mut every = tokio::time::interval(crate::txn::TICK);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = txns.kicked() => {}
                }
                let Some(b) = weak.upgrade() else { return };
                let host: Arc<dyn TxnHost> = b.clone();
                b.txns.tick(&host);
            }
        });
    });
}

impl Broker {
    /// The `transaction.version` level in force (KIP-890): what a single node supports, what
    /// the controller finalized in a cluster (0 until every broker supports 2). Requests speak
    /// transaction protocol v2 only at level 2.
    pub(crate) fn transaction_version(&self) -> i16 {
        use crate::cluster::features::{finalized_alone, TRANSACTION_VERSION};
        let levels = match &self.cluster {
            Some(c) => c.finalized_features(),
            None => finalized_alone(),
        };
        levels.get(TRANSACTION_VERSION).copied().unwrap_or(0)
    }
}

impl TxnHost for Broker {
    fn new_producer_id(&self) -> HostFuture<'_, Result<i64, String>> {
        Box::pin(async move {
            Broker::new_producer_id(self)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn write_markers(&self, m: MarkerBatch) -> HostFuture<'_, Vec<MarkerOutcome>> {
        Box::pin(crate::broker::txn_markers::write(self, m))
    }
}
