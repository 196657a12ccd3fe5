//! The shard's Raft tick: one timer per shard thread that every partition actor on it
//! subscribes to, rather than one timer per partition.
//!
//! A broadcast channel rather than a watch: a watch wakes its waiters in an order drawn from
//! tokio's unseeded RNG, a broadcast in the order they wait, which a simulation replays.

use tokio::sync::broadcast;

thread_local! {
    /// The shard's Raft tick: one timer per shard thread rather than one per partition.
    static SHARD_TICK: std::cell::RefCell<Option<broadcast::Receiver<u64>>> =
        const { std::cell::RefCell::new(None) };
}

/// Subscribes to this shard's Raft tick, starting its timer on first use (or again if the
/// `LocalSet` that ran it is gone, as between tests on one thread).
pub(super) fn shard_tick() -> broadcast::Receiver<u64> {
    SHARD_TICK.with(|t| {
        let mut t = t.borrow_mut();
        if let Some(rx) = t.as_ref().filter(|rx| !rx.is_closed()) {
            return rx.resubscribe();
        }
        // One slot: a partition that missed ticks sees one (`Lagged`), as they coalesce.
        let (tx, rx) = broadcast::channel(1);
        tokio::task::spawn_local(async move {
            let mut every = tokio::time::interval(crate::raft::TICK);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for n in 1u64.. {
                every.tick().await;
                let _ = tx.send(n);
            }
        });
        let mine = rx.resubscribe();
        *t = Some(rx);
        mine
    })
}
