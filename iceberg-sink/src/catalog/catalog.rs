//! The catalog's operations, callable in-process (the translator) or through the REST router.
//!
//! Atomicity: a table's state is the metadata file the newest version of its pointer names
//! (see `pointers.rs`). A change writes a new metadata file (never overwriting one), then
//! creates the pointer's next version, create-only (`PutMode::Create`). A crash before that
//! leaves the old version newest, so the old state, plus an orphan metadata file; after it,
//! the new state. Two writers racing on one table, in this broker or in two brokers over one
//! store: both read version N, exactly one creates N+1, the other gets CommitFailed and its
//! client reloads and retries. In one broker they also queue on the table's in-process lock
//! first, so that they rarely get as far as losing.

use std::collections::{BTreeSet, HashMap};
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
use super::pointers::{version_of_file, Current};
use super::store::{metadata_file_location, NamespaceRecord, Store, TableRecord, Warehouse};
use super::vending::{CredentialVendor, StorageCredential};

/// Where the catalog keeps its state in the object store.
#[derive(Debug, Clone)]
pub struct CatalogConfig {
    /// The warehouse as clients see it, e.g. `file:///abs/data/objects/warehouse` or
    /// `s3://bucket/prefix/warehouse`; new tables get `<warehouse>/<namespace>/<table>`.
    pub warehouse_location: String,
    /// The same place as a path in the object store, e.g. `warehouse`.
    pub warehouse_path: Path,
    /// Prefix of the catalog's own pointer objects in the object store, e.g. `catalog`.
    pub catalog_path: Path,
}

/// One table change of a commit: requirements to check, then updates to apply.
#[derive(Debug, Clone, Default)]
pub struct TableChange {
    pub requirements: Vec<TableRequirement>,
    pub updates: Vec<TableUpdate>,
}

/// A table as loaded: its current metadata file, that file's contents, and the `config` a
/// client gets with it in `LoadTableResult` (storage settings; see [`Catalog::table_config`]).
#[derive(Debug, Clone)]
pub struct LoadedTable {
    pub metadata_location: String,
    pub metadata: Arc<TableMetadata>,
    pub config: HashMap<String, String>,
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
    pub(super) store: Store,
    locks: Locks,
    /// Set once at startup when STS is configured (see vending.rs).
    vendor: std::sync::OnceLock<CredentialVendor>,
    /// What clients need to reach the warehouse's storage (`s3.endpoint`, `s3.region`, ...),
    /// never credentials: handed out by `/v1/config` and with every loaded table.
    client_config: HashMap<String, String>,
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

/// The keys one level below `prefix` that hold pointer versions (`<prefix>/<key>/<version>.json`).
fn pointer_keys(prefix: &Path, paths: &[Path]) -> BTreeSet<String> {
    let depth = prefix.parts().count();
    paths
        .iter()
        .filter(|p| p.parts().count() == depth + 2)
        .filter(|p| p.filename().and_then(version_of_file).is_some())
        .filter_map(|p| p.parts().nth(depth).map(|k| k.as_ref().to_string()))
        .collect()
}

impl Catalog {
    pub fn new(objects: Arc<dyn ObjectStore>, config: CatalogConfig) -> Self {
        let warehouse = Warehouse::new(&config.warehouse_location, config.warehouse_path);
        Self {
            store: Store::new(objects, config.catalog_path, warehouse),
            locks: Locks::default(),
            client_config: HashMap::new(),
            vendor: std::sync::OnceLock::new(),
        }
    }

    /// Storage settings for clients (see [`Catalog::table_config`]).
    pub fn with_client_config(mut self, config: HashMap<String, String>) -> Self {
        self.client_config = config;
        self
    }

    /// Also serves tables whose files are in another warehouse (`location`, at `path` in
    /// `objects`): a broker's own earlier warehouse, whose tables were registered in this
    /// catalog on upgrade and keep their files where they are.
    pub fn with_foreign_warehouse(
        mut self,
        location: &str,
        path: Path,
        objects: Arc<dyn ObjectStore>,
    ) -> Self {
        self.store
            .add_foreign(Warehouse::new(location, path), objects);
        self
    }

    /// How old a pointer version beyond the newest few must be before it is deleted (tests
    /// shorten it).
    pub fn with_prune_age(mut self, age: std::time::Duration) -> Self {
        self.store.prune_age = age;
        self
    }

    /// Turns credential vending on; a second call is ignored.
    pub fn enable_vending(&self, vendor: CredentialVendor) {
        let _ = self.vendor.set(vendor);
    }

    /// Credentials for the table at `location`, empty when vending is off or the table is
    /// not in this catalog's S3 warehouse (never the broker's own keys).
    pub async fn storage_credentials(&self, location: &str) -> Result<Vec<StorageCredential>> {
        let Some(vendor) = self.vendor.get() else {
            return Ok(Vec::new());
        };
        Ok(vendor
            .vend(self.warehouse_location(), location)
            .await?
            .into_iter()
            .collect())
    }

    pub fn warehouse_location(&self) -> &str {
        &self.store.warehouse.location
    }

    /// The storage settings clients need (no credentials).
    pub fn client_config(&self) -> &HashMap<String, String> {
        &self.client_config
    }

    /// Fails unless the store refuses a second create of one object, which every commit
    /// relies on; called once at startup.
    pub async fn probe(&self) -> Result<()> {
        self.store.probe_create_if_absent().await
    }

    /// The `config` of a table's `LoadTableResult`: the one place its keys are chosen. Today
    /// the warehouse's storage settings; per-table keys (vended credentials) go here too.
    pub fn table_config(
        &self,
        _ident: &TableIdent,
        _metadata: &TableMetadata,
    ) -> HashMap<String, String> {
        self.client_config.clone()
    }

    fn loaded(
        &self,
        ident: &TableIdent,
        metadata_location: String,
        metadata: TableMetadata,
    ) -> LoadedTable {
        LoadedTable {
            config: self.table_config(ident, &metadata),
            metadata_location,
            metadata: Arc::new(metadata),
        }
    }

    // ------------------------------------------------------------------ namespaces

    pub(super) async fn namespace_current(
        &self,
        ns: &NamespaceIdent,
    ) -> Result<Current<NamespaceRecord>> {
        names::check_namespace(ns)?;
        self.store.current(&self.store.namespace_dir(ns)).await
    }

    async fn namespace_record(&self, ns: &NamespaceIdent) -> Result<NamespaceRecord> {
        self.namespace_current(ns)
            .await?
            .state
            .ok_or_else(|| CatalogError::NoSuchNamespace(display_namespace(ns)))
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
        let prefix = self.store.namespaces_prefix();
        let paths = self.store.list(&prefix).await?;
        let mut out = Vec::new();
        for key in pointer_keys(&prefix, &paths) {
            let Some(ns) = names::namespace_from_key(&key) else {
                continue;
            };
            let under_parent = ns.as_ref().len() == depth + 1
                && parent.is_none_or(|p| ns.as_ref()[..depth] == p.as_ref()[..]);
            if under_parent && self.namespace_current(&ns).await?.state.is_some() {
                out.push(ns);
            }
        }
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
        let current = self.namespace_current(ns).await?;
        let record = NamespaceRecord { properties };
        if current.live().is_some()
            || !self
                .store
                .put_next(&self.store.namespace_dir(ns), &current, Some(&record))
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
        let current = self.namespace_current(ns).await?;
        if current.live().is_none() {
            return Err(CatalogError::NoSuchNamespace(display_namespace(ns)));
        }
        if !self.list_tables(ns).await?.is_empty() {
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
        if !self
            .store
            .put_next::<_, NamespaceRecord>(&self.store.namespace_dir(ns), &current, None)
            .await?
        {
            return Err(CatalogError::CommitFailed(format!(
                "namespace {} changed concurrently; retry",
                display_namespace(ns)
            )));
        }
        Ok(())
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
        let current = self.namespace_current(ns).await?;
        let Some(record) = current.live() else {
            return Err(CatalogError::NoSuchNamespace(display_namespace(ns)));
        };
        let mut record = record.clone();
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
            .put_next(&self.store.namespace_dir(ns), &current, Some(&record))
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
        let prefix = self.store.tables_prefix(ns);
        let paths = self.store.list(&prefix).await?;
        let mut out = Vec::new();
        for key in pointer_keys(&prefix, &paths) {
            let Some(name) = names::decode(&key) else {
                continue;
            };
            let ident = TableIdent::new(ns.clone(), name);
            if self.table_current(&ident).await?.state.is_some() {
                out.push(ident);
            }
        }
        out.sort();
        Ok(out)
    }

    pub(super) async fn table_current(&self, ident: &TableIdent) -> Result<Current<TableRecord>> {
        names::check_table(ident)?;
        self.store.current(&self.store.table_dir(ident)).await
    }

    /// The table's newest pointer version and its record, or NoSuchTable.
    async fn table_record(
        &self,
        ident: &TableIdent,
    ) -> Result<(Current<TableRecord>, TableRecord)> {
        let current = self.table_current(ident).await?;
        match current.live().cloned() {
            Some(record) => Ok((current, record)),
            None => Err(CatalogError::NoSuchTable(display_table(ident))),
        }
    }

    pub async fn load_table(&self, ident: &TableIdent) -> Result<LoadedTable> {
        let (_, record) = self.table_record(ident).await?;
        let metadata = self.store.read_metadata(&record.metadata_location).await?;
        Ok(self.loaded(ident, record.metadata_location, metadata))
    }

    pub async fn table_exists(&self, ident: &TableIdent) -> Result<bool> {
        Ok(self.table_current(ident).await?.state.is_some())
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
        self.store.table_location_path(&ident, &location)?;
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
        let current = self.table_current(&ident).await?;
        if current.live().is_some() {
            return Err(CatalogError::TableAlreadyExists(display_table(&ident)));
        }
        let metadata = self.new_table_metadata(ns, creation)?;
        self.store_new_table(&ident, &current, metadata, 0).await
    }

    /// Writes a new table's first metadata file, then the pointer version after `base` (the
    /// table's absent or dropped state).
    async fn store_new_table(
        &self,
        ident: &TableIdent,
        base: &Current<TableRecord>,
        metadata: TableMetadata,
        version: u64,
    ) -> Result<LoadedTable> {
        let location = metadata_file_location(metadata.location(), version);
        self.store.write_metadata(&location, &metadata).await?;
        self.create_pointer(ident, base, location, version, metadata)
            .await
    }

    /// Points the table at a metadata file as the version after `base`; fails if another
    /// writer got there first (the table now exists).
    pub(super) async fn create_pointer(
        &self,
        ident: &TableIdent,
        base: &Current<TableRecord>,
        metadata_location: String,
        version: u64,
        metadata: TableMetadata,
    ) -> Result<LoadedTable> {
        let record = TableRecord {
            metadata_location: metadata_location.clone(),
            version,
        };
        if !self
            .store
            .put_next(&self.store.table_dir(ident), base, Some(&record))
            .await?
        {
            return Err(CatalogError::TableAlreadyExists(display_table(ident)));
        }
        Ok(self.loaded(ident, metadata_location, metadata))
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
        // A registered table's files are its own: what a purge of it may delete.
        self.store.table_location_path(ident, metadata.location())?;
        let current = self.table_current(ident).await?;
        if current.live().is_some() {
            return Err(CatalogError::TableAlreadyExists(display_table(ident)));
        }
        let version = version_of(metadata_location).unwrap_or(0);
        self.create_pointer(
            ident,
            &current,
            metadata_location.to_string(),
            version,
            metadata,
        )
        .await
    }

    /// Metadata for a staged create (`stage-create`): checked like a create, but nothing is
    /// stored; the table comes to exist with a later commit that asserts `assert-create`.
    pub async fn stage_table(
        &self,
        ns: &NamespaceIdent,
        creation: TableCreation,
    ) -> Result<TableMetadata> {
        let ident = TableIdent::new(ns.clone(), creation.name.clone());
        names::check_table(&ident)?;
        self.namespace_record(ns).await?;
        if self.table_exists(&ident).await? {
            return Err(CatalogError::TableAlreadyExists(display_table(&ident)));
        }
        let metadata = self.new_table_metadata(ns, creation)?;
        // Engines write a staged table's manifests into `<location>/metadata/` before the
        // commit that creates it; make sure that directory exists on a local filesystem.
        self.store
            .touch(&staged_marker(metadata.location()))
            .await?;
        Ok(metadata)
    }

    /// Checks every requirement against the table's current metadata, applies the updates
    /// with iceberg's metadata builder, writes the result as a new metadata file and creates
    /// the table's next pointer version naming it. Failed requirements and lost races are
    /// `CommitFailed`. With an `assert-create` requirement the table must not exist and the
    /// updates create it (the second half of a staged create).
    pub async fn commit_table(
        &self,
        ident: &TableIdent,
        requirements: Vec<TableRequirement>,
        updates: Vec<TableUpdate>,
    ) -> Result<LoadedTable> {
        self.commit_table_changes(
            ident,
            vec![TableChange {
                requirements,
                updates,
            }],
        )
        .await
    }

    /// Several changes to one table committed as one: each change's requirements are checked
    /// against the metadata the changes before it produced, and one new metadata file is
    /// swapped in for all of them (or none). `POST /v1/transactions/commit` lands here.
    pub async fn commit_table_changes(
        &self,
        ident: &TableIdent,
        mut changes: Vec<TableChange>,
    ) -> Result<LoadedTable> {
        names::check_table(ident)?;
        let creates = changes
            .first()
            .is_some_and(|c| c.requirements.contains(&TableRequirement::NotExist));
        if creates {
            return self.create_by_commit(ident, changes).await;
        }
        let _g = self.locks.lock(&table_lock(ident)).await;
        let (current, record) = self.table_record(ident).await?;
        let base = self.store.read_metadata(&record.metadata_location).await?;
        let base_location = record.metadata_location.clone();
        if changes.iter().all(|c| c.updates.is_empty()) {
            for change in &changes {
                check_requirements(&change.requirements, Some(&base))?;
            }
            return Ok(self.loaded(ident, base_location, base));
        }
        let base_table_location = base.location().to_string();
        let mut metadata = base;
        let mut previous = Some(base_location);
        for change in changes.drain(..) {
            metadata = apply_commit(
                metadata,
                previous.take(),
                &change.requirements,
                change.updates,
            )?;
        }
        if metadata.location() != base_table_location {
            self.store.table_location_path(ident, metadata.location())?;
        }
        let version = record.version + 1;
        let location = metadata_file_location(metadata.location(), version);
        self.store.write_metadata(&location, &metadata).await?;
        let next = TableRecord {
            metadata_location: location.clone(),
            version,
        };
        let won = self
            .store
            .put_next(&self.store.table_dir(ident), &current, Some(&next))
            .await?;
        if !won {
            // Nothing points at the file just written: remove it rather than leave an orphan.
            let _ = self.store.delete_at(&location).await;
            return Err(CatalogError::CommitFailed(format!(
                "{} was changed by another writer; reload and retry",
                display_table(ident)
            )));
        }
        Ok(self.loaded(ident, location, metadata))
    }

    async fn create_by_commit(
        &self,
        ident: &TableIdent,
        changes: Vec<TableChange>,
    ) -> Result<LoadedTable> {
        let _g = self
            .locks
            .lock_all(&[ns_lock(&ident.namespace), table_lock(ident)])
            .await;
        self.namespace_record(&ident.namespace).await?;
        let current = self.table_current(ident).await?;
        if current.live().is_some() {
            return Err(CatalogError::CommitFailed(format!(
                "assert-create failed: {} already exists",
                display_table(ident)
            )));
        }
        let mut changes = changes.into_iter();
        let Some(first) = changes.next() else {
            return Err(CatalogError::Internal("create without changes".into()));
        };
        check_requirements(&first.requirements, None)?;
        let default_location = self.store.warehouse.table_location(ident);
        let mut metadata = guarded(|| metadata_from_updates(default_location, first.updates))?;
        for change in changes {
            metadata = apply_commit(metadata, None, &change.requirements, change.updates)?;
        }
        self.store.table_location_path(ident, metadata.location())?;
        let marker = staged_marker(metadata.location());
        let loaded = match self.store_new_table(ident, &current, metadata, 0).await {
            Err(CatalogError::TableAlreadyExists(t)) => {
                return Err(CatalogError::CommitFailed(format!(
                    "assert-create failed: {t} was created concurrently"
                )))
            }
            other => other?,
        };
        self.store.delete_at(&marker).await?;
        Ok(loaded)
    }

    /// Forgets a table (a tombstone version of its pointer); with `purge`, also deletes every
    /// file under its location (when that location is in a warehouse of the catalog).
    pub async fn drop_table(&self, ident: &TableIdent, purge: bool) -> Result<()> {
        names::check_table(ident)?;
        let _g = self.locks.lock(&table_lock(ident)).await;
        let (current, record) = self.table_record(ident).await?;
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
        if !self
            .store
            .put_next::<_, TableRecord>(&self.store.table_dir(ident), &current, None)
            .await?
        {
            return Err(CatalogError::CommitFailed(format!(
                "{} was changed by another writer while being dropped; retry",
                display_table(ident)
            )));
        }
        if let Some(location) = location {
            if let Some(other) = self.other_owner(ident, &location).await {
                tracing::warn!(table = %display_table(ident), %location, owner = %display_table(&other), "dropped table, but its location is another table's prefix: its files are not purged");
                return Ok(());
            }
            match self.store.delete_location(&location).await {
                Ok(n) => tracing::info!(table = %display_table(ident), files = n, "purged table"),
                Err(e) => {
                    tracing::warn!(table = %display_table(ident), error = %e, "dropped table, but purging its files failed")
                }
            }
        }
        Ok(())
    }

    /// The table other than `ident` whose own prefix holds `location`, if one exists (a table
    /// renamed keeps its files at its old prefix; a purge must not delete a new table's files
    /// there, nor a table made before locations were checked another's).
    async fn other_owner(&self, ident: &TableIdent, location: &str) -> Option<TableIdent> {
        let path = self.store.warehouse.path_of(location)?;
        let skip = self.store.warehouse.path.parts().count();
        let parts: Vec<String> = path
            .parts()
            .skip(skip)
            .take(2)
            .map(|p| p.as_ref().to_string())
            .collect();
        let [ns, table] = parts.as_slice() else {
            return None;
        };
        let owner = TableIdent::new(names::namespace_from_key(ns)?, names::decode(table)?);
        if &owner == ident {
            return None;
        }
        match self.table_current(&owner).await {
            Ok(c) if c.state.is_none() => None,
            // Unknown (the store failed): keep the files.
            _ => Some(owner),
        }
    }

    /// Moves a table's pointer to a new name; its files stay where they are. The destination
    /// is created first, so a crash in between leaves both names, never neither.
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
        let (from_current, record) = self.table_record(from).await?;
        self.namespace_record(&to.namespace).await?;
        let to_current = self.table_current(to).await?;
        if to_current.live().is_some()
            || !self
                .store
                .put_next(&self.store.table_dir(to), &to_current, Some(&record))
                .await?
        {
            return Err(CatalogError::TableAlreadyExists(display_table(to)));
        }
        if !self
            .store
            .put_next::<_, TableRecord>(&self.store.table_dir(from), &from_current, None)
            .await?
        {
            return Err(CatalogError::CommitFailed(format!(
                "{} was changed by another writer during the rename: {} now names its state \
                 before that change, and both names exist",
                display_table(from),
                display_table(to)
            )));
        }
        Ok(())
    }
}

fn staged_marker(table_location: &str) -> String {
    format!("{}/metadata/.staged", table_location.trim_end_matches('/'))
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

fn check_requirements(
    requirements: &[TableRequirement],
    base: Option<&TableMetadata>,
) -> Result<()> {
    guarded(|| {
        requirements
            .iter()
            .try_for_each(|r| r.check(base))
            .map_err(|e| match e.kind() {
                // A requirement on a table that is not there: the commit lost a race with a drop.
                iceberg::ErrorKind::TableNotFound => CatalogError::CommitFailed(e.to_string()),
                _ => CatalogError::from_iceberg(e),
            })
    })
}

/// Requirements, then updates, then build: iceberg's own rules for every change.
/// `base_location` is the metadata file `base` was read from (it goes to the metadata log),
/// `None` for metadata not stored yet.
fn apply_commit(
    base: TableMetadata,
    base_location: Option<String>,
    requirements: &[TableRequirement],
    updates: Vec<TableUpdate>,
) -> Result<TableMetadata> {
    check_requirements(requirements, Some(&base))?;
    guarded(|| {
        let mut builder = base.into_builder(base_location);
        for update in updates {
            builder = update.apply(builder).map_err(CatalogError::from_iceberg)?;
        }
        Ok(builder
            .build()
            .map_err(CatalogError::from_iceberg)?
            .metadata)
    })
}

/// A new table's metadata from the updates of a create transaction (what a staged create
/// returned, sent back as updates): its first schema, spec, sort order, location, format version
/// and properties make the table as `TableMetadataBuilder::new` would, and the other updates
/// (its UUID, snapshots, later schemas...) apply on top.
fn metadata_from_updates(
    default_location: String,
    updates: Vec<TableUpdate>,
) -> Result<TableMetadata> {
    let mut schema = None;
    let mut spec = None;
    let mut order = None;
    let mut location = None;
    let mut format_version = None;
    let mut properties = None;
    let (mut current_schema_set, mut default_spec_set, mut default_order_set) =
        (false, false, false);
    let mut rest = Vec::new();
    for update in updates {
        match update {
            TableUpdate::AddSchema { schema: s } if schema.is_none() => schema = Some(s),
            TableUpdate::SetCurrentSchema { .. } if !current_schema_set => {
                current_schema_set = true
            }
            TableUpdate::AddSpec { spec: s } if spec.is_none() => spec = Some(s),
            TableUpdate::SetDefaultSpec { .. } if !default_spec_set => default_spec_set = true,
            TableUpdate::AddSortOrder { sort_order } if order.is_none() => order = Some(sort_order),
            TableUpdate::SetDefaultSortOrder { .. } if !default_order_set => {
                default_order_set = true
            }
            TableUpdate::SetLocation { location: l } if location.is_none() => location = Some(l),
            TableUpdate::UpgradeFormatVersion { format_version: v } if format_version.is_none() => {
                format_version = Some(v)
            }
            TableUpdate::SetProperties { updates } if properties.is_none() => {
                properties = Some(updates)
            }
            other => rest.push(other),
        }
    }
    let schema = schema
        .ok_or_else(|| CatalogError::BadRequest("a create transaction must add a schema".into()))?;
    let mut builder = TableMetadataBuilder::new(
        schema,
        spec.unwrap_or_else(|| iceberg::spec::UnboundPartitionSpec::builder().build()),
        order.unwrap_or_else(iceberg::spec::SortOrder::unsorted_order),
        location
            .unwrap_or(default_location)
            .trim_end_matches('/')
            .to_string(),
        format_version.unwrap_or(iceberg::spec::FormatVersion::V2),
        properties.unwrap_or_default(),
    )
    .map_err(CatalogError::from_iceberg)?;
    for update in rest {
        builder = update.apply(builder).map_err(CatalogError::from_iceberg)?;
    }
    Ok(builder
        .build()
        .map_err(CatalogError::from_iceberg)?
        .metadata)
}

/// The version number at the start of a metadata file name (`00012-<uuid>.metadata.json`).
fn version_of(metadata_location: &str) -> Option<u64> {
    let file = metadata_location.rsplit('/').next()?;
    file.split('-').next()?.parse().ok()
}
