//! What the tier keeps in memory per partition.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use engine::remote::{RemoteExtent, RemotePartition, SealedSegment, TierRole};
use object_store::path::Path;
use tokio::sync::{watch, Notify};

use crate::layout;
use crate::manifest::PartitionManifest;
use crate::metrics::Metrics;

pub(crate) struct PartitionState {
    pub p: RemotePartition,
    pub manifest_key: Path,
    /// The persisted manifest. Holding this lock is what serializes a partition's manifest
    /// writes (uploads, delete_before, close).
    pub manifest: tokio::sync::Mutex<Arc<PartitionManifest>>,
    /// The same manifest, published after each write for lock-free reads.
    view: parking_lot::RwLock<Arc<PartitionManifest>>,
    extent_tx: watch::Sender<RemoteExtent>,
    pub queue: parking_lot::Mutex<Queue>,
    closed: AtomicBool,
    /// Wakes a worker sleeping in backoff when the partition closes.
    pub wake: Notify,
    /// Held for the length of one upload attempt, so close can wait out the one in flight.
    pub busy: tokio::sync::Mutex<()>,
    /// Whether this replica writes the partition's remote data.
    role: parking_lot::Mutex<TierRole>,
}

#[derive(Default)]
pub(crate) struct Queue {
    pub items: VecDeque<SealedSegment>,
    /// Whether a worker task is draining the queue.
    pub worker: bool,
}

impl PartitionState {
    pub fn new(p: RemotePartition, manifest: PartitionManifest) -> Self {
        let manifest = Arc::new(manifest);
        let (extent_tx, _) = watch::channel(manifest.extent());
        PartitionState {
            manifest_key: layout::partition_manifest_key(p.topic_id, p.partition),
            p,
            manifest: tokio::sync::Mutex::new(manifest.clone()),
            view: parking_lot::RwLock::new(manifest),
            extent_tx,
            queue: parking_lot::Mutex::new(Queue::default()),
            closed: AtomicBool::new(false),
            wake: Notify::new(),
            busy: tokio::sync::Mutex::new(()),
            role: parking_lot::Mutex::new(TierRole::Leader { epoch: 0 }),
        }
    }

    pub fn role(&self) -> TierRole {
        *self.role.lock()
    }

    pub fn leads(&self) -> bool {
        matches!(self.role(), TierRole::Leader { .. })
    }

    /// Records a new role; `false` when it is unchanged.
    pub fn change_role(&self, role: TierRole) -> bool {
        std::mem::replace(&mut *self.role.lock(), role) != role
    }

    pub fn view(&self) -> Arc<PartitionManifest> {
        self.view.read().clone()
    }

    /// Publishes a manifest that was just persisted.
    pub fn publish(&self, m: Arc<PartitionManifest>) {
        let extent = m.extent();
        *self.view.write() = m;
        self.extent_tx.send_replace(extent);
    }

    pub fn subscribe(&self) -> watch::Receiver<RemoteExtent> {
        self.extent_tx.subscribe()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_waiters();
    }

    /// Forgets the upload queue (a closing partition, or a replica that stopped leading: the
    /// engine or the new leader offers the segments again).
    pub fn drop_queue(&self, metrics: &Metrics) {
        let mut q = self.queue.lock();
        for seg in q.items.drain(..) {
            metrics.backlog_segments.dec();
            metrics.backlog_bytes.dec_by(seg.size as i64);
        }
    }

    pub fn name(&self) -> String {
        format!("{}-{}", self.p.topic, self.p.partition)
    }
}
