//! Ongoing transactions past their timeout are aborted with the producer's epoch bumped (as
//! Kafka's abortTimedOutTransactions), so the zombie producer that began one is fenced; ids
//! idle longer than `transactional.id.expiration.ms` are forgotten (a tombstone).

use std::sync::Arc;

use super::state::TxnState;
use super::{store, Coordinator, TxnHost};

/// Kafka's `transactional.id.expiration.ms` default (7 days): an id with no transaction in
/// progress and no request for this long is forgotten.
pub const ID_EXPIRATION_MS: i64 = 7 * 24 * 3600 * 1000;

impl Coordinator {
    /// Writes a fencing PrepareAbort for every ongoing transaction past its timeout (from the
    /// ticker); their markers follow.
    pub(super) fn abort_timed_out(&self, host: &Arc<dyn TxnHost>) {
        let now = host.now_ms();
        let due: Vec<_> = {
            let mut txns = self.inner.txns.lock();
            txns.iter_mut()
                .filter_map(|(id, e)| {
                    let m = e.meta.as_ref()?;
                    if e.pending.is_some() || !m.timed_out(now) {
                        return None;
                    }
                    let abort = m.fence_abort(now);
                    e.pending = Some(abort.clone());
                    Some((id.clone(), abort))
                })
                .collect()
        };
        for (id, abort) in due {
            let (c, host) = (self.clone(), host.clone());
            tokio::task::spawn_local(async move {
                match c.commit(&*host, &id, &abort).await {
                    Ok(()) => {
                        tracing::info!(transactional_id = %id, epoch = abort.epoch, "aborting a transaction past its timeout");
                        c.kick();
                    }
                    Err(e) => {
                        tracing::warn!(transactional_id = %id, error = %e, "cannot abort a transaction past its timeout; retrying")
                    }
                }
            });
        }
    }

    /// Writes a tombstone for every id idle past [`ID_EXPIRATION_MS`] and forgets it once
    /// committed (from the ticker). Its producer id is not reused: a later InitProducerId for
    /// the id gets a fresh one.
    pub(super) fn expire_idle(&self, host: &Arc<dyn TxnHost>) {
        let now = host.now_ms();
        let due: Vec<_> = {
            let mut txns = self.inner.txns.lock();
            txns.iter_mut()
                .filter_map(|(id, e)| {
                    let m = e.meta.as_ref()?;
                    let idle = matches!(
                        m.state,
                        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                    );
                    if !idle
                        || e.pending.is_some()
                        || e.markers.is_some()
                        || now.saturating_sub(m.update_ms) < ID_EXPIRATION_MS
                    {
                        return None;
                    }
                    let mut dead = m.clone();
                    dead.state = TxnState::Dead;
                    dead.update_ms = now;
                    e.pending = Some(dead.clone());
                    Some((id.clone(), dead))
                })
                .collect()
        };
        for (id, dead) in due {
            let (c, host) = (self.clone(), host.clone());
            tokio::task::spawn_local(async move {
                let written = store::append(&*host, &id, None).await;
                let mut txns = c.inner.txns.lock();
                if txns.get(&id).and_then(|e| e.pending.as_ref()) != Some(&dead) {
                    return;
                }
                match written {
                    Ok(()) => {
                        tracing::info!(transactional_id = %id, "transactional id expired");
                        txns.remove(&id);
                    }
                    Err(e) => {
                        tracing::warn!(transactional_id = %id, error = %e, "cannot expire a transactional id; retrying");
                        if let Some(e) = txns.get_mut(&id) {
                            e.pending = None;
                        }
                    }
                }
            });
        }
    }
}
