//! A partition's life in the tier: open (load the manifest, sweep orphans), delete_before,
//! close. Each write of a manifest holds the partition's manifest lock.

use std::collections::HashSet;
use std::sync::Arc;

use engine::remote::{RemoteExtent, RemotePartition};
use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::TieringError;
use crate::layout;
use crate::manifest::{ManifestSegment, PartitionManifest};
use crate::partition::PartitionState;
use crate::Inner;

impl Inner {
    pub(crate) async fn open(
        self: Arc<Self>,
        p: RemotePartition,
    ) -> Result<RemoteExtent, TieringError> {
        if let Ok(st) = self.partition(&p) {
            return Ok(st.view().extent());
        }
        let key = layout::partition_manifest_key(p.topic_id, p.partition);
        let m = PartitionManifest::load(self.store.as_ref(), &key)
            .await?
            .unwrap_or_else(|| PartitionManifest::empty(&p.topic, p.topic_id, p.partition));
        if m.topic_id != p.topic_id || m.partition != p.partition {
            return Err(TieringError::corrupt(
                &key,
                format!(
                    "manifest of {}/{} found where {}/{} belongs",
                    m.topic_id, m.partition, p.topic_id, p.partition
                ),
            ));
        }
        let st = {
            let mut map = self.partitions.write();
            map.entry(p.clone())
                .or_insert_with(|| Arc::new(PartitionState::new(p.clone(), m)))
                .clone()
        };
        let this = self.clone();
        let sweep_state = st.clone();
        self.handle.spawn(async move {
            if let Err(e) = this.sweep(&sweep_state).await {
                tracing::warn!(partition = %sweep_state.name(), error = %e, "orphan sweep failed");
            }
        });
        Ok(st.view().extent())
    }

    /// Deletes objects a crash left unnamed below the manifest's end: segments whose
    /// deletion was interrupted after the manifest dropped them. Unnamed objects at or past
    /// the end are left alone: an upload may be writing them, and a re-upload overwrites them.
    async fn sweep(&self, st: &PartitionState) -> Result<(), TieringError> {
        // No upload attempt runs meanwhile: one may be writing keys below the end (a segment
        // straddling the start) that its manifest write is about to name.
        let _busy = st.busy.lock().await;
        // Sweeps share the upload bound, so a start with many partitions does not list them
        // all at once.
        let _permit = self.upload_permits.acquire().await;
        let _guard = st.manifest.lock().await;
        let m = st.view();
        let end = m.covered_end();
        let named: HashSet<&str> = m
            .segments
            .iter()
            .flat_map(|s| s.objects.iter().map(|o| o.key.as_str()))
            .collect();
        let metas = self.partition_objects(st).await?;
        for meta in metas {
            let Some(base) = layout::base_of_segment_object(&meta.location) else {
                continue;
            };
            if base < end && !named.contains(meta.location.as_ref()) {
                delete_quietly(self.store.as_ref(), &meta.location).await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn delete_before(
        self: Arc<Self>,
        p: RemotePartition,
        offset: i64,
    ) -> Result<RemoteExtent, TieringError> {
        let st = self.partition(&p)?;
        let mut guard = st.manifest.lock().await;
        if offset <= guard.log_start_offset {
            return Ok(guard.extent());
        }
        let Some(mut m) = crate::leadership::base_for_write(&self, &st, &mut guard).await? else {
            // Only the leader trims the shared tier.
            return Ok(guard.extent());
        };
        if offset <= m.log_start_offset {
            return Ok(m.extent());
        }
        m.log_start_offset = offset;
        let doomed: Vec<ManifestSegment> = m
            .segments
            .iter()
            .filter(|s| s.next_offset <= offset)
            .cloned()
            .collect();
        m.segments.retain(|s| s.next_offset > offset);
        // The new start is persisted before any object goes, so no reader is ever sent to one.
        m.store(self.store.as_ref(), &st.manifest_key).await?;
        let m = Arc::new(m);
        *guard = m.clone();
        st.publish(m.clone());
        drop(guard);
        for s in doomed {
            for o in &s.objects {
                if let Err(e) =
                    delete_quietly(self.store.as_ref(), &Path::from(o.key.as_str())).await
                {
                    // Left for the next open's sweep; the manifest no longer names it.
                    tracing::warn!(error = %e, "could not delete a segment object");
                }
            }
        }
        Ok(m.extent())
    }

    pub(crate) async fn close(
        self: Arc<Self>,
        p: RemotePartition,
        delete_data: bool,
    ) -> Result<(), TieringError> {
        let Some(st) = self.partitions.write().remove(&p) else {
            if !delete_data {
                return Ok(());
            }
            // Deleting a topic whose partition was never opened here: its data may exist.
            let st = Arc::new(PartitionState::new(
                p.clone(),
                PartitionManifest::empty(&p.topic, p.topic_id, p.partition),
            ));
            st.mark_closed();
            return self.delete_partition_data(&st).await;
        };
        st.mark_closed();
        st.drop_queue(&self.metrics);
        // Wait out an upload attempt in flight; the worker then sees `closed` and stops.
        let _busy = st.busy.lock().await;
        if delete_data {
            self.delete_partition_data(&st).await?;
        }
        Ok(())
    }

    /// Every object under the partition's prefix.
    async fn partition_objects(
        &self,
        st: &PartitionState,
    ) -> Result<Vec<object_store::ObjectMeta>, TieringError> {
        let prefix = layout::partition_prefix(st.p.topic_id, st.p.partition);
        self.store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| TieringError::store("list", &prefix, e))
    }

    /// Manifest first, then every object under the partition's prefix.
    async fn delete_partition_data(&self, st: &PartitionState) -> Result<(), TieringError> {
        let _guard = st.manifest.lock().await;
        delete_quietly(self.store.as_ref(), &st.manifest_key).await?;
        let metas = self.partition_objects(st).await?;
        for meta in metas {
            delete_quietly(self.store.as_ref(), &meta.location).await?;
        }
        Ok(())
    }
}

async fn delete_quietly(store: &dyn ObjectStore, key: &Path) -> Result<(), TieringError> {
    match store.delete(key).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(TieringError::store("delete", key, e)),
    }
}
