//! Who writes a partition's remote data in a cluster.
//!
//! Every replica of a partition sees the same segments (they are byte-identical), and the
//! brokers of a cluster share one bucket, so one writer is enough: the partition's Raft leader
//! uploads and trims, and stamps its leader epoch into each manifest it writes. Before a
//! write it reads the stored manifest and builds on it (the previous leader may have written
//! since), and a stored epoch above its own means it has been deposed: it writes nothing and
//! becomes a follower. A follower re-reads the manifest when its partition's retention check
//! finds local sealed segments the manifest it knows does not cover yet, so its local
//! retention follows the leader's uploads at one GET per check at most, and an idle partition
//! costs none.
//!
//! The read-then-write is not one atomic step (a local directory has no conditional PUT), so
//! a leader deposed in the middle of a write can still land one manifest after its successor
//! read: it names the same byte-identical segments, and the successor's next write (built on
//! what is stored) carries on from it.

use std::sync::Arc;

use engine::remote::TierRole;

use crate::error::TieringError;
use crate::manifest::PartitionManifest;
use crate::partition::PartitionState;
use crate::Inner;

/// Applies a replica's new role (cheap when unchanged).
pub(crate) fn set_role(inner: &Arc<Inner>, st: &Arc<PartitionState>, role: TierRole) {
    if !st.change_role(role) {
        return;
    }
    let (inner2, st2) = (inner.clone(), st.clone());
    match role {
        TierRole::Follower => st.drop_queue(&inner.metrics),
        TierRole::Leader { epoch } => {
            tracing::debug!(partition = %st.name(), epoch, "leading the remote tier");
            // Take over from what the previous leader stored; uploads offered meanwhile
            // re-read it before they write anyway.
            inner.handle.spawn(async move {
                if let Err(e) = refresh(&inner2, &st2).await {
                    tracing::warn!(partition = %st2.name(), error = %e, "cannot read the manifest on taking over");
                }
            });
        }
    }
}

/// A follower re-reads the manifest its leader writes, in the background.
pub(crate) fn refresh_follower(inner: &Arc<Inner>, st: &Arc<PartitionState>) {
    if st.leads() {
        return;
    }
    let (inner, st) = (inner.clone(), st.clone());
    inner.clone().handle.spawn(async move {
        if let Err(e) = refresh(&inner, &st).await {
            tracing::debug!(partition = %st.name(), error = %e, "follower manifest refresh failed");
        }
    });
}

/// Adopts the stored manifest if it differs from the one in memory.
async fn refresh(inner: &Inner, st: &PartitionState) -> Result<(), TieringError> {
    let mut guard = st.manifest.lock().await;
    if st.is_closed() {
        return Ok(());
    }
    let Some(stored) = load(inner, st).await? else {
        return Ok(());
    };
    if stored != **guard {
        let m = Arc::new(stored);
        *guard = m.clone();
        st.publish(m);
    }
    Ok(())
}

async fn load(
    inner: &Inner,
    st: &PartitionState,
) -> Result<Option<PartitionManifest>, TieringError> {
    let stored = PartitionManifest::load(inner.store.as_ref(), &st.manifest_key).await?;
    Ok(stored.filter(|m| m.topic_id == st.p.topic_id && m.partition == st.p.partition))
}

/// The manifest a write (upload record, trim) builds on, stamped with this leader's epoch, or
/// `None` when this replica must not write: it follows, or a newer leader wrote the stored one
/// (then that one is adopted and the replica follows). Called with the manifest lock held.
pub(crate) async fn base_for_write(
    inner: &Arc<Inner>,
    st: &Arc<PartitionState>,
    current: &mut Arc<PartitionManifest>,
) -> Result<Option<PartitionManifest>, TieringError> {
    let TierRole::Leader { epoch } = st.role() else {
        return Ok(None);
    };
    if epoch == 0 {
        // A single node is the only writer: what it stored last is in memory.
        return Ok(Some((**current).clone()));
    }
    let stored = load(inner, st).await?;
    match stored {
        Some(m) if m.leader_epoch > epoch => {
            tracing::warn!(partition = %st.name(), epoch, stored_epoch = m.leader_epoch,
                "a newer leader wrote the manifest; this replica stops writing the tier");
            let m = Arc::new(m);
            *current = m.clone();
            st.publish(m);
            set_role(inner, st, TierRole::Follower);
            Ok(None)
        }
        Some(mut m) => {
            m.leader_epoch = epoch;
            Ok(Some(m))
        }
        None => {
            let mut m = (**current).clone();
            m.leader_epoch = epoch;
            Ok(Some(m))
        }
    }
}
