//! Broker-wide tier metrics (no per-partition labels).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Default, Clone)]
pub struct Metrics {
    pub backlog_segments: Gauge,
    pub backlog_bytes: Gauge,
    pub uploaded_segments: Counter,
    pub uploaded_bytes: Counter,
    pub upload_errors: Counter,
    pub remote_read_bytes: Counter,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub cache_bytes: Gauge,
}

impl Metrics {
    /// Registers under `tiering_` (so `icestream_tiering_...` in the broker's registry).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("tiering");
        r.register(
            "upload_backlog_segments",
            "Sealed segments queued for upload and not yet in a manifest",
            self.backlog_segments.clone(),
        );
        r.register(
            "upload_backlog_bytes",
            "Bytes of the segments queued for upload",
            self.backlog_bytes.clone(),
        );
        r.register(
            "uploaded_segments",
            "Segments uploaded and recorded in their partition manifest",
            self.uploaded_segments.clone(),
        );
        r.register(
            "uploaded_bytes",
            "Bytes of segment logs uploaded",
            self.uploaded_bytes.clone(),
        );
        r.register(
            "upload_errors",
            "Failed upload attempts (each is retried)",
            self.upload_errors.clone(),
        );
        r.register(
            "remote_read_bytes",
            "Bytes fetched from the object store for reads",
            self.remote_read_bytes.clone(),
        );
        r.register(
            "cache_hits",
            "Chunk reads served from the local read cache",
            self.cache_hits.clone(),
        );
        r.register(
            "cache_misses",
            "Chunk reads that had to fetch from the object store",
            self.cache_misses.clone(),
        );
        r.register(
            "cache_bytes",
            "Bytes held by the local read cache",
            self.cache_bytes.clone(),
        );
    }
}
