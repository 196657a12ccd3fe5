//! The built-in Iceberg REST catalog on the object store tiering uses: the broker's own
//! `<data-dir>/objects` by default, a shared `--object-store-dir`, or S3. Its pointers live in
//! `catalog/` and its tables in `warehouse/` under the store's root (under `<prefix>/` in S3),
//! so brokers over one shared store serve one catalog.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use iceberg_sink::catalog::{Catalog, CatalogConfig, Migrated};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use tiering::StoreConfig;

use crate::tiering_args::TieringArgs;

/// Opens the catalog over the tiering store, checks that the store can make commits atomic,
/// and migrates pointers of the earlier per-broker layout (in the store itself, and in the
/// broker's own `<data-dir>/objects` when the catalog has moved elsewhere).
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
    // The broker's earlier per-broker catalog, when the catalog now lives elsewhere.
    let legacy = match (on_own_dir, own_dir.join("catalog").is_dir()) {
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
    catalog
        .probe()
        .await
        .context("the Iceberg catalog cannot run on this object store")?;
    let migrated = catalog
        .migrate_legacy()
        .await
        .context("cannot migrate the Iceberg catalog's pointers to versioned ones")?;
    log_migrated("the catalog's store", &migrated);
    if let Some((fs, root)) = legacy {
        let imported = catalog
            .import_legacy(fs.as_ref(), &ObjectPath::from("catalog"))
            .await
            .with_context(|| {
                format!(
                    "cannot take the Iceberg tables of {} over into the catalog on the shared \
                     object store",
                    root.display()
                )
            })?;
        log_migrated(&root.display().to_string(), &imported);
    }
    Ok(Arc::new(catalog))
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
