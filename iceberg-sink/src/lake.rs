//! The catalog seam the translator commits through: the `iceberg` crate's own `Catalog`
//! trait, so that the built-in catalog (in-process, [`BuiltinCatalog`]) and any external
//! Iceberg REST catalog (`iceberg-catalog-rest`) are interchangeable and both take
//! `Transaction::commit`.
//!
//! Only what the translator and the engines' transactions need is implemented for the
//! built-in adapter; namespace listing and renames stay on the REST routes.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use iceberg::io::FileIO;
use iceberg::table::Table;
use iceberg::Catalog as _;
use iceberg::{
    Error, ErrorKind, Namespace, NamespaceIdent, Result, TableCommit, TableCreation, TableIdent,
};

use crate::catalog::{Catalog, CatalogError, LoadedTable};

/// The built-in catalog as an `iceberg::Catalog`, called in-process (no HTTP). Data files go
/// through iceberg's local-filesystem `FileIO` for a `file://` warehouse, and through
/// [`crate::object_io`] with the catalog's storage settings for an `s3://` one.
pub struct BuiltinCatalog {
    inner: Arc<Catalog>,
    file_io: FileIO,
    /// Where tables spawn their I/O and CPU work: the runtime the catalog was made on.
    runtime: iceberg::Runtime,
}

impl BuiltinCatalog {
    /// Must be called on a tokio runtime, which the tables it loads then use.
    pub fn new(inner: Arc<Catalog>) -> Result<Self> {
        let file_io = if inner.warehouse_location().starts_with("s3") {
            let factory = crate::object_io::ObjectStorageFactory {
                overrides: inner.client_config().clone(),
            };
            iceberg::io::FileIOBuilder::new(Arc::new(factory)).build()
        } else {
            FileIO::new_with_fs()
        };
        Ok(Self {
            inner,
            file_io,
            runtime: iceberg::Runtime::try_current()?,
        })
    }

    fn table(&self, ident: &TableIdent, loaded: LoadedTable) -> Result<Table> {
        Table::builder()
            .identifier(ident.clone())
            .metadata(loaded.metadata)
            .metadata_location(loaded.metadata_location)
            .file_io(self.file_io.clone())
            .runtime(self.runtime.clone())
            .build()
    }
}

impl fmt::Debug for BuiltinCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BuiltinCatalog({})", self.inner.warehouse_location())
    }
}

fn to_iceberg(e: CatalogError) -> Error {
    let kind = match &e {
        CatalogError::NoSuchNamespace(_) => ErrorKind::NamespaceNotFound,
        CatalogError::NoSuchTable(_) => ErrorKind::TableNotFound,
        CatalogError::NamespaceAlreadyExists(_) => ErrorKind::NamespaceAlreadyExists,
        CatalogError::TableAlreadyExists(_) => ErrorKind::TableAlreadyExists,
        CatalogError::CommitFailed(_) => ErrorKind::CatalogCommitConflicts,
        CatalogError::NotSupported(_) => ErrorKind::FeatureUnsupported,
        CatalogError::BadRequest(_) => ErrorKind::DataInvalid,
        _ => ErrorKind::Unexpected,
    };
    Error::new(kind, e.to_string())
}

fn unsupported(what: &str) -> Error {
    Error::new(
        ErrorKind::FeatureUnsupported,
        format!("{what} is served on the REST routes, not in-process"),
    )
}

#[async_trait]
impl iceberg::Catalog for BuiltinCatalog {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(parent).await.map_err(to_iceberg)
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<Namespace> {
        let props = self
            .inner
            .create_namespace(namespace, properties)
            .await
            .map_err(to_iceberg)?;
        Ok(Namespace::with_properties(namespace.clone(), props))
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> Result<Namespace> {
        let props = self
            .inner
            .load_namespace(namespace)
            .await
            .map_err(to_iceberg)?;
        Ok(Namespace::with_properties(namespace.clone(), props))
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> Result<bool> {
        self.inner
            .namespace_exists(namespace)
            .await
            .map_err(to_iceberg)
    }

    async fn update_namespace(
        &self,
        _namespace: &NamespaceIdent,
        _properties: HashMap<String, String>,
    ) -> Result<()> {
        Err(unsupported("updating namespace properties"))
    }

    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> Result<()> {
        self.inner
            .drop_namespace(namespace)
            .await
            .map_err(to_iceberg)
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        self.inner.list_tables(namespace).await.map_err(to_iceberg)
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> Result<Table> {
        let ident = TableIdent::new(namespace.clone(), creation.name.clone());
        let loaded = self
            .inner
            .create_table(namespace, creation)
            .await
            .map_err(to_iceberg)?;
        self.table(&ident, loaded)
    }

    async fn load_table(&self, table: &TableIdent) -> Result<Table> {
        let loaded = self.inner.load_table(table).await.map_err(to_iceberg)?;
        self.table(table, loaded)
    }

    async fn drop_table(&self, table: &TableIdent) -> Result<()> {
        self.inner
            .drop_table(table, false)
            .await
            .map_err(to_iceberg)
    }

    async fn purge_table(&self, table: &TableIdent) -> Result<()> {
        self.inner.drop_table(table, true).await.map_err(to_iceberg)
    }

    async fn table_exists(&self, table: &TableIdent) -> Result<bool> {
        self.inner.table_exists(table).await.map_err(to_iceberg)
    }

    async fn rename_table(&self, _src: &TableIdent, _dest: &TableIdent) -> Result<()> {
        Err(unsupported("renaming tables"))
    }

    async fn register_table(&self, table: &TableIdent, metadata_location: String) -> Result<Table> {
        let loaded = self
            .inner
            .register_table(table, &metadata_location)
            .await
            .map_err(to_iceberg)?;
        self.table(table, loaded)
    }

    async fn update_table(&self, mut commit: TableCommit) -> Result<Table> {
        let ident = commit.identifier().clone();
        let loaded = self
            .inner
            .commit_table(&ident, commit.take_requirements(), commit.take_updates())
            .await
            .map_err(to_iceberg)?;
        self.table(&ident, loaded)
    }
}

/// How to reach an external Iceberg REST catalog.
#[derive(Debug, Clone, Default)]
pub struct RestSettings {
    pub uri: String,
    pub warehouse: Option<String>,
    /// OAuth2 client credentials, `client_id:client_secret`.
    pub credential: Option<String>,
    /// A bearer token, instead of client credentials.
    pub token: Option<String>,
    pub oauth2_server_uri: Option<String>,
    pub scope: Option<String>,
    /// FileIO properties that win over the catalog's (e.g. `s3.endpoint`).
    pub storage_overrides: HashMap<String, String>,
}

/// An external REST catalog (`iceberg-catalog-rest`) whose data files go through
/// [`crate::object_io`]. Its first request (the config call, and the token exchange with
/// client credentials) is tried here so that a wrong address or secret shows in the log at
/// once; the broker starts anyway (produce never waits on the lake) and translation retries.
pub async fn rest_catalog(s: &RestSettings) -> Result<Arc<dyn iceberg::Catalog>> {
    use iceberg::CatalogBuilder;
    use iceberg_catalog_rest::RestCatalogBuilder;
    let mut props = HashMap::from([("uri".to_string(), s.uri.clone())]);
    let opt = [
        ("warehouse", &s.warehouse),
        ("credential", &s.credential),
        ("token", &s.token),
        ("oauth2-server-uri", &s.oauth2_server_uri),
        ("scope", &s.scope),
    ];
    for (k, v) in opt {
        if let Some(v) = v {
            props.insert(k.to_string(), v.clone());
        }
    }
    let factory = crate::object_io::ObjectStorageFactory {
        overrides: s.storage_overrides.clone(),
    };
    let catalog = RestCatalogBuilder::default()
        .with_storage_factory(Arc::new(factory))
        .with_runtime(iceberg::Runtime::try_current()?)
        .load("icestream", props)
        .await?;
    if let Err(e) = catalog.list_namespaces(None).await {
        tracing::warn!(uri = %s.uri, error = %e, "the Iceberg REST catalog is not answering yet; translation will retry");
    }
    Ok(Arc::new(catalog))
}
