//! Tiered storage: sealed segments uploaded to an object store (local directory or S3),
//! recorded in per-partition manifests, and read back through a bounded local disk cache.
//!
//! `Tiering` implements the engine's `RemoteTier` seam. All object-store I/O runs on the
//! crate's own multi-thread runtime; the futures it hands the engine only await results from
//! there, so a slow store never stalls a shard. See docs/tiering.md.

pub mod cache;
pub mod config;
pub mod error;
pub mod layout;
pub mod manifest;
pub mod metrics;
mod partition;
pub mod reader;
pub mod store;
pub mod topic_manifest;
pub mod uploader;
pub mod weed;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use engine::remote::{
    BoxFuture, RemoteError, RemoteExtent, RemotePartition, RemoteSegment, RemoteTier, SealedSegment,
};
use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::Semaphore;

pub use crate::config::{StoreConfig, TieringConfig};
pub use crate::error::TieringError;
pub use crate::manifest::PartitionManifest;
pub use crate::topic_manifest::TopicManifest;

use crate::cache::ChunkCache;
use crate::manifest::ManifestSegment;
use crate::metrics::Metrics;
use crate::partition::PartitionState;
use crate::reader::{IndexCache, Reader};

pub struct Tiering {
    inner: Arc<Inner>,
    /// Owned so it lives as long as the tier; shut down in the background on drop, because
    /// the last `Arc<Tiering>` may well be dropped inside some other runtime's task.
    runtime: Option<Runtime>,
}

pub(crate) struct Inner {
    pub config: TieringConfig,
    pub store: Arc<dyn ObjectStore>,
    pub handle: Handle,
    pub partitions: parking_lot::RwLock<HashMap<RemotePartition, Arc<PartitionState>>>,
    pub upload_permits: Semaphore,
    pub cache: Arc<ChunkCache>,
    pub indexes: IndexCache,
    pub metrics: Metrics,
}

impl Tiering {
    /// Builds the store from the config and starts the tier.
    pub fn start(config: TieringConfig) -> Result<Arc<Tiering>, TieringError> {
        let store = store::build_store(&config.store)?;
        Self::start_with_store(config, store)
    }

    /// Starts the tier over a given store (tests wrap stores to inject faults).
    pub fn start_with_store(
        config: TieringConfig,
        store: Arc<dyn ObjectStore>,
    ) -> Result<Arc<Tiering>, TieringError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.io_threads.max(1))
            .thread_name("tiering-io")
            .enable_all()
            .build()
            .map_err(|e| TieringError::Runtime(e.to_string()))?;
        let metrics = Metrics::default();
        let cache = Arc::new(ChunkCache::open(
            &config.cache_dir,
            config.chunk_bytes,
            config.cache_bytes,
            config.read_ahead_chunks,
            metrics.clone(),
        )?);
        let inner = Arc::new(Inner {
            upload_permits: Semaphore::new(config.upload_concurrency.max(1)),
            indexes: IndexCache::new(config.index_cache_bytes),
            handle: runtime.handle().clone(),
            partitions: parking_lot::RwLock::new(HashMap::new()),
            config,
            store,
            cache,
            metrics,
        });
        Ok(Arc::new(Tiering {
            inner,
            runtime: Some(runtime),
        }))
    }

    /// The store, for topic manifests and admin tools. Its I/O should run on a runtime that
    /// may block on the network; [`Tiering::run`] offers the tier's own.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.inner.store.clone()
    }

    /// Runs a future on the tier's runtime and awaits its result from any runtime.
    pub fn run<F, T>(
        &self,
        fut: F,
    ) -> impl Future<Output = Result<T, TieringError>> + Send + 'static
    where
        F: Future<Output = Result<T, TieringError>> + Send + 'static,
        T: Send + 'static,
    {
        let h = self.inner.handle.spawn(fut);
        async move {
            h.await
                .map_err(|e| TieringError::Runtime(format!("tiering task failed: {e}")))?
        }
    }

    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.inner.metrics.register(registry);
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Bytes the read cache holds on disk now.
    pub fn cache_bytes(&self) -> u64 {
        self.inner.cache.bytes()
    }

    /// The partition's manifest as last persisted (in memory).
    pub fn manifest(&self, p: &RemotePartition) -> Option<Arc<PartitionManifest>> {
        self.inner.partition(p).ok().map(|s| s.view())
    }

    /// Segments queued for upload and not yet in the manifest, for this partition.
    pub fn backlog(&self, p: &RemotePartition) -> usize {
        self.inner
            .partition(p)
            .map_or(0, |s| s.queue.lock().items.len())
    }

    /// Waits until the partition's remote end reaches `offset` (unmount uploads everything,
    /// then waits here) or `timeout` passes.
    pub fn wait_uploaded(
        &self,
        p: &RemotePartition,
        offset: i64,
        timeout: Duration,
    ) -> impl Future<Output = Result<RemoteExtent, TieringError>> + Send + 'static {
        let st = self.inner.partition(p);
        let name = format!("{}-{}", p.topic, p.partition);
        self.run(async move {
            let mut rx = st?.subscribe();
            let waited = tokio::time::timeout(timeout, rx.wait_for(|e| e.end >= offset)).await;
            match waited {
                Ok(Ok(e)) => Ok(*e),
                Ok(Err(_)) => Err(TieringError::UnknownPartition(name)),
                Err(_) => Err(TieringError::Timeout {
                    partition: name,
                    offset,
                }),
            }
        })
    }

    pub fn put_topic_manifest(
        &self,
        m: TopicManifest,
    ) -> impl Future<Output = Result<(), TieringError>> + Send + 'static {
        let store = self.store();
        self.run(async move { topic_manifest::put(store.as_ref(), &m).await })
    }

    pub fn get_topic_manifest(
        &self,
        topic: &str,
    ) -> impl Future<Output = Result<TopicManifest, TieringError>> + Send + 'static {
        let (store, topic) = (self.store(), topic.to_string());
        self.run(async move { topic_manifest::get(store.as_ref(), &topic).await })
    }

    pub fn list_topic_manifests(
        &self,
    ) -> impl Future<Output = Result<Vec<String>, TieringError>> + Send + 'static {
        let store = self.store();
        self.run(async move { topic_manifest::list(store.as_ref()).await })
    }

    pub fn delete_topic_manifest(
        &self,
        topic: &str,
    ) -> impl Future<Output = Result<(), TieringError>> + Send + 'static {
        let (store, topic) = (self.store(), topic.to_string());
        self.run(async move { topic_manifest::delete(store.as_ref(), &topic).await })
    }

    fn remote<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, TieringError>> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, RemoteError>> {
        let f = self.run(fut);
        Box::pin(async move { f.await.map_err(RemoteError::from) })
    }
}

impl Drop for Tiering {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Inner {
    fn partition(&self, p: &RemotePartition) -> Result<Arc<PartitionState>, TieringError> {
        self.partitions
            .read()
            .get(p)
            .cloned()
            .ok_or_else(|| TieringError::UnknownPartition(format!("{}-{}", p.topic, p.partition)))
    }

    fn reader(&self) -> Reader<'_> {
        Reader {
            store: &self.store,
            cache: &self.cache,
            indexes: &self.indexes,
        }
    }

    async fn open(self: Arc<Self>, p: RemotePartition) -> Result<RemoteExtent, TieringError> {
        if let Ok(st) = self.partition(&p) {
            return Ok(st.view().extent());
        }
        let key = layout::partition_manifest_key(p.topic_id, p.partition);
        let m = PartitionManifest::load(self.store.as_ref(), &key)
            .await?
            .unwrap_or_else(|| PartitionManifest::empty(&p.topic, p.topic_id, p.partition));
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
        let _guard = st.manifest.lock().await;
        let m = st.view();
        let end = m.covered_end();
        let named: std::collections::HashSet<&str> = m
            .segments
            .iter()
            .flat_map(|s| s.objects.iter().map(|o| o.key.as_str()))
            .collect();
        let prefix = layout::partition_prefix(st.p.topic_id, st.p.partition);
        let metas: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| TieringError::store("list", &prefix, e))?;
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

    async fn delete_before(
        self: Arc<Self>,
        p: RemotePartition,
        offset: i64,
    ) -> Result<RemoteExtent, TieringError> {
        let st = self.partition(&p)?;
        let mut guard = st.manifest.lock().await;
        if offset <= guard.log_start_offset {
            return Ok(guard.extent());
        }
        let mut m = (**guard).clone();
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

    async fn close(
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
        uploader::drop_queue(&self, &st);
        // Wait out an upload attempt in flight; the worker then sees `closed` and stops.
        let _busy = st.busy.lock().await;
        if delete_data {
            self.delete_partition_data(&st).await?;
        }
        Ok(())
    }

    /// Manifest first, then every object under the partition's prefix.
    async fn delete_partition_data(&self, st: &PartitionState) -> Result<(), TieringError> {
        let _guard = st.manifest.lock().await;
        delete_quietly(self.store.as_ref(), &st.manifest_key).await?;
        let prefix = layout::partition_prefix(st.p.topic_id, st.p.partition);
        let metas: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| TieringError::store("list", &prefix, e))?;
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

impl RemoteTier for Tiering {
    fn open(&self, p: &RemotePartition) -> BoxFuture<'_, Result<RemoteExtent, RemoteError>> {
        self.remote(self.inner.clone().open(p.clone()))
    }

    fn offer(&self, p: &RemotePartition, segments: Vec<SealedSegment>) {
        match self.inner.partition(p) {
            Ok(st) => uploader::offer(&self.inner, &st, segments),
            Err(e) => tracing::warn!(error = %e, "segments offered for an unopened partition"),
        }
    }

    fn extent(&self, p: &RemotePartition) -> Option<RemoteExtent> {
        self.inner.partition(p).ok().map(|s| s.view().extent())
    }

    fn segments(&self, p: &RemotePartition) -> Vec<RemoteSegment> {
        self.inner.partition(p).map_or_else(
            |_| Vec::new(),
            |s| s.view().segments.iter().map(|s| s.remote()).collect(),
        )
    }

    fn read(
        &self,
        p: &RemotePartition,
        offset: i64,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<Option<Bytes>, RemoteError>> {
        let inner = self.inner.clone();
        let p = p.clone();
        self.remote(async move {
            let m = inner.partition(&p)?.view();
            inner.reader().read(&m, offset, max_bytes).await
        })
    }

    fn offset_for_timestamp(
        &self,
        p: &RemotePartition,
        ts: i64,
    ) -> BoxFuture<'_, Result<Option<(i64, i64)>, RemoteError>> {
        let inner = self.inner.clone();
        let p = p.clone();
        self.remote(async move {
            let m = inner.partition(&p)?.view();
            inner.reader().offset_for_timestamp(&m, ts).await
        })
    }

    fn delete_before(
        &self,
        p: &RemotePartition,
        offset: i64,
    ) -> BoxFuture<'_, Result<RemoteExtent, RemoteError>> {
        self.remote(self.inner.clone().delete_before(p.clone(), offset))
    }

    fn close(
        &self,
        p: &RemotePartition,
        delete_data: bool,
    ) -> BoxFuture<'_, Result<(), RemoteError>> {
        self.remote(self.inner.clone().close(p.clone(), delete_data))
    }
}
