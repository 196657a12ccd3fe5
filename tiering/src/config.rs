//! Settings of the tier, with serde and defaults so the binary can map flags onto them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where objects live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoreConfig {
    /// A directory on local disk (the embedded default: `<data-dir>/objects`).
    Local { root: PathBuf },
    /// An S3 bucket (or an S3-compatible server). Credentials come from the standard AWS chain.
    S3 {
        bucket: String,
        /// Key prefix inside the bucket ("" for none).
        #[serde(default)]
        prefix: String,
        region: String,
        /// e.g. `http://127.0.0.1:8333` for a local server; `None` for AWS itself.
        #[serde(default)]
        endpoint: Option<String>,
        /// Path-style requests (`endpoint/bucket/key`), which most S3-compatible servers want;
        /// virtual-hosted style (`bucket.endpoint/key`) otherwise.
        #[serde(default)]
        path_style: bool,
        /// Permit a plain-HTTP endpoint.
        #[serde(default)]
        allow_http: bool,
    },
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::Local {
            root: PathBuf::from("icestream-data/objects"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TieringConfig {
    pub store: StoreConfig,
    /// Segments uploaded at once across the broker.
    pub upload_concurrency: usize,
    /// First and largest wait between attempts of a failing upload (it retries forever).
    pub retry_min_backoff_ms: u64,
    pub retry_max_backoff_ms: u64,
    /// Segments whose log is larger than this go up as multipart uploads.
    pub multipart_threshold_bytes: u64,
    /// Part size of multipart uploads (S3 wants at least 5 MiB).
    pub multipart_part_bytes: u64,
    /// While a partition has a backlog, uploaded segments up to this many bytes are named by
    /// one manifest write (fewer manifest PUTs when segments are small).
    pub manifest_batch_bytes: u64,
    /// Directory of the read cache; files in it ending in `.chunk` are removed at start.
    pub cache_dir: PathBuf,
    /// Upper bound of the read cache on disk.
    pub cache_bytes: u64,
    /// Size of a cached chunk and of one ranged GET.
    pub chunk_bytes: u64,
    /// Chunks fetched ahead of a sequential reader.
    pub read_ahead_chunks: usize,
    /// Upper bound of the in-memory map of segment index objects.
    pub index_cache_bytes: u64,
    /// Worker threads of the tier's own runtime, which runs all object-store I/O.
    pub io_threads: usize,
}

impl Default for TieringConfig {
    fn default() -> Self {
        TieringConfig {
            store: StoreConfig::default(),
            upload_concurrency: 4,
            retry_min_backoff_ms: 200,
            retry_max_backoff_ms: 30_000,
            multipart_threshold_bytes: 32 << 20,
            multipart_part_bytes: 8 << 20,
            manifest_batch_bytes: 64 << 20,
            cache_dir: PathBuf::from("icestream-data/tier-cache"),
            cache_bytes: 1 << 30,
            chunk_bytes: 4 << 20,
            read_ahead_chunks: 2,
            index_cache_bytes: 64 << 20,
            io_threads: 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_configs_fill_in_defaults() {
        let c: TieringConfig = serde_json::from_str(
            r#"{"store": {"kind": "s3", "bucket": "b", "region": "eu-west-1", "path_style": true},
                "cache_bytes": 1024}"#,
        )
        .unwrap();
        assert_eq!(
            c.store,
            StoreConfig::S3 {
                bucket: "b".into(),
                prefix: String::new(),
                region: "eu-west-1".into(),
                endpoint: None,
                path_style: true,
                allow_http: false,
            }
        );
        assert_eq!(c.cache_bytes, 1024);
        assert_eq!(
            c.upload_concurrency,
            TieringConfig::default().upload_concurrency
        );
        let local: TieringConfig =
            serde_json::from_str(r#"{"store": {"kind": "local", "root": "/d/objects"}}"#).unwrap();
        assert_eq!(
            local.store,
            StoreConfig::Local {
                root: "/d/objects".into()
            }
        );
    }
}
