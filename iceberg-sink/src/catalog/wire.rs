//! Request and response bodies of the Iceberg REST OpenAPI. The Iceberg objects inside them
//! (schemas, specs, sort orders, requirements, updates, table metadata) are the iceberg
//! crate's own types with their spec serde forms.

use std::collections::HashMap;

use iceberg::spec::{
    FormatVersion, Schema, SortOrder, TableMetadata, TableProperties, UnboundPartitionSpec,
};
use iceberg::{NamespaceIdent, TableCreation, TableIdent, TableRequirement, TableUpdate};
use serde::{Deserialize, Serialize};

use super::catalog::LoadedTable;
use super::error::{CatalogError, Result};
use super::vending::StorageCredential;

#[derive(Debug, Deserialize)]
pub struct CreateNamespaceRequest {
    pub namespace: NamespaceIdent,
    #[serde(default)]
    pub properties: HashMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct NamespaceResponse {
    pub namespace: NamespaceIdent,
    pub properties: HashMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct ListNamespacesResponse {
    pub namespaces: Vec<NamespaceIdent>,
}

#[derive(Debug, Deserialize)]
pub struct UpdateNamespacePropertiesRequest {
    #[serde(default)]
    pub removals: Vec<String>,
    #[serde(default)]
    pub updates: HashMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct ListTablesResponse {
    pub identifiers: Vec<TableIdent>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CreateTableRequest {
    pub name: String,
    #[serde(default)]
    pub location: Option<String>,
    pub schema: Schema,
    #[serde(default)]
    pub partition_spec: Option<UnboundPartitionSpec>,
    #[serde(default)]
    pub write_order: Option<SortOrder>,
    #[serde(default)]
    pub stage_create: bool,
    #[serde(default)]
    pub properties: HashMap<String, String>,
}

impl CreateTableRequest {
    /// The iceberg crate's `TableCreation`; `format-version` moves from the properties to its
    /// own field, and the other reserved properties (derived from metadata) are dropped.
    pub fn into_creation(self) -> Result<TableCreation> {
        let mut properties = self.properties;
        let format_version = match properties.remove(TableProperties::PROPERTY_FORMAT_VERSION) {
            None => FormatVersion::V2,
            Some(v) => match v.trim() {
                "1" => FormatVersion::V1,
                "2" => FormatVersion::V2,
                "3" => FormatVersion::V3,
                other => {
                    return Err(CatalogError::BadRequest(format!(
                        "unsupported format-version {other:?}: 1, 2 or 3"
                    )))
                }
            },
        };
        properties.retain(|k, _| !TableProperties::RESERVED_PROPERTIES.contains(&k.as_str()));
        Ok(TableCreation::builder()
            .name(self.name)
            .location_opt(self.location)
            .schema(self.schema)
            .partition_spec_opt(self.partition_spec)
            .sort_order_opt(self.write_order)
            .properties(properties)
            .format_version(format_version)
            .build())
    }
}

#[derive(Debug, Deserialize)]
pub struct CommitTableRequest {
    #[serde(default)]
    pub identifier: Option<TableIdent>,
    #[serde(default)]
    pub requirements: Vec<TableRequirement>,
    #[serde(default)]
    pub updates: Vec<TableUpdate>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CommitTransactionRequest {
    pub table_changes: Vec<CommitTableRequest>,
}

#[derive(Debug, Deserialize)]
pub struct RenameTableRequest {
    pub source: TableIdent,
    pub destination: TableIdent,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegisterTableRequest {
    pub name: String,
    pub metadata_location: String,
    #[serde(default)]
    pub overwrite: bool,
}

/// `LoadTableResult`; also the answer to create and register.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoadTableResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_location: Option<String>,
    pub metadata: TableMetadata,
    pub config: HashMap<String, String>,
    /// Vended credentials (only when the client asked for them and STS is configured).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub storage_credentials: Vec<StorageCredential>,
}

impl LoadTableResult {
    pub fn new(
        metadata_location: Option<String>,
        metadata: TableMetadata,
        config: HashMap<String, String>,
    ) -> Self {
        Self {
            metadata_location,
            metadata,
            config,
            storage_credentials: Vec::new(),
        }
    }

    /// Adds vended credentials both ways clients read them: `storage-credentials` (the
    /// spec's, which pyiceberg prefers) and the table's `config` (older clients).
    pub fn with_credentials(mut self, credentials: Vec<StorageCredential>) -> Self {
        for c in &credentials {
            self.config.extend(c.config.clone());
        }
        self.storage_credentials = credentials;
        self
    }
}

impl From<LoadedTable> for LoadTableResult {
    fn from(t: LoadedTable) -> Self {
        Self::new(
            Some(t.metadata_location),
            std::sync::Arc::unwrap_or_clone(t.metadata),
            t.config,
        )
    }
}

/// `LoadCredentialsResponse`, the answer of `GET .../tables/{table}/credentials`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoadCredentialsResponse {
    pub storage_credentials: Vec<StorageCredential>,
}

/// `CommitTableResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CommitTableResponse {
    pub metadata_location: String,
    pub metadata: TableMetadata,
}

#[derive(Debug, Serialize)]
pub struct ConfigResponse {
    pub defaults: HashMap<String, String>,
    pub overrides: HashMap<String, String>,
    pub endpoints: Vec<&'static str>,
}
