//! The Confluent Schema Registry REST API: paths, content types and error bodies.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::registry::{Registry, RegistryError, SchemaRequest, VersionRef};

pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

type Params = Query<HashMap<String, String>>;
type Reg = State<Arc<Registry>>;

pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/", get(|| async { reply(json!({})) }))
        .route("/schemas/types", get(types))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/versions", get(id_versions))
        .route("/schemas/ids/{id}/subjects", get(id_subjects))
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route(
            "/subjects/{subject}/versions/{version}",
            get(version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(raw_version),
        )
        .route("/config", get(get_global_config).put(put_global_config))
        .route(
            "/config/{subject}",
            get(get_config).put(put_config).delete(delete_config),
        )
        .route("/mode", get(get_mode).put(put_mode))
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compat_version),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(compat_all),
        )
        .fallback(|| async { http_error(404, "HTTP 404 Not Found") })
        .method_not_allowed_fallback(|| async { http_error(405, "HTTP 405 Method Not Allowed") })
        .with_state(registry)
}

/// Serves the API on an already-bound listener until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
) -> std::io::Result<()> {
    axum::serve(listener, router(registry)).await
}

fn reply(body: Value) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body.to_string()).into_response()
}

fn http_error(status: u16, message: &str) -> Response {
    error_body(status, status as u32, message)
}

fn error_body(status: u16, code: u32, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        json!({"error_code": code, "message": message}).to_string(),
    )
        .into_response()
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let (status, code) = self.codes();
        if status >= 500 {
            tracing::warn!(error = %self, "schema registry store error");
        }
        error_body(status, code, &self.to_string())
    }
}

/// A handler's error: the registry's, or one about the HTTP request itself.
#[derive(Debug)]
pub enum ApiError {
    Registry(RegistryError),
    Http {
        status: u16,
        code: u32,
        message: String,
    },
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        ApiError::Registry(e)
    }
}

impl ApiError {
    fn http(status: u16, code: u32, message: impl Into<String>) -> ApiError {
        ApiError::Http {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Registry(e) => e.into_response(),
            ApiError::Http {
                status,
                code,
                message,
            } => error_body(status, code, &message),
        }
    }
}

type Result<T> = std::result::Result<T, ApiError>;

fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn parse_id(id: &str) -> Result<i32> {
    id.parse()
        .map_err(|_| ApiError::http(404, 404, "HTTP 404 Not Found"))
}

fn version_ref(v: &str) -> Result<VersionRef> {
    Ok(VersionRef::parse(v)?)
}

/// The JSON body, if the content type is one the registry accepts.
fn body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, bytes: &Bytes) -> Result<T> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let accepted = [
            "application/vnd.schemaregistry.v1+json",
            "application/vnd.schemaregistry+json",
            "application/json",
            "application/octet-stream",
        ];
        if !accepted.contains(&ct.as_str()) {
            return Err(ApiError::http(415, 415, "HTTP 415 Unsupported Media Type"));
        }
    }
    serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            ApiError::http(422, 422, format!("Unrecognized request body: {e}"))
        } else {
            ApiError::http(400, 400, format!("Malformed JSON: {e}"))
        }
    })
}

async fn types() -> Response {
    // Confluent's order, without PROTOBUF (not supported yet).
    reply(json!(["JSON", "AVRO"]))
}

async fn schema_by_id(State(r): Reg, Path(id): Path<String>) -> Result<Response> {
    let id = parse_id(&id)?;
    let (text, _) = r.by_id(id, true)?;
    let mut body = json!({ "schema": text });
    let t = r.schema_type_of(id);
    if t != "AVRO" {
        body["schemaType"] = t.into();
    }
    Ok(reply(body))
}

async fn raw_schema_by_id(State(r): Reg, Path(id): Path<String>) -> Result<Response> {
    let (text, _) = r.by_id(parse_id(&id)?, true)?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

async fn id_versions(State(r): Reg, Path(id): Path<String>, Query(q): Params) -> Result<Response> {
    let (_, uses) = r.by_id(parse_id(&id)?, flag(&q, "deleted"))?;
    Ok(reply(json!(uses
        .iter()
        .map(|(s, v)| json!({"subject": s, "version": v}))
        .collect::<Vec<_>>())))
}

async fn id_subjects(State(r): Reg, Path(id): Path<String>, Query(q): Params) -> Result<Response> {
    let (_, uses) = r.by_id(parse_id(&id)?, flag(&q, "deleted"))?;
    let mut subjects: Vec<&String> = uses.iter().map(|(s, _)| s).collect();
    subjects.dedup();
    Ok(reply(json!(subjects)))
}

async fn subjects(State(r): Reg, Query(q): Params) -> Response {
    let prefix = q.get("subjectPrefix").map_or("", String::as_str);
    reply(json!(r.subjects(flag(&q, "deleted"), prefix)))
}

async fn versions(State(r): Reg, Path(s): Path<String>, Query(q): Params) -> Result<Response> {
    Ok(reply(json!(r.versions(&s, flag(&q, "deleted"))?)))
}

async fn register(
    State(r): Reg,
    Path(s): Path<String>,
    headers: HeaderMap,
    b: Bytes,
) -> Result<Response> {
    let req: SchemaRequest = body(&headers, &b)?;
    let id = r.register(&s, &req).await?;
    Ok(reply(json!({ "id": id })))
}

async fn lookup(
    State(r): Reg,
    Path(s): Path<String>,
    Query(q): Params,
    headers: HeaderMap,
    b: Bytes,
) -> Result<Response> {
    let req: SchemaRequest = body(&headers, &b)?;
    Ok(reply(r.lookup(&s, &req, flag(&q, "deleted"))?.to_json()))
}

async fn version(
    State(r): Reg,
    Path((s, v)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response> {
    let v = version_ref(&v)?;
    Ok(reply(r.version(&s, v, flag(&q, "deleted"))?.to_json()))
}

async fn raw_version(
    State(r): Reg,
    Path((s, v)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response> {
    let v = version_ref(&v)?;
    let sv = r.version(&s, v, flag(&q, "deleted"))?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], sv.schema).into_response())
}

async fn delete_subject(
    State(r): Reg,
    Path(s): Path<String>,
    Query(q): Params,
) -> Result<Response> {
    Ok(reply(json!(
        r.delete_subject(&s, flag(&q, "permanent")).await?
    )))
}

async fn delete_version(
    State(r): Reg,
    Path((s, v)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response> {
    let v = version_ref(&v)?;
    Ok(reply(json!(
        r.delete_version(&s, v, flag(&q, "permanent")).await?
    )))
}

#[derive(serde::Deserialize)]
struct ConfigBody {
    compatibility: Option<String>,
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: Option<String>,
}

impl ConfigBody {
    fn level(&self) -> String {
        self.compatibility
            .clone()
            .or_else(|| self.compatibility_level.clone())
            .unwrap_or_default()
    }
}

async fn get_global_config(State(r): Reg) -> Result<Response> {
    let l = r.config(None, true)?;
    Ok(reply(json!({"compatibilityLevel": l.name()})))
}

async fn put_global_config(State(r): Reg, headers: HeaderMap, b: Bytes) -> Result<Response> {
    let c: ConfigBody = body(&headers, &b)?;
    let l = r.set_config(None, &c.level()).await?;
    Ok(reply(json!({"compatibility": l.name()})))
}

async fn get_config(State(r): Reg, Path(s): Path<String>, Query(q): Params) -> Result<Response> {
    let l = r.config(Some(&s), flag(&q, "defaultToGlobal"))?;
    Ok(reply(json!({"compatibilityLevel": l.name()})))
}

async fn put_config(
    State(r): Reg,
    Path(s): Path<String>,
    headers: HeaderMap,
    b: Bytes,
) -> Result<Response> {
    let c: ConfigBody = body(&headers, &b)?;
    let l = r.set_config(Some(&s), &c.level()).await?;
    Ok(reply(json!({"compatibility": l.name()})))
}

async fn delete_config(State(r): Reg, Path(s): Path<String>) -> Result<Response> {
    let l = r.delete_config(&s).await?;
    Ok(reply(json!({"compatibilityLevel": l.name()})))
}

async fn get_mode(State(r): Reg) -> Response {
    reply(json!({"mode": r.mode()}))
}

#[derive(serde::Deserialize)]
struct ModeBody {
    mode: String,
}

async fn put_mode(State(r): Reg, headers: HeaderMap, b: Bytes) -> Result<Response> {
    let m: ModeBody = body(&headers, &b)?;
    Ok(reply(json!({"mode": r.set_mode(&m.mode).await?})))
}

fn compat_reply(reasons: Vec<String>, verbose: bool) -> Response {
    let mut v = json!({"is_compatible": reasons.is_empty()});
    if verbose {
        v["messages"] = json!(reasons);
    }
    reply(v)
}

async fn compat_version(
    State(r): Reg,
    Path((s, v)): Path<(String, String)>,
    Query(q): Params,
    headers: HeaderMap,
    b: Bytes,
) -> Result<Response> {
    let v = version_ref(&v)?;
    let req: SchemaRequest = body(&headers, &b)?;
    let reasons = r.check(&s, Some(v), &req)?;
    Ok(compat_reply(reasons, flag(&q, "verbose")))
}

async fn compat_all(
    State(r): Reg,
    Path(s): Path<String>,
    Query(q): Params,
    headers: HeaderMap,
    b: Bytes,
) -> Result<Response> {
    let req: SchemaRequest = body(&headers, &b)?;
    let reasons = r.check(&s, None, &req)?;
    Ok(compat_reply(reasons, flag(&q, "verbose")))
}
