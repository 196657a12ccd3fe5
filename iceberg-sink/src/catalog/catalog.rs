//! The catalog's operations, callable in-process (the translator) or through the REST router.
//!
//! Atomicity: a table's state is the metadata file its pointer object names. A change writes a
//! new metadata file (never overwriting one), then swaps the pointer with a conditional PUT
//! (`PutMode::Update` on the version read, `PutMode::Create` for a new table). A crash before
//! the swap leaves the old pointer, so the old state, plus an orphan metadata file; after it,
//! the new state. Two writers racing on one table: in this broker they queue on the table's
//! lock and the second sees the first's result (its requirements then fail with
//! CommitFailed, and the client retries); across processes the conditional PUT lets only one
//! win.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use iceberg::spec::{TableMetadata, TableMetadataBuilder};
use iceberg::{NamespaceIdent, TableCreation, TableIdent, TableRequirement, TableUpdate};
use object_store::path::Path;
use object_store::ObjectStore;
use serde::Serialize;

use super::error::{CatalogError, Result};
use super::locks::Locks;
use super::names::{self, display_namespace, display_table};
use super::store::{metadata_file_location, NamespaceRecord, Store, TableRecord, Warehouse};

/// Where the catalog keeps its state in the object store.
#[derive(Debug, Clone)]
pub struct CatalogConfig {
    /// The warehouse as clients see it, e.g. `file:///abs/data/objects/warehouse`; new tables
    /// get `<warehouse>/<namespace>/<table>`.
    pub warehouse_location: String,
    /// The same place as a path in the object store, e.g. `warehouse`.
    pub warehouse_path: Path,
    /// Prefix of the catalog's own pointer objects in the object store, e.g. `catalog`.
    pub catalog_path: Path,
}

/// A table as loaded: its current metadata file and that file's contents.
#[derive(Debug, Clone)]
pub struct LoadedTable {
    pub metadata_location: String,
    pub metadata: Arc<TableMetadata>,
}

/// The outcome of a namespace properties update, as the REST API reports it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PropertiesUpdate {
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    pub missing: Vec<String>,
}

/// The built-in Iceberg catalog over an object store.
pub struct Catalog {
    store: Store,
    locks: Locks,
}

fn ns_lock(ns: &NamespaceIdent) -> String {
    format!("ns:{}", names::namespace_key(ns))
}

fn table_lock(ident: &TableIdent) -> String {
    format!(
        "table:{}/{}",
        names::namespace_key(&ident.namespace),
        names::encode(&ident.name)
    )
}

impl Catalog {
    pub fn new(objects: Arc<dyn ObjectStore>, config: CatalogConfig) -> Self {
        let warehouse = Warehouse::new(&config.warehouse_location, config.warehouse_path);
        Self {
            store: Store::new(objects, config.catalog_path, warehouse),
            locks: Locks::default(),
        }
    }

    pub fn warehouse_location(&self) -> &str {
        &self.store.warehouse.location
    }

    // ------------------------------------------------------------------ namespaces

    async fn namespace_record(&self, ns: &NamespaceIdent) -> Result<NamespaceRecord> {
        names::check_namespace(ns)?;
        match self.store.get_json(&self.store.namespace_path(ns)).await? {
            Some(v) => Ok(v.value),
            None => Err(CatalogError::NoSuchNamespace(display_namespace(ns))),
        }
    }

    /// Namespaces directly under `parent` (top-level ones without it).
    pub async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> Result<Vec<NamespaceIdent>> {
        if let Some(parent) = parent {
            self.namespace_record(parent).await?;
        }
        let depth = parent.map_or(0, |p| p.as_ref().len());
        let mut out: Vec<NamespaceIdent> = self
            .store
            .list(&self.store.namespaces_prefix())
            .await?
            .iter()
            .filter_map(|p| p.filename()?.strip_suffix(".json").map(str::to_string))
            .filter_map(|key| names::namespace_from_key(&key))
            .filter(|ns| {
                ns.as_ref().len() == depth + 1
                    && parent.is_none_or(|p| ns.as_ref()[..depth] == p.as_ref()[..])
            })
            .collect();
        out.sort();
        Ok(out)
    }

    pub async fn create_namespace(
        &self,
        ns: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<HashMap<String, String>> {
        names::check_namespace(ns)?;
        let _g = self.locks.lock(&ns_lock(ns)).await;
        let record = NamespaceRecord { properties };
        if !self
            .store
            .create_json(&self.store.namespace_path(ns), &record)
            .await?
        {
            return Err(CatalogError::NamespaceAlreadyExists(display_namespace(ns)));
        }
        Ok(record.properties)
    }

    pub async fn load_namespace(&self, ns: &NamespaceIdent) -> Result<HashMap<String, String>> {
        Ok(self.namespace_record(ns).await?.properties)
    }

    pub async fn namespace_exists(&self, ns: &NamespaceIdent) -> Result<bool> {
        match self.namespace_record(ns).await {
            Ok(_) => Ok(true),
            Err(CatalogError::NoSuchNamespace(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Drops an empty namespace: one with no tables and no child namespaces.
    pub async fn drop_namespace(&self, ns: &NamespaceIdent) -> Result<()> {
        names::check_namespace(ns)?;
        let _g = self.locks.lock(&ns_lock(ns)).await;
        self.namespace_record(ns).await?;
        if !self
            .store
            .list(&self.store.tables_prefix(ns))
            .await?
            .is_empty()
        {
            return Err(CatalogError::NamespaceNotEmpty(format!(
                "{} still has tables",
                display_namespace(ns)
            )));
        }
        if !self.list_namespaces(Some(ns)).await?.is_empty() {
            return Err(CatalogError::NamespaceNotEmpty(format!(
                "{} still has child namespaces",
                display_namespace(ns)
            )));
        }
        self.store.delete(&self.store.namespace_path(ns)).await
    }

    pub async fn update_namespace_properties(
        &self,
        ns: &NamespaceIdent,
        removals: Vec<String>,
        updates: HashMap<String, String>,
    ) -> Result<PropertiesUpdate> {
        names::check_namespace(ns)?;
        if let Some(both) = removals.iter().find(|k| updates.contains_key(*k)) {
            return Err(CatalogError::BadRequest(format!(
                "property {both:?} is both removed and updated"
            )));
        }
        let _g = self.locks.lock(&ns_lock(ns)).await;
        let path = self.store.namespace_path(ns);
        let Some(current) = self.store.get_json::<NamespaceRecord>(&path).await? else {
            return Err(CatalogError::NoSuchNamespace(display_namespace(ns)));
        };
        let mut record = current.value;
        let mut result = PropertiesUpdate::default();
        for key in removals {
            if record.properties.remove(&key).is_some() {
                result.removed.push(key);
            } else {
                result.missing.push(key);
            }
        }
        for (key, value) in updates {
            record.properties.insert(key.clone(), value);
            result.updated.push(key);
        }
        if !self
            .store
            .update_json(&path, &record, current.version)
            .await?
        {
            return Err(CatalogError::CommitFailed(format!(
                "namespace {} changed concurrently; retry",
                display_namespace(ns)
            )));
        }
        Ok(result)
    }

    // ------------------------------------------------------------------ tables

    pub async fn list_tables(&self, ns: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        self.namespace_record(ns).await?;
        let mut out: Vec<TableIdent> = self
            .store
            .list(&self.store.tables_prefix(ns))
            .await?
            .iter()
            .filter_map(|p| p.filename()?.strip_suffix(".json").and_then(names::decode))
            .map(|name| TableIdent::new(ns.clone(), name))
            .collect();
        out.sort();
        Ok(out)
    }

    async fn table_record(
        &self,
        ident: &TableIdent,
    ) -> Result<super::store::Versioned<TableRecord>> {
        names::check_table(ident)?;
        self.store
            .get_json(&self.store.table_path(ident))
            .await?
            .ok_or_else(|| CatalogError::NoSuchTable(display_table(ident)))
    }

    pub async fn load_table(&self, ident: &TableIdent) -> Result<LoadedTable> {
        let record = self.table_record(ident).await?.value;
        let metadata = self.store.read_metadata(&record.metadata_location).await?;
        Ok(LoadedTable {
            metadata_location: record.metadata_location,
            metadata: Arc::new(metadata),
        })
    }

    pub async fn table_exists(&self, ident: &TableIdent) -> Result<bool> {
        match self.table_record(ident).await {
            Ok(_) => Ok(true),
            Err(CatalogError::NoSuchTable(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Builds the metadata of a new table (location defaulting into the warehouse) without
    /// storing anything.
    pub fn new_table_metadata(
        &self,
        ns: &NamespaceIdent,
        mut creation: TableCreation,
    ) -> Result<TableMetadata> {
        let ident = TableIdent::new(ns.clone(), creation.name.clone());
        names::check_table(&ident)?;
        let location = match creation.location.take() {
            Some(l) => l.trim_end_matches('/').to_string(),
            None => self.store.warehouse.table_location(&ident),
        };
        self.store.location_path(&location)?;
        creation.location = Some(location);
        guarded(|| {
            TableMetadataBuilder::from_table_creation(creation)
                .and_then(|b| b.build())
                .map(|r| r.metadata)
                .map_err(CatalogError::from_iceberg)
        })
    }

    pub async fn create_table(
        &self,
        ns: &NamespaceIdent,
        creation: TableCreation,
    ) -> Result<LoadedTable> {
        let ident = TableIdent::new(ns.clone(), creation.name.clone());
        names::check_table(&ident)?;
        let _g = self
            .locks
            .lock_all(&[ns_lock(ns), table_lock(&ident)])
            .await;
        self.namespace_record(ns).await?;
        if self.table_exists(&ident).await? {
            return Err(CatalogError::TableAlreadyExists(display_table(&ident)));
        }
        let metadata = self.new_table_metadata(ns, creation)?;
        self.store_new_table(&ident, metadata, 0).await
    }

    /// Writes a new table's first metadata file, then creates its pointer.
    async fn store_new_table(
        &self,
        ident: &TableIdent,
        metadata: TableMetadata,
        version: u64,
    ) -> Result<LoadedTable> {
        let location = metadata_file_location(metadata.location(), version);
        self.store.write_metadata(&location, &metadata).await?;
        let record = TableRecord {
            metadata_location: location.clone(),
            version,
        };
        if !self
            .store
            .create_json(&self.store.table_path(ident), &record)
            .await?
        {
            return Err(CatalogError::TableAlreadyExists(display_table(ident)));
        }
        Ok(LoadedTable {
            metadata_location: location,
            metadata: Arc::new(metadata),
        })
    }

    /// Registers an existing metadata file (under the warehouse) as a table.
    pub async fn register_table(
        &self,
        ident: &TableIdent,
        metadata_location: &str,
    ) -> Result<LoadedTable> {
        names::check_table(ident)?;
        let _g = self
            .locks
            .lock_all(&[ns_lock(&ident.namespace), table_lock(ident)])
            .await;
        self.namespace_record(&ident.namespace).await?;
        let metadata = self
            .store
            .read_metadata(metadata_location)
            .await
            .map_err(|e| match e {
                CatalogError::Corrupt { message, .. } => {
                    CatalogError::BadRequest(format!("{metadata_location}: {message}"))
                }
                e => e,
            })?;
        let version = version_of(metadata_location).unwrap_or(0);
        let record = TableRecord {
            metadata_location: metadata_location.to_string(),
            version,
        };
        if !self
            .store
            .create_json(&self.store.table_path(ident), &record)
            .await?
        {
            return Err(CatalogError::TableAlreadyExists(display_table(ident)));
        }
        Ok(LoadedTable {
            metadata_location: metadata_location.to_string(),
            metadata: Arc::new(metadata),
        })
    }

    /// Checks every requirement against the table's current metadata, applies the updates
    /// with iceberg's metadata builder, writes the result as a new metadata file and swaps the
    /// table's pointer to it. Failed requirements and lost races are `CommitFailed`.
    pub async fn commit_table(
        &self,
        ident: &TableIdent,
        requirements: Vec<TableRequirement>,
        updates: Vec<TableUpdate>,
    ) -> Result<LoadedTable> {
        names::check_table(ident)?;
        let _g = self.locks.lock(&table_lock(ident)).await;
        let current = self.table_record(ident).await?;
        let base = self
            .store
            .read_metadata(&current.value.metadata_location)
            .await?;
        let base_location = current.value.metadata_location.clone();
        if updates.is_empty() {
            check_requirements(&requirements, &base)?;
            return Ok(LoadedTable {
                metadata_location: base_location,
                metadata: Arc::new(base),
            });
        }
        let metadata = apply_commit(base, &base_location, &requirements, updates)?;
        let version = current.value.version + 1;
        let location = metadata_file_location(metadata.location(), version);
        self.store.write_metadata(&location, &metadata).await?;
        let record = TableRecord {
            metadata_location: location.clone(),
            version,
        };
        let swapped = self
            .store
            .update_json(&self.store.table_path(ident), &record, current.version)
            .await?;
        if !swapped {
            return Err(CatalogError::CommitFailed(format!(
                "{} was changed by another writer; reload and retry",
                display_table(ident)
            )));
        }
        Ok(LoadedTable {
            metadata_location: location,
            metadata: Arc::new(metadata),
        })
    }

    /// Forgets a table; with `purge`, also deletes every file under its location (when that
    /// location is in the warehouse).
    pub async fn drop_table(&self, ident: &TableIdent, purge: bool) -> Result<()> {
        names::check_table(ident)?;
        let _g = self.locks.lock(&table_lock(ident)).await;
        let record = self.table_record(ident).await?.value;
        let location = if purge {
            Some(
                self.store
                    .read_metadata(&record.metadata_location)
                    .await?
                    .location()
                    .to_string(),
            )
        } else {
            None
        };
        self.store.delete(&self.store.table_path(ident)).await?;
        if let Some(location) = location {
            match self.store.delete_location(&location).await {
                Ok(n) => tracing::info!(table = %display_table(ident), files = n, "purged table"),
                Err(e) => {
                    tracing::warn!(table = %display_table(ident), error = %e, "dropped table, but purging its files failed")
                }
            }
        }
        Ok(())
    }

    /// Moves a table's pointer to a new name; its files stay where they are. The destination
    /// pointer is created first, so a crash in between leaves both names, never neither.
    pub async fn rename_table(&self, from: &TableIdent, to: &TableIdent) -> Result<()> {
        names::check_table(from)?;
        names::check_table(to)?;
        if from == to {
            return Err(CatalogError::TableAlreadyExists(display_table(to)));
        }
        let _g = self
            .locks
            .lock_all(&[ns_lock(&to.namespace), table_lock(from), table_lock(to)])
            .await;
        let record = self.table_record(from).await?.value;
        self.namespace_record(&to.namespace).await?;
        if !self
            .store
            .create_json(&self.store.table_path(to), &record)
            .await?
        {
            return Err(CatalogError::TableAlreadyExists(display_table(to)));
        }
        self.store.delete(&self.store.table_path(from)).await
    }
}

/// Runs pure metadata code, turning a panic inside the iceberg crate into an error rather
/// than letting client input take a task down.
fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(CatalogError::BadRequest(
            "the request could not be applied to the table metadata".into(),
        ))
    })
}

fn check_requirements(requirements: &[TableRequirement], base: &TableMetadata) -> Result<()> {
    guarded(|| {
        requirements
            .iter()
            .try_for_each(|r| r.check(Some(base)))
            .map_err(CatalogError::from_iceberg)
    })
}

/// Requirements, then updates, then build: iceberg's own rules for every change.
fn apply_commit(
    base: TableMetadata,
    base_location: &str,
    requirements: &[TableRequirement],
    updates: Vec<TableUpdate>,
) -> Result<TableMetadata> {
    check_requirements(requirements, &base)?;
    guarded(|| {
        let mut builder = base.into_builder(Some(base_location.to_string()));
        for update in updates {
            builder = update.apply(builder).map_err(CatalogError::from_iceberg)?;
        }
        Ok(builder
            .build()
            .map_err(CatalogError::from_iceberg)?
            .metadata)
    })
}

/// The version number at the start of a metadata file name (`00012-<uuid>.metadata.json`).
fn version_of(metadata_location: &str) -> Option<u64> {
    let file = metadata_location.rsplit('/').next()?;
    file.split('-').next()?.parse().ok()
}
