//! The second phase of a transaction: its prepared state (PrepareCommit or PrepareAbort) is
//! written, so its markers are written to every partition through
//! [`TxnHost::write_markers`], with retry and backoff until each partition is Written or Gone,
//! and then its Complete* record. Started by the ticker for every prepared transaction without
//! a marker task: after an EndTxn, a fence, a timeout, and after a load (recovery).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::Duration;

use super::state::TxnMeta;
use super::store::{self, TRANSACTIONS_TOPIC};
use super::{Coordinator, MarkerBatch, MarkerOutcome, TxnHost};

/// Backoff between rounds of markers some partitions could not take yet.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);

impl Coordinator {
    /// Starts a marker task for every prepared transaction without one (from the ticker).
    pub(super) fn start_markers(&self, host: &Arc<dyn TxnHost>) {
        let due: Vec<_> = {
            let mut txns = self.inner.txns.lock();
            txns.iter_mut()
                .filter_map(|(id, e)| {
                    let m = e.meta.as_ref()?;
                    if !m.state.is_prepare() || e.pending.is_some() || e.markers.is_some() {
                        return None;
                    }
                    let token = self.inner.next_task.fetch_add(1, Ordering::Relaxed);
                    e.markers = Some(token);
                    Some((id.clone(), m.clone(), token))
                })
                .collect()
        };
        for (id, prepared, token) in due {
            let (c, host) = (self.clone(), host.clone());
            tokio::task::spawn_local(async move {
                c.finish(&*host, &id, prepared, token).await;
            });
        }
    }

    /// The leader epoch of the id's `__transaction_state` partition: the markers' coordinator
    /// epoch, by which partitions refuse markers from a deposed coordinator.
    fn coordinator_epoch(&self, host: &dyn TxnHost, id: &str) -> i32 {
        host.topics().get(TRANSACTIONS_TOPIC).map_or(0, |t| {
            host.partition_leader_epoch(&t, store::partition_for(id, t.partitions.len()))
                .1
        })
    }

    /// Whether marker task `token` still owns the id (not dropped, reloaded or completed).
    fn owns(&self, id: &str, token: u64) -> bool {
        self.inner
            .txns
            .lock()
            .get(id)
            .is_some_and(|e| e.markers == Some(token))
    }

    /// Writes the markers of `prepared`, then its Complete* record.
    async fn finish(&self, host: &dyn TxnHost, id: &str, prepared: TxnMeta, token: u64) {
        let mut left: Vec<(String, i32)> = prepared.partitions.iter().cloned().collect();
        let mut backoff = RETRY_MIN;
        while !left.is_empty() {
            let batch = MarkerBatch {
                producer_id: prepared.producer_id,
                producer_epoch: prepared.epoch,
                commit: prepared.state == super::TxnState::PrepareCommit,
                coordinator_epoch: self.coordinator_epoch(host, id),
                partitions: left.clone(),
            };
            let outcomes = host.write_markers(batch).await;
            let mut retry = Vec::new();
            let mut outcomes = outcomes.into_iter();
            for p in left {
                match outcomes.next() {
                    Some(MarkerOutcome::Written) => {}
                    Some(MarkerOutcome::Gone(why)) => {
                        tracing::info!(transactional_id = %id, topic = %p.0, partition = p.1, reason = %why, "no marker to write")
                    }
                    Some(MarkerOutcome::Retry(why)) => {
                        tracing::debug!(transactional_id = %id, topic = %p.0, partition = p.1, reason = %why, "marker not written yet");
                        retry.push(p);
                    }
                    None => retry.push(p),
                }
            }
            left = retry;
            if left.is_empty() {
                break;
            }
            if !self.owns(id, token) {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RETRY_MAX);
        }
        let done = prepared.complete(host.now_ms());
        let target = {
            let mut txns = self.inner.txns.lock();
            match txns.get_mut(id) {
                Some(e)
                    if e.markers == Some(token)
                        && e.pending.is_none()
                        && e.meta.as_ref() == Some(&prepared) =>
                {
                    e.pending = Some(done.clone());
                    Some(done)
                }
                // Dropped or reloaded meanwhile: a new load's task completes it.
                _ => None,
            }
        };
        if let Some(t) = target {
            if let Err(e) = self.commit(host, id, &t).await {
                tracing::warn!(transactional_id = %id, error = %e, "cannot complete a transaction; retrying");
            }
        }
        let mut txns = self.inner.txns.lock();
        if let Some(e) = txns.get_mut(id) {
            if e.markers == Some(token) {
                e.markers = None;
            }
        }
    }
}
