//! The catalog's durable state in an object store: small JSON pointer objects (namespaces and
//! their properties, table -> current metadata file) written with conditional PUTs, and the
//! table metadata files themselves, written once and never changed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use iceberg::spec::TableMetadata;
use iceberg::{NamespaceIdent, TableIdent};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::{CatalogError, Result};
use super::names;

/// A namespace's pointer object: `<catalog>/namespaces/<namespace key>.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NamespaceRecord {
    #[serde(default)]
    pub properties: HashMap<String, String>,
}

/// A table's pointer object: `<catalog>/tables/<namespace key>/<table key>.json`. Swapping it
/// is the commit point of every table change.
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

/// A pointer object and the version the store gave it, for a later conditional update.
pub struct Versioned<T> {
    pub value: T,
    pub version: UpdateVersion,
}

pub struct Store {
    objects: Arc<dyn ObjectStore>,
    root: Path,
    pub warehouse: Warehouse,
    /// Set once the store has answered that it cannot do `PutMode::Update` (the local
    /// filesystem): pointer updates then overwrite, which is safe because every change of a
    /// pointer holds that pointer's in-process lock (see `Locks`).
    no_conditional_update: AtomicBool,
}

impl Store {
    pub fn new(objects: Arc<dyn ObjectStore>, root: Path, warehouse: Warehouse) -> Self {
        Self {
            objects,
            root,
            warehouse,
            no_conditional_update: AtomicBool::new(false),
        }
    }

    fn child(&self, parts: &[&str]) -> Path {
        let mut p = self.root.clone();
        for part in parts {
            p = p.clone().join(*part);
        }
        p
    }

    pub fn namespace_path(&self, ns: &NamespaceIdent) -> Path {
        self.child(&["namespaces", &format!("{}.json", names::namespace_key(ns))])
    }

    pub fn namespaces_prefix(&self) -> Path {
        self.child(&["namespaces"])
    }

    pub fn tables_prefix(&self, ns: &NamespaceIdent) -> Path {
        self.child(&["tables", &names::namespace_key(ns)])
    }

    pub fn table_path(&self, ident: &TableIdent) -> Path {
        self.tables_prefix(&ident.namespace)
            .join(format!("{}.json", names::encode(&ident.name)))
    }

    /// Reads and parses a JSON object; `None` if it does not exist.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &Path) -> Result<Option<Versioned<T>>> {
        let got = match self.objects.get(path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let version = UpdateVersion {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        };
        let bytes = got.bytes().await?;
        let value = serde_json::from_slice(&bytes).map_err(|e| CatalogError::Corrupt {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        Ok(Some(Versioned { value, version }))
    }

    /// Writes a new object; `false` if one already exists there.
    pub async fn create_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<bool> {
        self.create(path, to_json(value)?).await
    }

    async fn create(&self, path: &Path, bytes: Bytes) -> Result<bool> {
        let opts = PutOptions::from(PutMode::Create);
        match self
            .objects
            .put_opts(path, PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces an object if it still has `version`; `false` if another writer changed it
    /// first. The caller holds the object's in-process lock.
    pub async fn update_json<T: Serialize>(
        &self,
        path: &Path,
        value: &T,
        version: UpdateVersion,
    ) -> Result<bool> {
        let payload = PutPayload::from(to_json(value)?);
        if !self.no_conditional_update.load(Ordering::Relaxed) {
            let opts = PutOptions::from(PutMode::Update(version));
            match self.objects.put_opts(path, payload.clone(), opts).await {
                Ok(_) => return Ok(true),
                Err(object_store::Error::Precondition { .. })
                | Err(object_store::Error::NotFound { .. }) => return Ok(false),
                Err(object_store::Error::NotImplemented { .. }) => {
                    tracing::info!(
                        "object store has no conditional update: iceberg catalog commits are \
                         serialized in this process only (one broker per catalog store)"
                    );
                    self.no_conditional_update.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.objects.put(path, payload).await?;
        Ok(true)
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

    /// The store path of a metadata or data location, or BadRequest if it is outside the
    /// warehouse (the catalog only writes where it owns the storage).
    pub fn location_path(&self, location: &str) -> Result<Path> {
        self.warehouse.path_of(location).ok_or_else(|| {
            CatalogError::BadRequest(format!(
                "location {location} is outside the catalog's warehouse {}",
                self.warehouse.location
            ))
        })
    }

    pub async fn read_metadata(&self, location: &str) -> Result<TableMetadata> {
        let path = self.location_path(location)?;
        let bytes = match self.objects.get(&path).await {
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
        let path = self.location_path(location)?;
        if self.create(&path, to_json(metadata)?).await? {
            Ok(())
        } else {
            Err(CatalogError::CommitFailed(format!(
                "metadata file {location} already exists"
            )))
        }
    }

    /// Writes an empty object at a location in the warehouse. On a local filesystem this also
    /// creates its directory, which some writers (DuckDB) expect to exist already.
    pub async fn touch(&self, location: &str) -> Result<()> {
        let path = self.location_path(location)?;
        self.objects.put(&path, PutPayload::default()).await?;
        Ok(())
    }

    /// [`Warehouse::table_path_of`], or BadRequest.
    pub fn table_location_path(&self, ident: &TableIdent, location: &str) -> Result<Path> {
        self.warehouse
            .table_path_of(ident, location)
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
        let prefix = self.location_path(location)?;
        let depth = prefix.parts().count() - self.warehouse.path.parts().count();
        if depth < 2 {
            return Err(CatalogError::BadRequest(format!(
                "{location} is not a table's location; its files are not purged"
            )));
        }
        let paths = self.list(&prefix).await?;
        for p in &paths {
            self.delete(p).await?;
        }
        Ok(paths.len())
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Bytes> {
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
