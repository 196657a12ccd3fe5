//! Ongoing transactions past their timeout are aborted with the producer's epoch bumped (as
//! Kafka's abortTimedOutTransactions), so the zombie producer that began one is fenced.

use std::sync::Arc;

use super::{Coordinator, TxnHost};

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
}
