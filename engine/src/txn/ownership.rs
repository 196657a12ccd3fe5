//! Which transactional ids this broker serves. On a single node, every id; in a cluster, the
//! ids of each `__transaction_state` partition whose Raft leader this broker is: a new leader
//! writes a barrier record, replays its partition, then serves (its prepared transactions
//! resume their markers: recovery); a deposed one drops them. As `group::ownership`.

use std::collections::HashMap;
use std::sync::Arc;

use super::store::{self, TRANSACTIONS_TOPIC};
use super::{Coordinator, Entry, TxnError, TxnHost};
use crate::internal_topic::TopicHost;

/// Whether this broker coordinates the ids of one `__transaction_state` partition (cluster
/// only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    NotLeader,
    /// Replaying the partition as the leader of this term.
    Loading(i32),
    Serving(i32),
}

impl Coordinator {
    /// Whether this broker may serve requests for `id` now: NOT_COORDINATOR when another
    /// broker leads its `__transaction_state` partition, or nobody does;
    /// COORDINATOR_LOAD_IN_PROGRESS when this broker leads it but has not replayed it yet.
    pub fn check(&self, b: &dyn TopicHost, id: &str) -> Result<(), TxnError> {
        if !self.inner.clustered {
            return Ok(());
        }
        let t = b
            .topics()
            .get(TRANSACTIONS_TOPIC)
            .ok_or(TxnError::NotCoordinator)?;
        let p = store::partition_for(id, t.partitions.len());
        let (leader, term) = b.partition_leader_epoch(&t, p);
        if leader != b.node_id() {
            return Err(TxnError::NotCoordinator);
        }
        match self.inner.roles.lock().get(&p) {
            Some(Role::Serving(t)) if *t == term => Ok(()),
            _ => Err(TxnError::CoordinatorLoadInProgress),
        }
    }

    /// Follows the leaders of `__transaction_state` partitions (cluster only, from the ticker).
    pub(super) fn follow_leader(&self, host: &Arc<dyn TxnHost>) {
        if !self.inner.clustered {
            return;
        }
        let Some(t) = host.topics().get(TRANSACTIONS_TOPIC) else {
            return;
        };
        let n = t.partitions.len();
        let mut roles = self.inner.roles.lock();
        for p in 0..n as i32 {
            let (leader, term) = host.partition_leader_epoch(&t, p);
            let role = roles.get(&p).copied().unwrap_or(Role::NotLeader);
            if leader != host.node_id() {
                if role != Role::NotLeader {
                    tracing::info!(
                        partition = p,
                        "no longer the coordinator of its transactions"
                    );
                    roles.remove(&p);
                    self.drop_partition(p, n);
                }
                continue;
            }
            if matches!(role, Role::Loading(t) | Role::Serving(t) if t == term) {
                continue;
            }
            roles.insert(p, Role::Loading(term));
            self.drop_partition(p, n);
            let (c, host) = (self.clone(), host.clone());
            tokio::task::spawn_local(async move {
                let loaded = async {
                    store::barrier(&*host, p).await?;
                    replay(&*host, p).await
                }
                .await;
                let mut roles = c.inner.roles.lock();
                if roles.get(&p) != Some(&Role::Loading(term)) {
                    return;
                }
                match loaded {
                    Ok(loaded) => {
                        tracing::info!(
                            partition = p,
                            term,
                            transactions = loaded.len(),
                            "now the coordinator of its transactions"
                        );
                        c.insert_loaded(loaded);
                        roles.insert(p, Role::Serving(term));
                        c.kick();
                    }
                    Err(e) => {
                        tracing::warn!(partition = p, error = %e, "cannot load transactions as the new coordinator; retrying");
                        // The next tick tries again if this broker still leads.
                        roles.remove(&p);
                    }
                }
            });
        }
    }

    /// The `__transaction_state` partitions whose ids this broker serves now (every partition
    /// on a single node: `None`).
    pub fn served_partitions(&self, b: &dyn TopicHost) -> Option<Vec<i32>> {
        if !self.inner.clustered {
            return None;
        }
        let Some(t) = b.topics().get(TRANSACTIONS_TOPIC) else {
            return Some(vec![]);
        };
        let roles = self.inner.roles.lock();
        let mut out: Vec<i32> = roles
            .iter()
            .filter(|(&p, role)| {
                let (leader, term) = b.partition_leader_epoch(&t, p);
                leader == b.node_id() && **role == Role::Serving(term)
            })
            .map(|(&p, _)| p)
            .collect();
        out.sort_unstable();
        Some(out)
    }

    /// Forgets the ids of partition `p` of `n` (their marker tasks see it and stop).
    fn drop_partition(&self, p: i32, n: usize) {
        self.inner
            .txns
            .lock()
            .retain(|id, _| store::partition_for(id, n) != p);
    }

    fn insert_loaded(&self, loaded: HashMap<String, super::TxnMeta>) {
        let mut txns = self.inner.txns.lock();
        for (id, m) in loaded {
            txns.insert(
                id,
                Entry {
                    meta: Some(m),
                    ..Entry::default()
                },
            );
        }
    }

    /// Rebuilds every transactional id from `__transaction_state` (start-up, single node; in
    /// a cluster each partition's leader does it). Prepared transactions resume their markers
    /// at the ticker's first round.
    pub async fn load(&self, b: &dyn TopicHost) -> Result<(), store::StoreError> {
        if self.inner.clustered {
            return Ok(());
        }
        let n = b
            .topics()
            .get(TRANSACTIONS_TOPIC)
            .map_or(0, |t| t.partitions.len());
        for p in 0..n as i32 {
            let loaded = replay(b, p).await?;
            self.insert_loaded(loaded);
        }
        self.kick();
        Ok(())
    }
}

/// The ids of partition `p` as `__transaction_state` records them, up to its high watermark.
async fn replay(
    b: &dyn TopicHost,
    p: i32,
) -> Result<HashMap<String, super::TxnMeta>, store::StoreError> {
    let mut txns = HashMap::new();
    store::replay(b, p, |id, m| match m {
        Some(m) => {
            txns.insert(id, m);
        }
        None => {
            txns.remove(&id);
        }
    })
    .await?;
    if !txns.is_empty() {
        tracing::info!(
            transactions = txns.len(),
            partition = p,
            "restored transactions from {TRANSACTIONS_TOPIC}"
        );
    }
    Ok(txns)
}
