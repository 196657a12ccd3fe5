//! Tiered storage: sealed segments uploaded to an object store (local directory or S3),
//! recorded in per-partition manifests, and read back through a bounded local disk cache.
//!
//! `Tiering` implements the engine's `RemoteTier` seam. All object-store I/O runs on the
//! crate's own multi-thread runtime; the futures it hands the engine only await results from
//! there, so a slow store never stalls a shard. See docs/tiering.md.

pub mod cache;
mod cluster_mount;
pub mod config;
pub mod error;
pub mod layout;
mod leadership;
mod lifecycle;
pub mod manifest;
pub mod metrics;
pub mod mount;
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
    BoxFuture, RemoteError, RemoteExtent, RemotePartition, RemoteSegment, RemoteTier,
    SealedSegment, TierRole,
};
use object_store::ObjectStore;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::Semaphore;

pub use crate::config::{StoreConfig, TieringConfig};
pub use crate::error::TieringError;
pub use crate::manifest::PartitionManifest;
pub use crate::topic_manifest::TopicManifest;

use crate::cache::ChunkCache;
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

    /// What the object store holds of a partition, read from its stored manifest (any broker
    /// can check what the partition's leader uploaded); `None` before its first upload.
    pub fn stored_extent(
        &self,
        topic_id: uuid::Uuid,
        partition: i32,
    ) -> impl Future<Output = Result<Option<RemoteExtent>, TieringError>> + Send + 'static {
        let store = self.store();
        let key = layout::partition_manifest_key(topic_id, partition);
        self.run(async move {
            let m = PartitionManifest::load(store.as_ref(), &key).await?;
            Ok(
                m.filter(|m| m.topic_id == topic_id && m.partition == partition)
                    .map(|m| m.extent()),
            )
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
}

impl RemoteTier for Tiering {
    fn open(&self, p: &RemotePartition) -> BoxFuture<'_, Result<RemoteExtent, RemoteError>> {
        self.remote(self.inner.clone().open(p.clone()))
    }

    fn set_role(&self, p: &RemotePartition, role: TierRole) {
        match self.inner.partition(p) {
            Ok(st) => leadership::set_role(&self.inner, &st, role),
            Err(e) => tracing::warn!(error = %e, "role set for an unopened partition"),
        }
    }

    fn refresh(&self, p: &RemotePartition) {
        if let Ok(st) = self.inner.partition(p) {
            leadership::refresh_follower(&self.inner, &st);
        }
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

    fn producer_snapshot(
        &self,
        p: &RemotePartition,
        end: i64,
    ) -> BoxFuture<'_, Result<Option<Bytes>, RemoteError>> {
        let store = self.store();
        let p = p.clone();
        self.remote(async move { reader::producer_snapshot(store.as_ref(), &p, end).await })
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_tier_can_be_shared_across_threads() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<super::Tiering>();
        shareable::<std::sync::Arc<dyn engine::remote::RemoteTier>>();
    }
}
