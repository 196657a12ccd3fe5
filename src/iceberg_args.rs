//! `icestream serve` flags for Iceberg topics: which catalog the translator commits to, the
//! default namespace and the snapshot expiry policy.

use std::sync::Arc;

use clap::Args;
use iceberg_sink::lake::BuiltinCatalog;
use iceberg_sink::TranslatorConfig;

#[derive(Args, Debug, Clone)]
pub struct IcebergArgs {
    /// Namespace of topic tables whose topic sets no iceberg.namespace
    #[arg(long, env = "ICESTREAM_ICEBERG_NAMESPACE", default_value = "kafka")]
    pub iceberg_namespace: String,
    /// Snapshot expiry: the newest snapshots every table keeps
    #[arg(long, env = "ICESTREAM_ICEBERG_SNAPSHOTS_KEEP", default_value_t = 100)]
    pub iceberg_snapshots_keep: usize,
    /// Snapshot expiry: older snapshots past this age (ms) are expired
    #[arg(
        long,
        env = "ICESTREAM_ICEBERG_SNAPSHOT_MAX_AGE_MS",
        default_value_t = 86_400_000
    )]
    pub iceberg_snapshot_max_age_ms: i64,
}

impl IcebergArgs {
    pub fn translator_config(&self) -> TranslatorConfig {
        TranslatorConfig {
            default_namespace: self.iceberg_namespace.clone(),
            snapshots_keep: self.iceberg_snapshots_keep.max(1),
            snapshot_max_age_ms: self.iceberg_snapshot_max_age_ms.max(0),
            ..TranslatorConfig::default()
        }
    }

    /// The catalog the translator commits to, and how to describe it.
    pub async fn lake_catalog(
        &self,
        builtin: Arc<iceberg_sink::catalog::Catalog>,
    ) -> anyhow::Result<(Arc<dyn iceberg_sink::iceberg::Catalog>, String)> {
        let lake = BuiltinCatalog::new(builtin)
            .map_err(|e| anyhow::anyhow!("cannot start the Iceberg translator: {e}"))?;
        Ok((Arc::new(lake), "built-in".into()))
    }
}
