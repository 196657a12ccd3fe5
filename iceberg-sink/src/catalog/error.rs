//! The catalog's typed errors and their Iceberg REST `ErrorModel` form.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::vending::VendingError;

/// Everything a catalog operation can fail with. Each variant maps to one status code and one
/// exception type of the Iceberg REST OpenAPI, so clients raise their matching exception.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{0}")]
    BadRequest(String),
    #[error("namespace does not exist: {0}")]
    NoSuchNamespace(String),
    #[error("table does not exist: {0}")]
    NoSuchTable(String),
    #[error("namespace already exists: {0}")]
    NamespaceAlreadyExists(String),
    #[error("table already exists: {0}")]
    TableAlreadyExists(String),
    #[error("namespace is not empty: {0}")]
    NamespaceNotEmpty(String),
    /// A requirement did not hold, or another writer swapped the pointer first: the client
    /// reloads the table and retries.
    #[error("commit failed: {0}")]
    CommitFailed(String),
    #[error("not supported: {0}")]
    NotSupported(String),
    #[error("no route for {0}")]
    NotFound(String),
    /// The caller may not do this (ACLs: see `authz`).
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("corrupt catalog state at {path}: {message}")]
    Corrupt { path: String, message: String },
    #[error("internal error: {0}")]
    Internal(String),
    /// The store lets a second create of one object succeed: commits from two brokers could
    /// then both win and one would be lost, so the catalog refuses to run on it.
    #[error(
        "the object store {0} does not refuse a second create of the same object \
         (create-if-absent: S3 If-None-Match, or local hard links), which the Iceberg catalog \
         needs so that brokers committing at once cannot overwrite each other; use a store that \
         honours it (AWS S3, SeaweedFS, MinIO, a local or NFS directory)"
    )]
    NoCreateIfAbsent(String),
    /// Credential vending failed (STS down or refusing, or a location it cannot scope).
    #[error("credential vending: {0}")]
    Vending(#[from] super::vending::VendingError),
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

impl CatalogError {
    pub fn status(&self) -> StatusCode {
        match self {
            CatalogError::BadRequest(_) => StatusCode::BAD_REQUEST,
            CatalogError::NoSuchNamespace(_)
            | CatalogError::NoSuchTable(_)
            | CatalogError::NotFound(_) => StatusCode::NOT_FOUND,
            CatalogError::NamespaceAlreadyExists(_)
            | CatalogError::TableAlreadyExists(_)
            | CatalogError::NamespaceNotEmpty(_)
            | CatalogError::CommitFailed(_) => StatusCode::CONFLICT,
            CatalogError::NotSupported(_) => StatusCode::NOT_IMPLEMENTED,
            CatalogError::Forbidden(_) => StatusCode::FORBIDDEN,
            CatalogError::Store(_)
            | CatalogError::Corrupt { .. }
            | CatalogError::Internal(_)
            | CatalogError::NoCreateIfAbsent(_) => StatusCode::INTERNAL_SERVER_ERROR,
            CatalogError::Vending(VendingError::Sts { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            CatalogError::Vending(VendingError::Scope { .. }) => StatusCode::FORBIDDEN,
        }
    }

    /// The exception type names the REST spec (and the Java/Python clients) use.
    pub fn error_type(&self) -> &'static str {
        match self {
            CatalogError::BadRequest(_) => "BadRequestException",
            CatalogError::NoSuchNamespace(_) => "NoSuchNamespaceException",
            CatalogError::NoSuchTable(_) => "NoSuchTableException",
            CatalogError::NamespaceAlreadyExists(_) | CatalogError::TableAlreadyExists(_) => {
                "AlreadyExistsException"
            }
            CatalogError::NamespaceNotEmpty(_) => "NamespaceNotEmptyException",
            CatalogError::CommitFailed(_) => "CommitFailedException",
            CatalogError::NotSupported(_) => "UnsupportedOperationException",
            CatalogError::NotFound(_) => "NotFoundException",
            CatalogError::Forbidden(_) => "ForbiddenException",
            CatalogError::Store(_)
            | CatalogError::Corrupt { .. }
            | CatalogError::Internal(_)
            | CatalogError::NoCreateIfAbsent(_) => "InternalServerError",
            CatalogError::Vending(VendingError::Sts { .. }) => "ServiceUnavailableException",
            CatalogError::Vending(VendingError::Scope { .. }) => "ForbiddenException",
        }
    }

    /// Maps an error of the iceberg crate (requirement checks, metadata builder) to ours:
    /// failed requirements are commit conflicts, everything else is the request's fault.
    pub fn from_iceberg(e: iceberg::Error) -> Self {
        use iceberg::ErrorKind as K;
        let message = e.to_string();
        match e.kind() {
            K::CatalogCommitConflicts => CatalogError::CommitFailed(message),
            K::FeatureUnsupported => CatalogError::NotSupported(message),
            K::NamespaceNotFound => CatalogError::NoSuchNamespace(message),
            K::TableNotFound => CatalogError::NoSuchTable(message),
            K::NamespaceAlreadyExists => CatalogError::NamespaceAlreadyExists(message),
            K::TableAlreadyExists => CatalogError::TableAlreadyExists(message),
            _ => CatalogError::BadRequest(message),
        }
    }
}

impl IntoResponse for CatalogError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "iceberg catalog request failed");
        }
        let body = json!({
            "error": {
                "message": self.to_string(),
                "type": self.error_type(),
                "code": status.as_u16(),
            }
        });
        (status, axum::Json(body)).into_response()
    }
}
