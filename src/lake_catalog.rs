//! The built-in Iceberg REST catalog on the object store tiering uses: the broker's own
//! `<data-dir>/objects` by default, a shared `--object-store-dir`, or S3. Its pointers live in
//! `catalog/` and its tables in `warehouse/` under the store's root (under `<prefix>/` in S3),
//! so brokers over one shared store serve one catalog.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use iceberg_sink::catalog::{Catalog, CatalogConfig, CatalogError, Migrated};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use tiering::StoreConfig;

use crate::tiering_args::TieringArgs;

/// Opens the catalog over the tiering store, checks that the store can make commits atomic
/// (refusing to start on one that cannot), and migrates pointers of the earlier per-broker
/// layout (in the store itself, and in the broker's own `<data-dir>/objects` when the catalog
/// has moved elsewhere). A store that does not answer yet is checked in the background.
pub async fn open(tiering: &TieringArgs, data_dir: &Path) -> anyhow::Result<Arc<Catalog>> {
    let store = tiering.store_config(data_dir)?;
    let objects = tiering::store::build_store(&store)
        .map_err(|e| anyhow::anyhow!("cannot open the object store of the Iceberg catalog: {e}"))?;
    let own_dir = data_dir.join("objects");
    let (warehouse_location, client_config, on_own_dir) = match &store {
        StoreConfig::Local { root } => {
            let root = root
                .canonicalize()
                .with_context(|| format!("cannot resolve {}", root.display()))?;
            let own = own_dir.canonicalize().ok();
            (
                format!("file://{}/warehouse", root.display()),
                HashMap::new(),
                own.as_ref() == Some(&root),
            )
        }
        StoreConfig::S3 {
            bucket,
            prefix,
            region,
            endpoint,
            path_style,
            ..
        } => (
            match prefix.trim_matches('/') {
                "" => format!("s3://{bucket}/warehouse"),
                p => format!("s3://{bucket}/{p}/warehouse"),
            },
            s3_client_config(region, endpoint.as_deref(), *path_style),
            false,
        ),
    };
    let mut catalog = Catalog::new(
        objects,
        CatalogConfig {
            warehouse_location,
            warehouse_path: ObjectPath::from("warehouse"),
            catalog_path: ObjectPath::from("catalog"),
        },
    )
    .with_client_config(client_config);
    // The broker's earlier per-broker catalog and warehouse, when the catalog now lives
    // elsewhere: its tables are taken over, and served from there for as long as they last.
    let legacy = match (on_own_dir, own_dir.is_dir()) {
        (false, true) => {
            let root = own_dir
                .canonicalize()
                .with_context(|| format!("cannot resolve {}", own_dir.display()))?;
            let fs = Arc::new(
                LocalFileSystem::new_with_prefix(&root)
                    .with_context(|| format!("cannot open {}", root.display()))?,
            );
            catalog = catalog.with_foreign_warehouse(
                &format!("file://{}/warehouse", root.display()),
                ObjectPath::from("warehouse"),
                fs.clone(),
            );
            Some((fs, root))
        }
        _ => None,
    };
    let catalog = Arc::new(catalog);
    match check_and_migrate(&catalog, legacy.as_ref()).await {
        Ok(()) => {}
        Err(e @ CatalogError::NoCreateIfAbsent(_)) => {
            return Err(anyhow::Error::new(e)
                .context("the Iceberg catalog cannot run on this object store"))
        }
        Err(e) => {
            // Kafka does not wait on the lake: a store that cannot be reached yet is checked
            // (and the earlier layout migrated) in the background, and catalog requests fail
            // meanwhile as they would anyway.
            tracing::warn!(error = %e, "cannot check the Iceberg catalog's object store yet; retrying in the background");
            let catalog = catalog.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(RECHECK_EVERY).await;
                    match check_and_migrate(&catalog, legacy.as_ref()).await {
                        Ok(()) => {
                            tracing::info!("the Iceberg catalog's object store is checked");
                            return;
                        }
                        Err(e @ CatalogError::NoCreateIfAbsent(_)) => {
                            tracing::error!(error = %e, "the Iceberg catalog refuses every change");
                            return;
                        }
                        Err(e) => tracing::debug!(error = %e, "Iceberg catalog store check failed"),
                    }
                }
            });
        }
    }
    Ok(catalog)
}

/// How often an unreachable store is checked again.
const RECHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The startup probe, then the migration of pointers of the earlier layout: in the catalog's
/// store, and from `legacy` (the broker's own objects dir) when the catalog is elsewhere.
async fn check_and_migrate(
    catalog: &Catalog,
    legacy: Option<&(Arc<LocalFileSystem>, PathBuf)>,
) -> Result<(), CatalogError> {
    catalog.probe().await?;
    log_migrated("the catalog's store", &catalog.migrate_legacy().await?);
    if let Some((fs, root)) = legacy {
        let imported = catalog
            .import_legacy(fs.as_ref(), &ObjectPath::from("catalog"))
            .await?;
        log_migrated(&root.display().to_string(), &imported);
    }
    Ok(())
}

fn log_migrated(from: &str, m: &Migrated) {
    if m.namespaces + m.tables > 0 || !m.skipped_tables.is_empty() {
        tracing::info!(from, namespaces = m.namespaces, tables = m.tables, skipped = ?m.skipped_tables, "migrated Iceberg catalog pointers of the earlier layout");
    }
}

/// What a client needs to read and write an S3 warehouse, besides its own credentials.
fn s3_client_config(
    region: &str,
    endpoint: Option<&str>,
    path_style: bool,
) -> HashMap<String, String> {
    let mut c = HashMap::from([
        ("s3.region".to_string(), region.to_string()),
        ("client.region".to_string(), region.to_string()),
        ("s3.path-style-access".to_string(), path_style.to_string()),
    ]);
    if let Some(e) = endpoint {
        c.insert("s3.endpoint".to_string(), e.to_string());
    }
    c
}
