//! Broker-wide tier metrics (no per-partition labels).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

engine::metric_set! {
    /// Registered under `tiering_` (so `icestream_tiering_...` in the broker's registry).
    pub struct Metrics in "tiering" {
        /// Sealed segments queued for upload and not yet in a manifest
        pub backlog_segments: Gauge => "upload_backlog_segments",
        /// Bytes of the segments queued for upload
        pub backlog_bytes: Gauge => "upload_backlog_bytes",
        /// Segments uploaded and recorded in their partition manifest
        pub uploaded_segments: Counter => "uploaded_segments",
        /// Bytes of segment logs uploaded
        pub uploaded_bytes: Counter => "uploaded_bytes",
        /// Failed upload attempts (each is retried)
        pub upload_errors: Counter => "upload_errors",
        /// Bytes fetched from the object store for reads
        pub remote_read_bytes: Counter => "remote_read_bytes",
        /// Chunk reads served from the local read cache
        pub cache_hits: Counter => "cache_hits",
        /// Chunk reads that had to fetch from the object store
        pub cache_misses: Counter => "cache_misses",
        /// Bytes held by the local read cache
        pub cache_bytes: Gauge => "cache_bytes",
    }
}
