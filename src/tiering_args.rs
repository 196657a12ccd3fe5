//! `icestream serve` flags for tiered storage: where objects go, and the tier's knobs.

use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::Args;
use tiering::{StoreConfig, TieringConfig};

/// Object storage for tiered segments and unmounted topics. The default is a directory under
/// the data dir, so tiering works with nothing else running.
#[derive(Args, Debug, Clone)]
pub struct TieringArgs {
    /// Object store: local (a directory, --object-store-dir) or s3
    #[arg(long, env = "ICESTREAM_OBJECT_STORE", default_value = "local", value_parser = ["local", "s3"])]
    pub object_store: String,
    /// Directory of the local object store (default: <data-dir>/objects)
    #[arg(long, env = "ICESTREAM_OBJECT_STORE_DIR")]
    pub object_store_dir: Option<PathBuf>,
    /// S3 bucket (with --object-store s3); credentials come from the standard AWS chain
    #[arg(long, env = "ICESTREAM_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// Key prefix inside the bucket
    #[arg(long, env = "ICESTREAM_S3_PREFIX", default_value = "")]
    pub s3_prefix: String,
    /// S3 region
    #[arg(long, env = "ICESTREAM_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// S3 endpoint of an S3-compatible server, e.g. http://127.0.0.1:8333
    #[arg(long, env = "ICESTREAM_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Path-style requests (endpoint/bucket/key), which most S3-compatible servers want
    #[arg(long, env = "ICESTREAM_S3_PATH_STYLE", default_value_t = false, action = clap::ArgAction::Set)]
    pub s3_path_style: bool,
    /// Default remote.storage.enable for new topics
    #[arg(long, env = "ICESTREAM_REMOTE_STORAGE_DEFAULT", default_value_t = false, action = clap::ArgAction::Set)]
    pub remote_storage_default: bool,
    /// Segments uploaded at once
    #[arg(long, env = "ICESTREAM_UPLOAD_CONCURRENCY", default_value_t = 4)]
    pub upload_concurrency: usize,
    /// Upper bound of the remote-read cache on local disk (<data-dir>/tier-cache)
    #[arg(long, env = "ICESTREAM_REMOTE_CACHE_BYTES", default_value_t = 1 << 30)]
    pub remote_cache_bytes: u64,
}

impl TieringArgs {
    /// In a cluster, why the object store is not one all brokers share (`None` when it is):
    /// the default local store is each broker's own `<data-dir>/objects`, where a new leader
    /// would not find what another broker uploaded. S3, or an `--object-store-dir` every broker
    /// is given (a shared mount), is shared.
    pub fn unshared_in_cluster(&self) -> Option<String> {
        (self.object_store != "s3" && self.object_store_dir.is_none()).then(|| {
            "tiered storage in a cluster needs an object store every broker shares: start \
             every broker with --object-store s3 (and the same bucket), or with \
             --object-store-dir on a directory all of them mount; this broker's object store \
             is its own <data-dir>/objects"
                .to_string()
        })
    }

    /// The object store tiering (and the built-in Iceberg catalog) uses.
    pub fn store_config(&self, data_dir: &Path) -> anyhow::Result<StoreConfig> {
        Ok(match self.object_store.as_str() {
            "s3" => {
                let Some(bucket) = self.s3_bucket.clone() else {
                    bail!("--object-store s3 needs --s3-bucket");
                };
                StoreConfig::S3 {
                    bucket,
                    prefix: self.s3_prefix.trim_matches('/').to_string(),
                    region: self.s3_region.clone(),
                    allow_http: self
                        .s3_endpoint
                        .as_deref()
                        .is_some_and(|e| e.starts_with("http://")),
                    endpoint: self.s3_endpoint.clone(),
                    path_style: self.s3_path_style,
                }
            }
            _ => StoreConfig::Local {
                root: self
                    .object_store_dir
                    .clone()
                    .unwrap_or_else(|| data_dir.join("objects")),
            },
        })
    }

    pub fn tiering_config(&self, data_dir: &Path) -> anyhow::Result<TieringConfig> {
        let store = self.store_config(data_dir)?;
        if self.upload_concurrency == 0 {
            bail!("--upload-concurrency must be at least 1");
        }
        Ok(TieringConfig {
            store,
            upload_concurrency: self.upload_concurrency,
            cache_dir: data_dir.join("tier-cache"),
            cache_bytes: self.remote_cache_bytes,
            ..TieringConfig::default()
        })
    }
}
