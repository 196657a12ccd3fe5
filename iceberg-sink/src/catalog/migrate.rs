//! Upgrade from the earlier pointer layout: one object per pointer, replaced in place
//! (`<catalog>/namespaces/<ns>.json` holding `{"properties"}`, `<catalog>/tables/<ns>/<table>.json`
//! holding `{"metadata-location","version"}`), as a per-broker catalog wrote them.
//!
//! Each legacy pointer becomes the first version of a versioned pointer, unless that name
//! already exists there, and is then deleted; a crash in between repeats the step harmlessly
//! at the next start. A legacy catalog on another store (the broker's own
//! `<data-dir>/objects`, when the catalog has moved to a shared store) is imported the same
//! way: its tables are registered in the shared catalog where no table of that name exists
//! yet, and their files stay where they are (the catalog serves that warehouse as a foreign
//! one, see `Catalog::with_foreign_warehouse`).

use futures_util::TryStreamExt;
use iceberg::{NamespaceIdent, TableIdent};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::catalog::Catalog;
use super::error::{CatalogError, Result};
use super::names::{self, display_table};
use super::store::{get_json_from, NamespaceRecord, TableRecord};

/// What a migration did, for the startup log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Migrated {
    pub namespaces: usize,
    pub tables: usize,
    /// Legacy tables not taken over because the catalog already has a table of that name
    /// (another broker's, in a cluster): their files are left where they are.
    pub skipped_tables: Vec<String>,
}

/// Legacy pointer objects found under a catalog root.
struct Legacy {
    namespaces: Vec<(NamespaceIdent, Path)>,
    tables: Vec<(TableIdent, Path)>,
}

async fn find_legacy(objects: &dyn ObjectStore, root: &Path) -> Result<Legacy> {
    let depth = root.parts().count();
    let ns_prefix = root.clone().join("namespaces");
    let mut namespaces = Vec::new();
    for m in objects
        .list(Some(&ns_prefix))
        .try_collect::<Vec<_>>()
        .await?
    {
        // `<root>/namespaces/<key>.json`, not the versions in `<root>/namespaces/<key>/`.
        if m.location.parts().count() != depth + 2 {
            continue;
        }
        let key = m.location.filename().and_then(|f| f.strip_suffix(".json"));
        if let Some(ns) = key.and_then(names::namespace_from_key) {
            namespaces.push((ns, m.location));
        }
    }
    let mut tables = Vec::new();
    let tables_prefix = root.clone().join("tables");
    for m in objects
        .list(Some(&tables_prefix))
        .try_collect::<Vec<_>>()
        .await?
    {
        // `<root>/tables/<ns key>/<table key>.json`.
        let parts: Vec<String> = m.location.parts().map(|p| p.as_ref().to_string()).collect();
        if parts.len() != depth + 3 {
            continue;
        }
        let ns = names::namespace_from_key(&parts[depth + 1]);
        let table = parts[depth + 2]
            .strip_suffix(".json")
            .and_then(names::decode);
        if let (Some(ns), Some(table)) = (ns, table) {
            tables.push((TableIdent::new(ns, table), m.location));
        }
    }
    Ok(Legacy { namespaces, tables })
}

async fn delete(objects: &dyn ObjectStore, path: &Path) -> Result<()> {
    match objects.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

impl Catalog {
    /// Migrates the legacy pointers in the catalog's own store.
    pub async fn migrate_legacy(&self) -> Result<Migrated> {
        let objects = self.store.objects.clone();
        let root = self.store.root.clone();
        self.import_legacy(objects.as_ref(), &root).await
    }

    /// Takes over the legacy pointers under `root` in `objects` (the catalog's own store, or
    /// another whose warehouse was added with `with_foreign_warehouse`), then deletes them.
    pub async fn import_legacy(&self, objects: &dyn ObjectStore, root: &Path) -> Result<Migrated> {
        let legacy = find_legacy(objects, root).await?;
        let mut done = Migrated::default();
        for (ns, path) in &legacy.namespaces {
            let record: NamespaceRecord = get_json_from(objects, path).await?.unwrap_or_default();
            if self.ensure_namespace(ns, record).await? {
                done.namespaces += 1;
            }
            delete(objects, path).await?;
        }
        for (ident, path) in &legacy.tables {
            let Some(record) = get_json_from::<TableRecord>(objects, path).await? else {
                continue;
            };
            if self
                .ensure_namespace(&ident.namespace, NamespaceRecord::default())
                .await?
            {
                done.namespaces += 1;
            }
            match self.adopt_table(ident, &record).await? {
                true => done.tables += 1,
                false => {
                    tracing::warn!(table = %display_table(ident), legacy = %record.metadata_location, "the catalog already has a table of this name: this broker's earlier table of it is not taken over, and its files stay where they are");
                    done.skipped_tables.push(display_table(ident));
                }
            }
            delete(objects, path).await?;
        }
        Ok(done)
    }

    /// Creates `ns` unless it exists; whether it did.
    async fn ensure_namespace(&self, ns: &NamespaceIdent, record: NamespaceRecord) -> Result<bool> {
        let current = self.namespace_current(ns).await?;
        if current.live().is_some() {
            return Ok(false);
        }
        let dir = self.store.namespace_dir(ns);
        // Lost: another broker migrating the same namespace at the same time.
        self.store.put_next(&dir, &current, Some(&record)).await
    }

    /// Makes `record` the table's state unless a table of that name exists; whether it did.
    async fn adopt_table(&self, ident: &TableIdent, record: &TableRecord) -> Result<bool> {
        let current = self.table_current(ident).await?;
        if let Some(now) = current.live() {
            // Already taken over (a crash before the legacy pointer was deleted).
            return Ok(now.metadata_location == record.metadata_location);
        }
        // The metadata must be readable through the catalog, or the table would be served
        // broken: a legacy table's files in a warehouse the catalog does not know.
        let metadata = self
            .store
            .read_metadata(&record.metadata_location)
            .await
            .map_err(|e| match e {
                CatalogError::BadRequest(m) => {
                    CatalogError::Internal(format!("cannot migrate {}: {m}", display_table(ident)))
                }
                e => e,
            })?;
        match self
            .create_pointer(
                ident,
                &current,
                record.metadata_location.clone(),
                record.version,
                metadata,
            )
            .await
        {
            Ok(_) => Ok(true),
            // Another broker over the same store migrating it at the same moment, or a table
            // of that name made meanwhile.
            Err(CatalogError::TableAlreadyExists(_)) => Ok(self
                .table_current(ident)
                .await?
                .live()
                .is_some_and(|now| now.metadata_location == record.metadata_location)),
            Err(e) => Err(e),
        }
    }
}
