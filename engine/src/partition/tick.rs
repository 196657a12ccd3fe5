//! The shard's Raft tick: one timer per shard thread that every partition actor on it
//! subscribes to, rather than one timer per partition.

use tokio::sync::watch;

thread_local! {
    /// The shard's Raft tick: one timer per shard thread rather than one per partition.
    static SHARD_TICK: std::cell::RefCell<Option<watch::Receiver<u64>>> =
        const { std::cell::RefCell::new(None) };
}

/// Subscribes to this shard's Raft tick, starting its timer on first use (or again if the
/// `LocalSet` that ran it is gone, as between tests on one thread).
pub(super) fn shard_tick() -> watch::Receiver<u64> {
    SHARD_TICK.with(|t| {
        let mut t = t.borrow_mut();
        if let Some(rx) = t.as_ref().filter(|rx| rx.has_changed().is_ok()) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(0u64);
        tokio::task::spawn_local(async move {
            let mut every = tokio::time::interval(crate::raft::TICK);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                tx.send_modify(|n| *n += 1);
            }
        });
        *t = Some(rx.clone());
        rx
    })
}
