//! The catalog's durable state in an object store: small JSON pointer objects (namespaces and
//! their properties, table -> current metadata file; versioned and create-only, see
//! `pointers.rs`), and the table metadata files themselves, written once and never changed.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use iceberg::spec::TableMetadata;
use iceberg::{NamespaceIdent, TableIdent};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::{CatalogError, Result};
use super::names;

/// A namespace's state: `<catalog>/namespaces/<namespace key>/<version>.json` (and, before
/// versioned pointers, `<catalog>/namespaces/<namespace key>.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NamespaceRecord {
    #[serde(default)]
    pub properties: HashMap<String, String>,
}

/// A table's state: `<catalog>/tables/<namespace key>/<table key>/<version>.json` (and, before
/// versioned pointers, `<catalog>/tables/<namespace key>/<table key>.json`). Creating its
/// next version is the commit point of every table change.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TableRecord {
    pub metadata_location: String,
    /// Version number of the metadata file it points to (`<version>-<uuid>.metadata.json`).
    pub version: u64,
}

/// Where table data lives, as clients see it (`location`, a URL such as
/// `file:///var/lib/icestream/objects/warehouse` or `s3://bucket/warehouse`) and as the same
/// place in the catalog's object store (`path`).
#[derive(Debug, Clone)]
pub struct Warehouse {
    pub location: String,
    pub path: Path,
}

impl Warehouse {
    pub fn new(location: &str, path: Path) -> Self {
        Self {
            location: location.trim_end_matches('/').to_string(),
            path,
        }
    }

    /// Default location of a new table: `<warehouse>/<namespace key>/<table key>`.
    pub fn table_location(&self, ident: &TableIdent) -> String {
        format!(
            "{}/{}/{}",
            self.location,
            names::namespace_key(&ident.namespace),
            names::encode(&ident.name)
        )
    }

    /// The store path of a location under the warehouse, `None` for any other location.
    /// Segments are normalised (`.`, empty ones and trailing slashes dropped, `..` resolved)
    /// and a location that climbs out of the warehouse is `None`: locations come from clients.
    pub fn path_of(&self, location: &str) -> Option<Path> {
        let rest = location.strip_prefix(&self.location)?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        let mut segments: Vec<&str> = Vec::new();
        for seg in rest.split('/') {
            match seg {
                "" | "." => {}
                ".." => {
                    segments.pop()?;
                }
                s => segments.push(s),
            }
        }
        let mut parts: Vec<object_store::path::PathPart<'static>> = self
            .path
            .parts()
            .map(|p| p.as_ref().to_string().into())
            .collect();
        for seg in segments {
            let part = object_store::path::PathPart::parse(seg).ok()?;
            parts.push(part.as_ref().to_string().into());
        }
        Some(Path::from_iter(parts))
    }

    /// The store path of `location` if it is the table's own prefix
    /// (`<warehouse>/<namespace key>/<table key>`) or inside it: never the warehouse root, a
    /// namespace, another table's prefix or a parent of one, so that purging a table cannot
    /// delete another's files.
    pub fn table_path_of(&self, ident: &TableIdent, location: &str) -> Option<Path> {
        let path = self.path_of(location)?;
        let own = self.path_of(&self.table_location(ident))?;
        path.prefix_matches(&own).then_some(path)
    }
}

/// A warehouse and the store that holds it.
struct Located {
    warehouse: Warehouse,
    objects: Arc<dyn ObjectStore>,
}

pub struct Store {
    pub(super) objects: Arc<dyn ObjectStore>,
    pub(super) root: Path,
    pub warehouse: Warehouse,
    /// Warehouses besides the catalog's own whose tables it may still serve: a broker's
    /// previous per-broker warehouse, whose tables were registered in a shared catalog on
    /// upgrade and keep their files where they are.
    foreign: Vec<Located>,
    /// How old a pointer version beyond the newest few must be before it is deleted.
    pub(super) prune_age: std::time::Duration,
    /// Set once the startup probe found that the store lets a second create succeed: every
    /// change is refused from then on rather than risk overwriting another broker's.
    pub(super) no_create_if_absent: std::sync::atomic::AtomicBool,
}

impl Store {
    pub fn new(objects: Arc<dyn ObjectStore>, root: Path, warehouse: Warehouse) -> Self {
        Self {
            objects,
            root,
            warehouse,
            foreign: Vec::new(),
            prune_age: super::pointers::PRUNE_AGE,
            no_create_if_absent: Default::default(),
        }
    }

    /// Also serves tables whose files are in `warehouse` on `objects`.
    pub fn add_foreign(&mut self, warehouse: Warehouse, objects: Arc<dyn ObjectStore>) {
        self.foreign.push(Located { warehouse, objects });
    }

    /// For messages: where the catalog keeps its state.
    pub fn describe(&self) -> String {
        format!("{} (catalog at {})", self.objects, self.root)
    }

    fn child(&self, parts: &[&str]) -> Path {
        let mut p = self.root.clone();
        for part in parts {
            p = p.clone().join(*part);
        }
        p
    }

    /// The versions of a namespace's pointer: `<catalog>/namespaces/<namespace key>/`.
    pub fn namespace_dir(&self, ns: &NamespaceIdent) -> Path {
        self.child(&["namespaces", &names::namespace_key(ns)])
    }

    pub fn namespaces_prefix(&self) -> Path {
        self.child(&["namespaces"])
    }

    pub fn tables_prefix(&self, ns: &NamespaceIdent) -> Path {
        self.child(&["tables", &names::namespace_key(ns)])
    }

    /// The versions of a table's pointer: `<catalog>/tables/<namespace key>/<table key>/`.
    pub fn table_dir(&self, ident: &TableIdent) -> Path {
        self.tables_prefix(&ident.namespace)
            .join(names::encode(&ident.name))
    }

    async fn create_in(objects: &dyn ObjectStore, path: &Path, bytes: Bytes) -> Result<bool> {
        let opts = PutOptions::from(PutMode::Create);
        match objects.put_opts(path, PutPayload::from(bytes), opts).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn delete(&self, path: &Path) -> Result<()> {
        match self.objects.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every object under `prefix` (recursively).
    pub async fn list(&self, prefix: &Path) -> Result<Vec<Path>> {
        let metas: Vec<_> = self.objects.list(Some(prefix)).try_collect().await?;
        Ok(metas.into_iter().map(|m| m.location).collect())
    }

    /// The store and path of a metadata or data location, or BadRequest if it is in no
    /// warehouse of the catalog (it only writes where it owns the storage).
    fn resolve(&self, location: &str) -> Result<(&dyn ObjectStore, Path)> {
        if let Some(p) = self.warehouse.path_of(location) {
            return Ok((self.objects.as_ref(), p));
        }
        for f in &self.foreign {
            if let Some(p) = f.warehouse.path_of(location) {
                return Ok((f.objects.as_ref(), p));
            }
        }
        Err(CatalogError::BadRequest(format!(
            "location {location} is outside the catalog's warehouse {}",
            self.warehouse.location
        )))
    }

    pub async fn read_metadata(&self, location: &str) -> Result<TableMetadata> {
        let (objects, path) = self.resolve(location)?;
        let bytes = match objects.get(&path).await {
            Ok(got) => got.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(CatalogError::Corrupt {
                    path: location.to_string(),
                    message: "metadata file is missing".into(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        serde_json::from_slice(&bytes).map_err(|e| CatalogError::Corrupt {
            path: location.to_string(),
            message: format!("not Iceberg table metadata: {e}"),
        })
    }

    /// Writes a metadata file that must not exist yet (its name holds a fresh UUID).
    pub async fn write_metadata(&self, location: &str, metadata: &TableMetadata) -> Result<()> {
        let (objects, path) = self.resolve(location)?;
        if Self::create_in(objects, &path, to_json(metadata)?).await? {
            Ok(())
        } else {
            Err(CatalogError::CommitFailed(format!(
                "metadata file {location} already exists"
            )))
        }
    }

    /// Writes an empty object at a location in a warehouse. On a local filesystem this also
    /// creates its directory, which some writers (DuckDB) expect to exist already.
    pub async fn touch(&self, location: &str) -> Result<()> {
        let (objects, path) = self.resolve(location)?;
        objects.put(&path, PutPayload::default()).await?;
        Ok(())
    }

    /// Deletes an object at a location in a warehouse, if it is there.
    pub async fn delete_at(&self, location: &str) -> Result<()> {
        let (objects, path) = self.resolve(location)?;
        match objects.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// [`Warehouse::table_path_of`] in the catalog's warehouse or a foreign one, or
    /// BadRequest.
    pub fn table_location_path(&self, ident: &TableIdent, location: &str) -> Result<Path> {
        std::iter::once(&self.warehouse)
            .chain(self.foreign.iter().map(|f| &f.warehouse))
            .find_map(|w| w.table_path_of(ident, location))
            .ok_or_else(|| {
                CatalogError::BadRequest(format!(
                    "table location {location} is not inside the table's own prefix {}",
                    self.warehouse.table_location(ident)
                ))
            })
    }

    /// Deletes every object under a table's location (a purged table's files), which must be
    /// the prefix of some table: `<warehouse>/<namespace key>/<table key>` or below it.
    pub async fn delete_location(&self, location: &str) -> Result<usize> {
        let (objects, prefix) = self.resolve(location)?;
        let base = std::iter::once(&self.warehouse)
            .chain(self.foreign.iter().map(|f| &f.warehouse))
            .find(|w| w.path_of(location).is_some())
            .map_or(0, |w| w.path.parts().count());
        let depth = prefix.parts().count() - base;
        if depth < 2 {
            return Err(CatalogError::BadRequest(format!(
                "{location} is not a table's location; its files are not purged"
            )));
        }
        let metas: Vec<_> = objects.list(Some(&prefix)).try_collect().await?;
        for m in &metas {
            match objects.delete(&m.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(metas.len())
    }
}

/// Reads and parses a JSON object; `None` if it does not exist.
pub async fn get_json_from<T: DeserializeOwned>(
    objects: &dyn ObjectStore,
    path: &Path,
) -> Result<Option<T>> {
    let got = match objects.get(path).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let bytes = got.bytes().await?;
    let value = serde_json::from_slice(&bytes).map_err(|e| CatalogError::Corrupt {
        path: path.to_string(),
        message: e.to_string(),
    })?;
    Ok(Some(value))
}

pub(super) fn to_json<T: Serialize>(value: &T) -> Result<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| CatalogError::Internal(format!("cannot serialize: {e}")))
}

/// `<table location>/metadata/<version>-<uuid>.metadata.json`, the layout Iceberg's own
/// catalogs use.
pub fn metadata_file_location(table_location: &str, version: u64) -> String {
    format!(
        "{}/metadata/{version:05}-{}.metadata.json",
        table_location.trim_end_matches('/'),
        uuid::Uuid::new_v4()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warehouse_maps_locations_inside_it_only() {
        let w = Warehouse::new("file:///data/objects/warehouse/", Path::from("warehouse"));
        assert_eq!(
            w.path_of("file:///data/objects/warehouse/db/t/metadata/x.json"),
            Some(Path::from("warehouse/db/t/metadata/x.json"))
        );
        assert_eq!(
            w.path_of("file:///data/objects/warehouse"),
            Some(Path::from("warehouse"))
        );
        assert_eq!(w.path_of("file:///data/objects/warehouse2/x"), None);
        assert_eq!(w.path_of("file:///data/objects/warehouse/../x"), None);
        assert_eq!(
            w.path_of("file:///data/objects/warehouse/db/./t/../u//"),
            Some(Path::from("warehouse/db/u"))
        );
        let t = TableIdent::new(NamespaceIdent::new("db".into()), "t".into());
        let at = |l: &str| w.table_path_of(&t, &format!("file:///data/objects/warehouse{l}"));
        assert!(at("/db/t").is_some() && at("/db/t/").is_some() && at("/db/t/data").is_some());
        assert!(at("/db/./t/x/..").is_some());
        for bad in [
            "",
            "/",
            "/db",
            "/db/u",
            "/db/t2",
            "/db/t/../u",
            "/db/t/../../..",
            "/x/t",
        ] {
            assert!(at(bad).is_none(), "{bad:?}");
        }
        assert_eq!(w.path_of("s3://other/x"), None);
    }
}
