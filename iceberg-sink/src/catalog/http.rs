//! The Iceberg REST OpenAPI routes over a [`Catalog`]. Bodies are parsed here (not by axum's
//! extractors) so that every malformed request gets the spec's ErrorModel, not plain text.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::DefaultBodyLimit;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use iceberg::{NamespaceIdent, TableIdent};
use serde::de::DeserializeOwned;

use super::authz;
use super::catalog::{Catalog, TableChange};
use super::error::{CatalogError, Result};
use super::names::namespace_from_path;
use super::wire::*;
use engine::http_auth::Caller;
use engine::security::acl::Operation;

type Cat = State<Arc<Catalog>>;
type Params = Result<Query<HashMap<String, String>>, QueryRejection>;
type BodyBytes = Result<Bytes, BytesRejection>;

/// Largest request body: commits carry schemas and snapshot summaries, never data.
const MAX_BODY_BYTES: usize = 16 << 20;

/// The endpoints this catalog serves, announced in `GET /v1/config`.
const ENDPOINTS: &[&str] = &[
    "GET /v1/{prefix}/namespaces",
    "POST /v1/{prefix}/namespaces",
    "GET /v1/{prefix}/namespaces/{namespace}",
    "HEAD /v1/{prefix}/namespaces/{namespace}",
    "DELETE /v1/{prefix}/namespaces/{namespace}",
    "POST /v1/{prefix}/namespaces/{namespace}/properties",
    "GET /v1/{prefix}/namespaces/{namespace}/tables",
    "POST /v1/{prefix}/namespaces/{namespace}/tables",
    "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "DELETE /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}/metrics",
    "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}/credentials",
    "POST /v1/{prefix}/namespaces/{namespace}/register",
    "POST /v1/{prefix}/tables/rename",
    "POST /v1/{prefix}/transactions/commit",
];

/// The catalog's REST routes (`/v1/...`, no prefix).
pub fn router(catalog: Arc<Catalog>) -> Router {
    Router::new()
        .route("/v1/config", get(config))
        .route(
            "/v1/namespaces",
            get(list_namespaces).post(create_namespace),
        )
        .route(
            "/v1/namespaces/{ns}",
            get(load_namespace)
                .head(namespace_exists)
                .delete(drop_namespace),
        )
        .route("/v1/namespaces/{ns}/properties", post(update_properties))
        .route(
            "/v1/namespaces/{ns}/tables",
            get(list_tables).post(create_table),
        )
        .route(
            "/v1/namespaces/{ns}/tables/{table}",
            get(load_table)
                .head(table_exists)
                .post(commit_table)
                .delete(drop_table),
        )
        .route(
            "/v1/namespaces/{ns}/tables/{table}/metrics",
            post(report_metrics),
        )
        .route(
            "/v1/namespaces/{ns}/tables/{table}/credentials",
            get(load_credentials),
        )
        .route("/v1/namespaces/{ns}/register", post(register_table))
        .route("/v1/tables/rename", post(rename_table))
        .route("/v1/transactions/commit", post(commit_transaction))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(super::authz::authorize))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(catalog)
}

/// Serves the REST catalog, its OAuth2 token endpoint and the broker's `internal` routes on
/// `listener`, behind the broker's HTTP authentication, until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    catalog: Arc<Catalog>,
    internal: Router,
    auth: Arc<engine::http_auth::HttpAuth>,
    limits: engine::http::HttpLimits,
    limiter: Arc<engine::limits::connections::ConnLimiter>,
) -> std::io::Result<()> {
    let routes = router(catalog).merge(internal).merge(auth.token_routes());
    let routes = auth.wrap(engine::http_auth::Api::Catalog, routes);
    engine::http::serve(listener, routes, limits, limiter).await
}

fn body<T: DeserializeOwned>(bytes: BodyBytes) -> Result<T> {
    let bytes = bytes.map_err(|e| CatalogError::BadRequest(e.body_text()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| CatalogError::BadRequest(format!("malformed request body: {e}")))
}

fn ns_param(p: Result<Path<String>, PathRejection>) -> Result<NamespaceIdent> {
    let Path(raw) = p.map_err(|e| CatalogError::BadRequest(e.body_text()))?;
    namespace_from_path(&raw)
}

fn table_param(p: Result<Path<(String, String)>, PathRejection>) -> Result<TableIdent> {
    let Path((ns, table)) = p.map_err(|e| CatalogError::BadRequest(e.body_text()))?;
    Ok(TableIdent::new(namespace_from_path(&ns)?, table))
}

fn params(q: Params) -> Result<HashMap<String, String>> {
    q.map(|Query(m)| m)
        .map_err(|e| CatalogError::BadRequest(e.body_text()))
}

async fn not_found(uri: Uri) -> CatalogError {
    CatalogError::NotFound(uri.path().to_string())
}

async fn config(State(catalog): Cat) -> Response {
    // Storage settings (S3 endpoint, region...) as defaults, so that a client reading files
    // itself gets them before it loads any table.
    let mut defaults = catalog.client_config().clone();
    defaults.insert(
        "warehouse".to_string(),
        catalog.warehouse_location().to_string(),
    );
    Json(ConfigResponse {
        defaults,
        overrides: HashMap::new(),
        endpoints: ENDPOINTS.to_vec(),
    })
    .into_response()
}

async fn list_namespaces(State(catalog): Cat, q: Params) -> Result<Response> {
    let q = params(q)?;
    let parent = match q.get("parent").filter(|p| !p.is_empty()) {
        // The parent's levels joined by the unit separator, as in paths.
        Some(p) => Some(namespace_from_path(p)?),
        None => None,
    };
    let namespaces = catalog.list_namespaces(parent.as_ref()).await?;
    Ok(Json(ListNamespacesResponse { namespaces }).into_response())
}

async fn create_namespace(State(catalog): Cat, bytes: BodyBytes) -> Result<Response> {
    let req: CreateNamespaceRequest = body(bytes)?;
    let properties = catalog
        .create_namespace(&req.namespace, req.properties)
        .await?;
    Ok(Json(NamespaceResponse {
        namespace: req.namespace,
        properties,
    })
    .into_response())
}

async fn load_namespace(
    State(catalog): Cat,
    p: Result<Path<String>, PathRejection>,
) -> Result<Response> {
    let ns = ns_param(p)?;
    let properties = catalog.load_namespace(&ns).await?;
    Ok(Json(NamespaceResponse {
        namespace: ns,
        properties,
    })
    .into_response())
}

async fn namespace_exists(
    State(catalog): Cat,
    p: Result<Path<String>, PathRejection>,
) -> Result<StatusCode> {
    let ns = ns_param(p)?;
    Ok(if catalog.namespace_exists(&ns).await? {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    })
}

async fn drop_namespace(
    State(catalog): Cat,
    p: Result<Path<String>, PathRejection>,
) -> Result<StatusCode> {
    catalog.drop_namespace(&ns_param(p)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn update_properties(
    State(catalog): Cat,
    p: Result<Path<String>, PathRejection>,
    bytes: BodyBytes,
) -> Result<Response> {
    let ns = ns_param(p)?;
    let req: UpdateNamespacePropertiesRequest = body(bytes)?;
    let result = catalog
        .update_namespace_properties(&ns, req.removals, req.updates)
        .await?;
    Ok(Json(result).into_response())
}

async fn list_tables(
    State(catalog): Cat,
    caller: Caller,
    p: Result<Path<String>, PathRejection>,
) -> Result<Response> {
    let mut identifiers = catalog.list_tables(&ns_param(p)?).await?;
    identifiers.retain(|t| authz::listed(&caller, t));
    Ok(Json(ListTablesResponse { identifiers }).into_response())
}

async fn create_table(
    State(catalog): Cat,
    caller: Caller,
    headers: HeaderMap,
    p: Result<Path<String>, PathRejection>,
    bytes: BodyBytes,
) -> Result<Response> {
    let ns = ns_param(p)?;
    let req: CreateTableRequest = body(bytes)?;
    authz::create(&caller, &req.name)?;
    if req.stage_create {
        // Only metadata handed back: the table is created by a later commit that asserts
        // `assert-create` and carries these updates.
        let metadata = catalog.stage_table(&ns, req.into_creation()?).await?;
        let staged = LoadTableResult::new(None, metadata, catalog.client_config().clone());
        return Ok(Json(with_access(&catalog, &headers, staged).await?).into_response());
    }
    let loaded = catalog.create_table(&ns, req.into_creation()?).await?;
    let result = with_access(&catalog, &headers, loaded.into()).await?;
    Ok(Json(result).into_response())
}

async fn load_table(
    State(catalog): Cat,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response> {
    let loaded = catalog.load_table(&table_param(p)?).await?;
    let result = with_access(&catalog, &headers, loaded.into()).await?;
    Ok(Json(result).into_response())
}

async fn with_access(
    catalog: &Catalog,
    headers: &HeaderMap,
    result: LoadTableResult,
) -> Result<LoadTableResult> {
    if !super::vending::wants_vended_credentials(headers) {
        return Ok(result);
    }
    let credentials = catalog
        .storage_credentials(result.metadata.location())
        .await?;
    Ok(result.with_credentials(credentials))
}

/// `loadCredentials`: fresh vended credentials for a table (clients refresh with it before
/// `s3.session-token-expires-at-ms`); empty when vending is off.
async fn load_credentials(
    State(catalog): Cat,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response> {
    let loaded = catalog.load_table(&table_param(p)?).await?;
    let storage_credentials = catalog
        .storage_credentials(loaded.metadata.location())
        .await?;
    Ok(Json(LoadCredentialsResponse {
        storage_credentials,
    })
    .into_response())
}

async fn table_exists(
    State(catalog): Cat,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode> {
    Ok(if catalog.table_exists(&table_param(p)?).await? {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    })
}

async fn commit_table(
    State(catalog): Cat,
    p: Result<Path<(String, String)>, PathRejection>,
    bytes: BodyBytes,
) -> Result<Response> {
    let ident = table_param(p)?;
    let req: CommitTableRequest = body(bytes)?;
    if let Some(named) = &req.identifier {
        if named != &ident {
            return Err(CatalogError::BadRequest(format!(
                "the body names table {} but the path names {}",
                super::names::display_table(named),
                super::names::display_table(&ident)
            )));
        }
    }
    let loaded = catalog
        .commit_table(&ident, req.requirements, req.updates)
        .await?;
    Ok(Json(CommitTableResponse {
        metadata_location: loaded.metadata_location,
        metadata: Arc::unwrap_or_clone(loaded.metadata),
    })
    .into_response())
}

async fn drop_table(
    State(catalog): Cat,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Params,
) -> Result<StatusCode> {
    let ident = table_param(p)?;
    let purge = params(q)?
        .get("purgeRequested")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    catalog.drop_table(&ident, purge).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Scan and commit reports (Java clients send them after every scan): accepted and dropped.
async fn report_metrics(p: Result<Path<(String, String)>, PathRejection>) -> Result<StatusCode> {
    table_param(p)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn register_table(
    State(catalog): Cat,
    caller: Caller,
    headers: HeaderMap,
    p: Result<Path<String>, PathRejection>,
    bytes: BodyBytes,
) -> Result<Response> {
    let ns = ns_param(p)?;
    let req: RegisterTableRequest = body(bytes)?;
    authz::create(&caller, &req.name)?;
    if req.overwrite {
        return Err(CatalogError::NotSupported("register with overwrite".into()));
    }
    let ident = TableIdent::new(ns, req.name);
    let loaded = catalog
        .register_table(&ident, &req.metadata_location)
        .await?;
    let result = with_access(&catalog, &headers, loaded.into()).await?;
    Ok(Json(result).into_response())
}

/// `POST /v1/transactions/commit` for changes to one table (what DuckDB sends for a write):
/// they become one atomic commit. Changes spanning several tables are refused, since the
/// catalog swaps one pointer per table and could not make them atomic together.
async fn commit_transaction(
    State(catalog): Cat,
    caller: Caller,
    bytes: BodyBytes,
) -> Result<StatusCode> {
    let req: CommitTransactionRequest = body(bytes)?;
    let mut ident: Option<TableIdent> = None;
    let mut changes = Vec::with_capacity(req.table_changes.len());
    for change in req.table_changes {
        let named = change.identifier.ok_or_else(|| {
            CatalogError::BadRequest(
                "every table change of a transaction needs an identifier".into(),
            )
        })?;
        match &ident {
            Some(first) if first != &named => {
                return Err(CatalogError::NotSupported(
                    "transactions that change more than one table".into(),
                ))
            }
            Some(_) => {}
            None => ident = Some(named),
        }
        changes.push(TableChange {
            requirements: change.requirements,
            updates: change.updates,
        });
    }
    if let Some(ident) = ident {
        authz::table(&caller, Operation::Alter, &ident)?;
        catalog.commit_table_changes(&ident, changes).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A rename alters the source and creates the destination.
async fn rename_table(State(catalog): Cat, caller: Caller, bytes: BodyBytes) -> Result<StatusCode> {
    let req: RenameTableRequest = body(bytes)?;
    authz::table(&caller, Operation::Alter, &req.source)?;
    authz::create(&caller, req.destination.name())?;
    catalog.rename_table(&req.source, &req.destination).await?;
    Ok(StatusCode::NO_CONTENT)
}
