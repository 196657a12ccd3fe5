//! The Confluent Schema Registry REST API: paths, content types and error bodies.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use engine::security::acl::{Operation, ResourceType};
use serde_json::{json, Value};

use crate::authz::{self, may_read_any};
use crate::forward;
use crate::registry::{
    Registry, RegistryError, SchemaRequest, SchemasQuery, VersionRef, WriteRoute, APPLY_TIMEOUT,
};
use engine::http_auth::Caller;

pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Largest request body: far above any real schema, small enough that a client cannot make
/// the broker buffer much. Larger bodies get 413 with a Confluent error body.
pub const MAX_BODY: usize = 2 << 20;

/// A request body, or why it could not be read (too large).
type Body = std::result::Result<Bytes, BytesRejection>;

type Params = Query<HashMap<String, String>>;
type Reg = State<Arc<Registry>>;

pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/", get(|| async { reply(json!({})) }))
        .route("/schemas", get(all_schemas))
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
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route("/config", get(get_global_config).put(put_global_config))
        .route(
            "/config/{subject}",
            get(get_config).put(put_config).delete(delete_config),
        )
        .route("/mode", get(get_mode).put(put_mode))
        .route(
            "/mode/{subject}",
            get(get_subject_mode)
                .put(put_subject_mode)
                .delete(delete_subject_mode),
        )
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
        .layer(axum::middleware::from_fn_with_state(
            registry.clone(),
            route_writes,
        ))
        // Before forwarding: a write the caller may not make never leaves this broker (the
        // writer checks again, with the caller's forwarded credentials).
        .layer(axum::middleware::from_fn(authz::authorize))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            registry.metrics.clone(),
            crate::metrics::count,
        ))
        .with_state(registry)
}

/// Register, delete, config and mode changes: everything but reads (a lookup and a
/// compatibility check are POSTs that only read).
fn is_write(method: &axum::http::Method, path: &str) -> bool {
    use axum::http::Method;
    if method == Method::PUT || method == Method::DELETE {
        return true;
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    method == Method::POST && matches!(segments.as_slice(), ["subjects", _, "versions"])
}

/// In a cluster one registry writes: the one on the leader of `_schemas`. Elsewhere a write is
/// forwarded to it and its answer returned once this broker's replica has applied the write
/// (so a read here right after sees it). Reads are served from the local replica, or, on a
/// broker that holds none (clusters of more than three brokers), forwarded to the leader's.
async fn route_writes(
    State(r): Reg,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if r.applied().is_none() {
        return next.run(req).await;
    }
    let write = is_write(req.method(), req.uri().path());
    if !write && (r.holds_replica() || req.headers().contains_key(forward::FORWARDED)) {
        return next.run(req).await;
    }
    // A read here means this broker has no replica of `_schemas`: ask the leader's registry.
    let route = if write {
        r.route_write().await
    } else {
        r.route_read()
    };
    let route = match route {
        Ok(route) => route,
        Err(e) => return e.into_response(),
    };
    let url = match route {
        WriteRoute::Local if !write => return next.run(req).await,
        WriteRoute::Local => {
            let mut resp = next.run(req).await;
            if let Some(applied) = r.applied() {
                resp.headers_mut()
                    .insert(forward::APPLIED, axum::http::HeaderValue::from(applied));
            }
            return resp;
        }
        // Forwarded here by a broker that took this one for the writer: leadership moved.
        WriteRoute::Forward(_) if req.headers().contains_key(forward::FORWARDED) => {
            return RegistryError::UnknownLeader(
                "the leader of _schemas moved while the request was forwarded".into(),
            )
            .into_response();
        }
        WriteRoute::Forward(url) => url,
    };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return http_error(413, "Request body is too large");
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let h = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let (ct, authorization) = (h(header::CONTENT_TYPE), h(header::AUTHORIZATION));
    // The caller's own credentials go along: the writer authenticates and authorizes them. A
    // caller known by its TLS certificate has none: this broker vouches for it instead.
    let caller = parts.extensions.get::<Caller>();
    let by_certificate = caller.and_then(|c| Some((c.broker()?, c.certificate_principal()?)));
    let caller = match by_certificate {
        Some((broker, principal)) => forward::Caller::Certificate(broker, principal),
        None => forward::Caller::Authorization(authorization),
    };
    match forward::send(&url, parts.method.as_str(), path, ct, caller, &bytes).await {
        Err(e) => RegistryError::Forwarding(format!("{url}: {e}")).into_response(),
        Ok(a) => {
            // A broker without a replica has nothing to wait for.
            if let Some(end) = a.applied.filter(|_| r.holds_replica()) {
                // Bounded: the leader's answer stands even if this replica lags behind.
                if !r.wait_applied(end, APPLY_TIMEOUT).await {
                    tracing::warn!(end, "a forwarded write is not applied here yet");
                }
            }
            let status =
                StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let ct = a.content_type.unwrap_or_else(|| CONTENT_TYPE.to_string());
            (status, [(header::CONTENT_TYPE, ct)], a.body).into_response()
        }
    }
}

/// Serves the API on an already-bound listener, behind the broker's HTTP authentication,
/// until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    auth: Arc<engine::http_auth::HttpAuth>,
    limits: engine::http::HttpLimits,
    limiter: Arc<engine::limits::connections::ConnLimiter>,
) -> std::io::Result<()> {
    let router = auth.wrap(engine::http_auth::Api::Registry, router(registry));
    engine::http::serve(listener, router, limits, limiter).await
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
fn body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, bytes: &Body) -> Result<T> {
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
    let bytes = bytes.as_ref().map_err(|e| {
        let status = e.status().as_u16();
        ApiError::http(status, status as u32, e.body_text())
    })?;
    serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            ApiError::http(422, 422, format!("Unrecognized request body: {e}"))
        } else {
            ApiError::http(400, 400, format!("Malformed JSON: {e}"))
        }
    })
}

async fn types() -> Response {
    // Confluent's order.
    reply(json!(["JSON", "PROTOBUF", "AVRO"]))
}

/// `?format=serialized` asks for a Protobuf schema as a base64 `FileDescriptorProto`.
fn serialized(q: &HashMap<String, String>) -> bool {
    q.get("format").is_some_and(|f| f == "serialized")
}

async fn schema_by_id(
    State(r): Reg,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response> {
    let id = parse_id(&id)?;
    let (mut text, uses) = r.by_id(id, true)?;
    readable(&caller, &uses)?;
    text = if serialized(&q) {
        r.serialized(id)
    } else {
        r.shown(id)
    }
    .unwrap_or(text);
    let mut body = json!({ "schema": text });
    let t = r.schema_type_of(id);
    if t != "AVRO" {
        body["schemaType"] = t.into();
    }
    let refs = r.references_of(id);
    if refs.as_array().is_some_and(|a| !a.is_empty()) {
        body["references"] = refs;
    }
    Ok(reply(body))
}

async fn all_schemas(State(r): Reg, caller: Caller, Query(q): Params) -> Result<Response> {
    let num = |k: &str| -> Result<Option<usize>> {
        q.get(k)
            .map(|v| {
                v.parse::<i64>()
                    .map(|n| n.max(0) as usize)
                    .map_err(|_| ApiError::http(400, 400, format!("{k} must be a number")))
            })
            .transpose()
    };
    let query = SchemasQuery {
        subject_prefix: q.get("subjectPrefix").cloned().unwrap_or_default(),
        deleted: flag(&q, "deleted"),
        latest_only: flag(&q, "latestOnly"),
        offset: num("offset")?.unwrap_or(0),
        // Confluent treats limit <= 0 as no limit.
        limit: num("limit")?.filter(|n| *n > 0),
    };
    Ok(reply(json!(r
        .schemas(&query)
        .iter()
        .filter(|sv| !caller.authorizing()
            || caller.allowed(Operation::Read, ResourceType::RegistrySubject, &sv.subject))
        .map(|sv| shown(&r, sv))
        .collect::<Vec<_>>())))
}

/// A subject version as responses show it (see `Registry::shown`).
fn shown(r: &Registry, sv: &crate::registry::SchemaVersion) -> Value {
    let mut v = sv.to_json();
    if let Some(text) = r.shown(sv.id) {
        v["schema"] = text.into();
    }
    v
}

async fn referenced_by(State(r): Reg, Path((s, v)): Path<(String, String)>) -> Result<Response> {
    let v = version_ref(&v)?;
    Ok(reply(json!(r.referenced_by(&s, v)?)))
}

async fn raw_schema_by_id(
    State(r): Reg,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    let id = parse_id(&id)?;
    let (text, uses) = r.by_id(id, true)?;
    readable(&caller, &uses)?;
    let text = r.shown(id).unwrap_or(text);
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

async fn id_versions(
    State(r): Reg,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response> {
    let (_, uses) = r.by_id(parse_id(&id)?, flag(&q, "deleted"))?;
    Ok(reply(json!(uses
        .iter()
        .filter(|(s, _)| authz::listed(&caller, s))
        .map(|(s, v)| json!({"subject": s, "version": v}))
        .collect::<Vec<_>>())))
}

async fn id_subjects(
    State(r): Reg,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response> {
    let (_, uses) = r.by_id(parse_id(&id)?, flag(&q, "deleted"))?;
    let mut subjects: Vec<&String> = uses
        .iter()
        .map(|(s, _)| s)
        .filter(|s| authz::listed(&caller, s))
        .collect();
    subjects.dedup();
    Ok(reply(json!(subjects)))
}

async fn subjects(State(r): Reg, caller: Caller, Query(q): Params) -> Response {
    let prefix = q.get("subjectPrefix").map_or("", String::as_str);
    let mut subjects = r.subjects(flag(&q, "deleted"), prefix);
    subjects.retain(|s| authz::listed(&caller, s));
    reply(json!(subjects))
}

/// A schema by id is the caller's to read when it may read a subject that holds it.
fn readable(caller: &Caller, uses: &[(String, i32)]) -> Result<()> {
    if may_read_any(caller, uses) {
        return Ok(());
    }
    Err(ApiError::http(
        403,
        40301,
        format!(
            "{} is not authorized to read a subject holding this schema",
            caller.session.principal
        ),
    ))
}

async fn versions(State(r): Reg, Path(s): Path<String>, Query(q): Params) -> Result<Response> {
    Ok(reply(json!(r.versions(&s, flag(&q, "deleted"))?)))
}

async fn register(
    State(r): Reg,
    Path(s): Path<String>,
    Query(q): Params,
    headers: HeaderMap,
    b: Body,
) -> Result<Response> {
    let req: SchemaRequest = body(&headers, &b)?;
    let id = r.register(&s, &req, flag(&q, "normalize")).await?;
    Ok(reply(json!({ "id": id })))
}

async fn lookup(
    State(r): Reg,
    Path(s): Path<String>,
    Query(q): Params,
    headers: HeaderMap,
    b: Body,
) -> Result<Response> {
    let req: SchemaRequest = body(&headers, &b)?;
    let found = r.lookup(&s, &req, flag(&q, "deleted"), flag(&q, "normalize"))?;
    Ok(reply(shown(&r, &found)))
}

async fn version(
    State(r): Reg,
    Path((s, v)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response> {
    let v = version_ref(&v)?;
    let sv = r.version(&s, v, flag(&q, "deleted"))?;
    let mut body = shown(&r, &sv);
    if serialized(&q) {
        if let Some(text) = r.serialized(sv.id) {
            body["schema"] = text.into();
        }
    }
    Ok(reply(body))
}

async fn raw_version(
    State(r): Reg,
    Path((s, v)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response> {
    let v = version_ref(&v)?;
    let sv = r.version(&s, v, flag(&q, "deleted"))?;
    let text = r.shown(sv.id).unwrap_or(sv.schema);
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
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
    normalize: Option<bool>,
}

impl ConfigBody {
    fn level(&self) -> Option<&str> {
        self.compatibility
            .as_deref()
            .or(self.compatibility_level.as_deref())
    }
}

/// A PUT /config answer: what was set, with Confluent's `compatibility` key.
fn config_set_reply(c: crate::registry::Config) -> Response {
    let mut v = json!({});
    if let Some(l) = c.level {
        v["compatibility"] = l.name().into();
    }
    if let Some(n) = c.normalize {
        v["normalize"] = n.into();
    }
    reply(v)
}

async fn get_global_config(State(r): Reg) -> Result<Response> {
    Ok(reply(r.config(None, true)?.to_json()))
}

async fn put_global_config(State(r): Reg, headers: HeaderMap, b: Body) -> Result<Response> {
    let c: ConfigBody = body(&headers, &b)?;
    let set = r.set_config(None, c.level(), c.normalize).await?;
    Ok(config_set_reply(set))
}

async fn get_config(State(r): Reg, Path(s): Path<String>, Query(q): Params) -> Result<Response> {
    Ok(reply(
        r.config(Some(&s), flag(&q, "defaultToGlobal"))?.to_json(),
    ))
}

async fn put_config(
    State(r): Reg,
    Path(s): Path<String>,
    headers: HeaderMap,
    b: Body,
) -> Result<Response> {
    let c: ConfigBody = body(&headers, &b)?;
    let set = r.set_config(Some(&s), c.level(), c.normalize).await?;
    Ok(config_set_reply(set))
}

async fn delete_config(State(r): Reg, Path(s): Path<String>) -> Result<Response> {
    Ok(reply(r.delete_config(&s).await?.to_json()))
}

async fn get_mode(State(r): Reg) -> Result<Response> {
    Ok(reply(json!({"mode": r.mode(None, true)?.name()})))
}

#[derive(serde::Deserialize)]
struct ModeBody {
    mode: String,
}

async fn put_mode(
    State(r): Reg,
    Query(q): Params,
    headers: HeaderMap,
    b: Body,
) -> Result<Response> {
    let m: ModeBody = body(&headers, &b)?;
    let mode = r.set_mode(None, &m.mode, flag(&q, "force")).await?;
    Ok(reply(json!({"mode": mode.name()})))
}

async fn get_subject_mode(
    State(r): Reg,
    Path(s): Path<String>,
    Query(q): Params,
) -> Result<Response> {
    let mode = r.mode(Some(&s), flag(&q, "defaultToGlobal"))?;
    Ok(reply(json!({"mode": mode.name()})))
}

async fn put_subject_mode(
    State(r): Reg,
    Path(s): Path<String>,
    Query(q): Params,
    headers: HeaderMap,
    b: Body,
) -> Result<Response> {
    let m: ModeBody = body(&headers, &b)?;
    let mode = r.set_mode(Some(&s), &m.mode, flag(&q, "force")).await?;
    Ok(reply(json!({"mode": mode.name()})))
}

async fn delete_subject_mode(State(r): Reg, Path(s): Path<String>) -> Result<Response> {
    Ok(reply(json!({"mode": r.delete_mode(&s).await?.name()})))
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
    b: Body,
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
    b: Body,
) -> Result<Response> {
    let req: SchemaRequest = body(&headers, &b)?;
    let reasons = r.check(&s, None, &req)?;
    Ok(compat_reply(reasons, flag(&q, "verbose")))
}
