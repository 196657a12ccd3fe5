//! `icestream serve` flags for Iceberg topics: which catalog the translator commits to, the
//! default namespace, the snapshot expiry policy, and the built-in catalog's credential
//! vending.

use std::sync::Arc;

use clap::Args;
use iceberg_sink::catalog::vending::{CredentialVendor, VendingConfig};
use iceberg_sink::lake::{BuiltinCatalog, RestSettings};
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
    /// An external Iceberg REST catalog to commit topic tables to, instead of the built-in one
    #[arg(long, env = "ICESTREAM_ICEBERG_CATALOG_URI")]
    pub iceberg_catalog_uri: Option<String>,
    /// Warehouse to ask the external catalog for (e.g. s3://lake or a catalog-specific name)
    #[arg(long, env = "ICESTREAM_ICEBERG_WAREHOUSE")]
    pub iceberg_warehouse: Option<String>,
    /// OAuth2 client-credentials id for the external catalog
    #[arg(long, env = "ICESTREAM_ICEBERG_OAUTH2_CLIENT_ID")]
    pub iceberg_oauth2_client_id: Option<String>,
    /// OAuth2 client-credentials secret for the external catalog
    #[arg(
        long,
        env = "ICESTREAM_ICEBERG_OAUTH2_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub iceberg_oauth2_client_secret: Option<String>,
    /// OAuth2 token endpoint (default: the catalog's /v1/oauth/tokens)
    #[arg(long, env = "ICESTREAM_ICEBERG_OAUTH2_SERVER_URI")]
    pub iceberg_oauth2_server_uri: Option<String>,
    /// OAuth2 scope (default: catalog)
    #[arg(long, env = "ICESTREAM_ICEBERG_OAUTH2_SCOPE")]
    pub iceberg_oauth2_scope: Option<String>,
    /// A bearer token for the external catalog (instead of client credentials)
    #[arg(long, env = "ICESTREAM_ICEBERG_TOKEN", hide_env_values = true)]
    pub iceberg_token: Option<String>,
    /// S3 endpoint of the external catalog's warehouse (overrides what the catalog says);
    /// credentials come from the standard AWS variables unless the catalog vends them
    #[arg(long, env = "ICESTREAM_ICEBERG_S3_ENDPOINT")]
    pub iceberg_s3_endpoint: Option<String>,
    /// S3 region of the external catalog's warehouse
    #[arg(long, env = "ICESTREAM_ICEBERG_S3_REGION")]
    pub iceberg_s3_region: Option<String>,
    /// Path-style S3 requests for the external catalog's warehouse
    #[arg(long, env = "ICESTREAM_ICEBERG_S3_PATH_STYLE", default_value_t = false, action = clap::ArgAction::Set)]
    pub iceberg_s3_path_style: bool,
    /// STS endpoint for credential vending by the built-in catalog (with --object-store s3):
    /// loadTable then hands clients short-lived keys scoped to the table. Off when unset
    #[arg(
        long,
        env = "ICESTREAM_ICEBERG_STS_ENDPOINT",
        requires = "iceberg_sts_role_arn"
    )]
    pub iceberg_sts_endpoint: Option<String>,
    /// Role the broker assumes (AssumeRole, its own AWS credentials) to vend table credentials
    #[arg(
        long,
        env = "ICESTREAM_ICEBERG_STS_ROLE_ARN",
        requires = "iceberg_sts_endpoint"
    )]
    pub iceberg_sts_role_arn: Option<String>,
    /// Lifetime of vended credentials in seconds (STS allows 900 up to the role's maximum)
    #[arg(
        long,
        env = "ICESTREAM_ICEBERG_CREDENTIALS_TTL_SECS",
        default_value_t = 3600
    )]
    pub iceberg_credentials_ttl_secs: u64,
}

impl IcebergArgs {
    /// `builtin_shared`: every broker of the cluster serves the same built-in catalog (their
    /// object store is shared), so each partition is translated by its leader alone.
    pub fn translator_config(&self, builtin_shared: bool) -> TranslatorConfig {
        TranslatorConfig {
            default_namespace: self.iceberg_namespace.clone(),
            snapshots_keep: self.iceberg_snapshots_keep.max(1),
            snapshot_max_age_ms: self.iceberg_snapshot_max_age_ms.max(0),
            shared_catalog: self.iceberg_catalog_uri.is_some() || builtin_shared,
            ..TranslatorConfig::default()
        }
    }

    /// The catalog the translator commits to, and how to describe it.
    pub async fn lake_catalog(
        &self,
        builtin: Arc<iceberg_sink::catalog::Catalog>,
    ) -> anyhow::Result<(Arc<dyn iceberg_sink::iceberg::Catalog>, String)> {
        if let Some(uri) = &self.iceberg_catalog_uri {
            return self.rest_catalog(uri).await;
        }
        let lake = BuiltinCatalog::new(builtin)
            .map_err(|e| anyhow::anyhow!("cannot start the Iceberg translator: {e}"))?;
        Ok((Arc::new(lake), "built-in".into()))
    }
}

impl IcebergArgs {
    /// The built-in catalog's credential vending, if the STS flags are given. `s3_region` is
    /// the object store's region (`None` when the store is not S3).
    pub async fn credential_vendor(
        &self,
        s3_region: Option<&str>,
    ) -> anyhow::Result<Option<CredentialVendor>> {
        let (Some(endpoint), Some(role_arn)) =
            (&self.iceberg_sts_endpoint, &self.iceberg_sts_role_arn)
        else {
            return Ok(None);
        };
        let Some(region) = s3_region else {
            anyhow::bail!(
                "--iceberg-sts-endpoint vends credentials for an S3 warehouse: it needs \
                 --object-store s3"
            );
        };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            anyhow::bail!("--iceberg-sts-endpoint {endpoint:?} is not an http(s) URL");
        }
        if !(900..=43_200).contains(&self.iceberg_credentials_ttl_secs) {
            anyhow::bail!(
                "--iceberg-credentials-ttl-secs must be within 900 and 43200 (STS's bounds), \
                 not {}",
                self.iceberg_credentials_ttl_secs
            );
        }
        Ok(Some(
            CredentialVendor::new(VendingConfig {
                sts_endpoint: endpoint.clone(),
                role_arn: role_arn.clone(),
                region: region.to_string(),
                ttl: std::time::Duration::from_secs(self.iceberg_credentials_ttl_secs),
            })
            .await,
        ))
    }

    async fn rest_catalog(
        &self,
        uri: &str,
    ) -> anyhow::Result<(Arc<dyn iceberg_sink::iceberg::Catalog>, String)> {
        let credential = match (
            &self.iceberg_oauth2_client_id,
            &self.iceberg_oauth2_client_secret,
        ) {
            (Some(id), Some(secret)) => Some(format!("{id}:{secret}")),
            (None, None) => None,
            _ => anyhow::bail!(
                "--iceberg-oauth2-client-id and --iceberg-oauth2-client-secret go together"
            ),
        };
        let mut s3 = std::collections::HashMap::new();
        if let Some(e) = &self.iceberg_s3_endpoint {
            s3.insert("s3.endpoint".to_string(), e.clone());
        }
        if let Some(r) = &self.iceberg_s3_region {
            s3.insert("s3.region".to_string(), r.clone());
        }
        if self.iceberg_s3_path_style {
            s3.insert("s3.path-style-access".to_string(), "true".to_string());
        }
        let settings = RestSettings {
            uri: uri.to_string(),
            warehouse: self.iceberg_warehouse.clone(),
            credential,
            token: self.iceberg_token.clone(),
            oauth2_server_uri: self.iceberg_oauth2_server_uri.clone(),
            scope: self.iceberg_oauth2_scope.clone(),
            storage_overrides: s3,
        };
        let catalog = iceberg_sink::lake::rest_catalog(&settings)
            .await
            .map_err(|e| anyhow::anyhow!("cannot use the Iceberg REST catalog at {uri}: {e}"))?;
        Ok((catalog, format!("REST {uri}")))
    }
}
