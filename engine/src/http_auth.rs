//! Authentication on the HTTP APIs (admin API, schema registry, Iceberg catalog): an axum
//! middleware every router gets ([`HttpAuth::wrap`]) that turns the request's credentials into
//! a [`Caller`] request extension (its [`Session`]), refusing missing or wrong credentials with
//! 401 in each API's own error shape; the admin API also needs a superuser. The registry and
//! the catalog authorize per resource through [`Caller::allowed`].
//!
//! Credentials: HTTP Basic with the SCRAM users, `Bearer` with a token the catalog issued
//! (`POST /v1/oauth/tokens`, [`HttpAuth::token_routes`]) or a JWT of the OAUTHBEARER issuer
//! (a [`BearerVerifier`]), the signed header brokers put on their own requests to each
//! other ([`sign_request`]), which gives `Principal::broker()` (or the principal a broker
//! vouches for, [`sign_request_on_behalf`]), and a verified TLS client certificate
//! ([`crate::http::ClientCert`]) when no `Authorization` header is sent.
//! The pure checks are in `crate::security::http_auth`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};
use crate::security::http_auth::{self as checks, BasicCache, Credentials, ReplayCache};
use crate::security::{Principal, Session};

/// Largest body of a broker-signed request (the MAC covers the body, so it is read whole):
/// the committer's rounds, which carry file metadata, never data.
const MAX_SIGNED_BODY: usize = 16 << 20;

/// Checks JWTs of an external issuer (the OAUTHBEARER settings: JWKS, issuer, audience),
/// answering the principal the token names.
pub trait BearerVerifier: Send + Sync {
    fn verify(&self, token: &str) -> Result<Principal, String>;
}

/// A JWT the OAUTHBEARER settings (`--oauth-jwks-file`, issuer, audience) accept on the Kafka
/// listeners is accepted as a bearer token on the HTTP APIs too, for the same principal.
impl BearerVerifier for crate::security::sasl::oauthbearer::OAuthConfig {
    fn verify(&self, token: &str) -> Result<Principal, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.validate(token, now)
            .map(|(name, _)| Principal::user(name))
    }
}

#[derive(Clone)]
pub struct HttpAuthConfig {
    /// `--http-auth required`: requests without valid credentials are refused. Off, every
    /// request is anonymous (`User:ANONYMOUS`) unless a broker signed it.
    pub required: bool,
    /// The OAUTHBEARER settings' JWT check, when configured.
    pub bearer: Option<Arc<dyn BearerVerifier>>,
    /// Lifetime of the catalog's access tokens.
    pub token_ttl: Duration,
}

impl Default for HttpAuthConfig {
    fn default() -> Self {
        HttpAuthConfig {
            required: false,
            bearer: None,
            token_ttl: Duration::from_secs(3600),
        }
    }
}

impl std::fmt::Debug for HttpAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAuthConfig")
            .field("required", &self.required)
            .field("bearer", &self.bearer.is_some())
            .field("token_ttl", &self.token_ttl)
            .finish()
    }
}

/// Which API a router serves: its listener's name in sessions, its open routes and the shape
/// of its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Admin,
    Registry,
    Catalog,
}

impl Api {
    fn listener(self) -> &'static str {
        match self {
            Api::Admin => "ADMIN_HTTP",
            Api::Registry => "SCHEMA_REGISTRY_HTTP",
            Api::Catalog => "ICEBERG_CATALOG_HTTP",
        }
    }

    /// Served to anyone: readiness and metrics (orchestrators and Prometheus scrape without
    /// credentials, as with Redpanda), and the token endpoint (it checks its own).
    fn open(self, method: &Method, path: &str) -> bool {
        match self {
            Api::Admin => {
                *method == Method::GET && (path == "/v1/status/ready" || path == "/metrics")
            }
            Api::Registry => false,
            Api::Catalog => path == TOKENS_PATH,
        }
    }

    /// An error in the API's own shape: Confluent's for the registry, Iceberg REST's
    /// ErrorModel for the catalog, `{"error"}` for the admin API.
    pub fn error(self, status: StatusCode, message: &str) -> Response {
        let body = match self {
            Api::Admin => json!({"error": message}),
            Api::Registry => json!({
                "error_code": status.as_u16() as u32 * 100 + 1,
                "message": message,
            }),
            Api::Catalog => json!({"error": {
                "message": message,
                "type": if status == StatusCode::UNAUTHORIZED {
                    "NotAuthorizedException"
                } else {
                    "ForbiddenException"
                },
                "code": status.as_u16(),
            }}),
        };
        let ct = match self {
            Api::Registry => "application/vnd.schemaregistry.v1+json",
            _ => "application/json",
        };
        (status, [(header::CONTENT_TYPE, ct)], body.to_string()).into_response()
    }

    fn unauthorized(self, message: &str, bearer_error: bool) -> Response {
        let mut resp = self.error(StatusCode::UNAUTHORIZED, message);
        let h = resp.headers_mut();
        h.append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"icestream\", charset=\"UTF-8\""),
        );
        h.append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(if bearer_error {
                "Bearer realm=\"icestream\", error=\"invalid_token\""
            } else {
                "Bearer realm=\"icestream\""
            }),
        );
        resp
    }
}

/// Who made a request, as the auth middleware found: handlers authorize with it. A router
/// served without the middleware (unit tests) sees an unrestricted caller.
#[derive(Clone)]
pub struct Caller {
    pub session: Arc<Session>,
    broker: Option<Arc<Broker>>,
    /// The session's principal came from the connection's TLS client certificate.
    by_certificate: bool,
}

impl Caller {
    pub fn unrestricted() -> Self {
        Caller {
            session: Arc::new(Session::internal()),
            broker: None,
            by_certificate: false,
        }
    }

    /// The principal, when the caller was authenticated by its TLS client certificate (not
    /// by credentials a forwarded request could carry along).
    pub fn certificate_principal(&self) -> Option<&Principal> {
        self.by_certificate.then_some(&self.session.principal)
    }

    /// The broker that authenticated the request (none for [`Caller::unrestricted`]).
    pub fn broker(&self) -> Option<&Arc<Broker>> {
        self.broker.as_ref()
    }

    /// Whether the caller may do `op` on the resource (always, with authorization off).
    pub fn allowed(&self, op: Operation, resource_type: ResourceType, name: &str) -> bool {
        match &self.broker {
            None => true,
            Some(b) => b.security.authorize(&self.session, op, resource_type, name),
        }
    }

    /// Whether requests are authorized at all (when not, filtering can be skipped).
    pub fn authorizing(&self) -> bool {
        self.broker
            .as_ref()
            .is_some_and(|b| b.security.config().enabled)
    }

    /// Kafka's wording of a denial, for 403 bodies.
    pub fn denied(&self, op: Operation, resource_type: ResourceType, name: &str) -> String {
        format!(
            "{} is not authorized to {op:?} {resource_type:?} '{name}'",
            self.session.principal
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or_else(Caller::unrestricted))
    }
}

/// The authentication every HTTP listener of a broker shares.
pub struct HttpAuth {
    broker: Arc<Broker>,
    config: HttpAuthConfig,
    /// Signs and checks the catalog's access tokens.
    token_key: [u8; 32],
    /// Signs and checks brokers' own requests (only with a cluster secret).
    broker_key: Option<[u8; 32]>,
    basic: BasicCache,
    replays: ReplayCache,
}

/// What a cluster with HTTP authentication or authorization but no cluster secret lacks.
#[derive(Debug, thiserror::Error)]
#[error(
    "HTTP authentication or authorization in a cluster wants a cluster secret \
     (--cluster-secret-file): without one, brokers cannot sign their requests to each other's \
     HTTP APIs (the Iceberg committer's rounds are refused with --authorization), and the \
     catalog's tokens verify only on the broker that issued them"
)]
pub struct NeedsClusterSecret;

impl HttpAuth {
    /// Keys come from `BrokerConfig.cluster_secret` when set (every broker derives the same),
    /// else are random for this process (a single broker).
    pub fn new(
        broker: Arc<Broker>,
        config: HttpAuthConfig,
    ) -> Result<Arc<Self>, NeedsClusterSecret> {
        let secret = broker.config.cluster_secret.clone();
        let token_key = secret.as_deref().map_or_else(checks::random_key, |s| {
            checks::derive_key(s, "icestream http catalog token v1")
        });
        let broker_key = secret.as_deref().map(broker_request_key);
        Ok(Arc::new(HttpAuth {
            broker,
            config,
            token_key,
            broker_key,
            basic: BasicCache::default(),
            replays: ReplayCache::default(),
        }))
    }

    pub fn required(&self) -> bool {
        self.config.required
    }

    /// `router` with authentication (and for the admin API, the superuser check) in front.
    pub fn wrap(self: &Arc<Self>, api: Api, router: Router) -> Router {
        router.layer(axum::middleware::from_fn_with_state(
            (self.clone(), api),
            authenticate,
        ))
    }

    async fn basic(&self, user: String, password: String) -> Result<Principal, String> {
        let state = self.broker.security.state();
        let now = Instant::now();
        if self.basic.hit(&state, &user, &password, now) {
            return Ok(Principal::user(user));
        }
        // Thousands of HMACs: off the async threads.
        let (s, u, p) = (state.clone(), user.clone(), password.clone());
        let ok = tokio::task::spawn_blocking(move || checks::verify_password(&s, &u, &p))
            .await
            .unwrap_or(false);
        if !ok {
            return Err("invalid user name or password".into());
        }
        self.basic.insert(&state, &user, &password, now);
        Ok(Principal::user(user))
    }

    fn bearer(&self, token: &str) -> Result<Principal, String> {
        match checks::verify_token(&self.token_key, token, unix_now()) {
            Ok(Some(claims)) => {
                // A token outlives nothing: its user deleted, it stops working.
                if self.broker.security.state().users.contains_key(&claims.sub) {
                    Ok(Principal::user(claims.sub))
                } else {
                    Err("the token's user no longer exists".into())
                }
            }
            Err(e) => Err(e.to_string()),
            Ok(None) => match &self.config.bearer {
                Some(v) => v.verify(token),
                None => Err(
                    "invalid token: not issued by this cluster's catalog, and no \
                             OAUTHBEARER issuer is configured"
                        .into(),
                ),
            },
        }
    }

    /// The routes of the catalog's OAuth2 client-credentials endpoint (`POST
    /// /v1/oauth/tokens`, as pyiceberg and Spark's Iceberg REST client call it).
    pub fn token_routes(self: &Arc<Self>) -> Router {
        Router::new()
            .route(TOKENS_PATH, post(issue_token))
            .with_state(self.clone())
    }
}

pub const TOKENS_PATH: &str = "/v1/oauth/tokens";

/// Marks a request one broker forwards to another on a client's behalf (the schema
/// registry's writes). Its TLS client certificate is the forwarding broker's, not the
/// client's, so it never authenticates such a request: the client's identity travels in its
/// `Authorization` header or in the forwarding broker's signature ([`sign_request_on_behalf`]).
pub const FORWARDED: &str = "x-icestream-forwarded";

fn broker_request_key(secret: &[u8]) -> [u8; 32] {
    checks::derive_key(secret, "icestream http broker request v1")
}

/// The header (name, value) a broker puts on a request it makes on its own to another
/// broker's HTTP API at `host` (`host:port`, as the `Host` header): a MAC keyed by the cluster
/// secret over method, host, path and query, a timestamp, a nonce and the body; the receiver takes it for
/// `Principal::broker()`. `None` without a cluster secret (then nothing checks it either).
pub fn sign_request(
    broker: &Broker,
    method: &str,
    host: &str,
    path_and_query: &str,
    body: &[u8],
) -> Option<(&'static str, String)> {
    sign(broker, method, host, path_and_query, body, None)
}

/// As [`sign_request`], for a request forwarded on behalf of `principal` (a client this
/// broker authenticated by its TLS certificate): the receiver serves it as that principal.
pub fn sign_request_on_behalf(
    broker: &Broker,
    method: &str,
    host: &str,
    path_and_query: &str,
    body: &[u8],
    principal: &Principal,
) -> Option<(&'static str, String)> {
    let p = principal.to_string();
    sign(broker, method, host, path_and_query, body, Some(&p))
}

fn sign(
    broker: &Broker,
    method: &str,
    host: &str,
    path_and_query: &str,
    body: &[u8],
    on_behalf: Option<&str>,
) -> Option<(&'static str, String)> {
    let key = broker_request_key(broker.config.cluster_secret.as_deref()?);
    let value = checks::sign_broker_request(
        &key,
        method,
        host,
        path_and_query,
        body,
        unix_now(),
        on_behalf,
    );
    Some((checks::BROKER_AUTH_HEADER, value))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn authenticate(
    State((auth, api)): State<(Arc<HttpAuth>, Api)>,
    req: Request,
    next: Next,
) -> Response {
    let host = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let listener: Arc<str> = Arc::from(api.listener());
    let session = |p: Principal| Arc::new(Session::new(p, host, listener.clone()));
    let open = api.open(req.method(), req.uri().path());
    // A verified client certificate names the caller when no Authorization header does.
    let cert = match req.headers().contains_key(FORWARDED) {
        true => None,
        false => req
            .extensions()
            .get::<crate::http::ClientCert>()
            .map(|c| c.0.clone()),
    };
    let mut by_certificate = false;

    // A broker's own request: checked whatever --http-auth says, since it carries no user.
    let (req, principal) = if req.headers().contains_key(checks::BROKER_AUTH_HEADER) {
        match verify_signed(&auth, req).await {
            Ok((req, principal)) => (req, Ok(principal)),
            Err(why) => {
                tracing::warn!(%host, why, "refused an HTTP request with a bad broker signature");
                return api.unauthorized(&why, false);
            }
        }
    } else {
        let creds = req.headers().get(header::AUTHORIZATION).map(|v| {
            v.to_str()
                .map_err(|_| "malformed Authorization header".to_string())
        });
        let principal = match (auth.config.required, creds, cert) {
            // An Authorization header, when sent and checked, wins over the certificate.
            (true, None, Some(p)) | (false, _, Some(p)) => {
                by_certificate = true;
                Ok(p)
            }
            (false, _, None) => Ok(Principal::anonymous()),
            (true, None, None) => Err(("authentication required".to_string(), false)),
            (true, Some(Err(e)), _) => Err((e, false)),
            (true, Some(Ok(v)), _) => match checks::parse_authorization(v) {
                Err(e) => Err((e.to_string(), false)),
                Ok(Credentials::Basic { user, password }) => {
                    auth.basic(user, password).await.map_err(|e| (e, false))
                }
                Ok(Credentials::Bearer(t)) => auth.bearer(&t).map_err(|e| (e, true)),
            },
        };
        (req, principal)
    };
    let principal = match principal {
        Ok(p) => p,
        Err(_) if open => Principal::anonymous(),
        Err((why, bearer)) => return api.unauthorized(&why, bearer),
    };
    let caller = Caller {
        session: session(principal),
        broker: Some(auth.broker.clone()),
        by_certificate,
    };
    if api == Api::Admin && !open && !admin_allowed(&auth.broker, &caller.session) {
        let msg = format!(
            "{} is not a superuser: the admin API needs one (--superusers)",
            caller.session.principal
        );
        return api.error(StatusCode::FORBIDDEN, &msg);
    }
    let mut req = req;
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The admin API (cluster operations, decommissions, the console) is for superusers and the
/// brokers themselves, when authorization is on.
fn admin_allowed(broker: &Broker, session: &Session) -> bool {
    let config = broker.security.config();
    !config.enabled
        || session.principal == Principal::broker()
        || config.super_users.contains(&session.principal)
}

/// Checks a broker-signed request (reading its body, which the MAC covers) and records it so
/// it is accepted once; the principal is the broker's, or the one it vouches for.
async fn verify_signed(auth: &HttpAuth, req: Request) -> Result<(Request, Principal), String> {
    let Some(key) = auth.broker_key else {
        return Err("a broker-signed request, but this broker has no cluster secret".into());
    };
    let (parts, body) = req.into_parts();
    let value = parts
        .headers
        .get(checks::BROKER_AUTH_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = axum::body::to_bytes(body, MAX_SIGNED_BODY)
        .await
        .map_err(|_| "a broker-signed request's body is unreadable or too large".to_string())?;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let signed = checks::verify_broker_request(
        &key,
        &value,
        parts.method.as_str(),
        host,
        path,
        &bytes,
        unix_now(),
    )
    .map_err(|e| e.to_string())?;
    if !auth.replays.first_time(signed.mac, Instant::now()) {
        return Err("a broker-signed request seen before (replayed)".into());
    }
    let principal = match signed.on_behalf {
        None => Principal::broker(),
        Some(p) => Principal::parse(&p).map_err(|e| e.to_string())?,
    };
    Ok((
        Request::from_parts(parts, axum::body::Body::from(bytes)),
        principal,
    ))
}

/// OAuth2's error body (RFC 6749 section 5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut resp = (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"icestream\""),
        );
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `POST /v1/oauth/tokens`: the client-credentials grant. The client id is a user and the
/// secret its password, in the form body or as HTTP Basic (RFC 6749 section 2.3.1).
async fn issue_token(
    State(auth): State<Arc<HttpAuth>>,
    headers: axum::http::HeaderMap,
    form: Result<axum::Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(axum::Form(form)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected an application/x-www-form-urlencoded body",
        );
    };
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only grant_type=client_credentials is supported",
            )
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is missing",
            )
        }
    }
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| checks::parse_authorization(v).ok())
        .and_then(|c| match c {
            // RFC 6749 form-encodes the id and secret inside the Basic credentials.
            Credentials::Basic { user, password } => {
                Some((url_decode(&user), url_decode(&password)))
            }
            Credentials::Bearer(_) => None,
        });
    let from_form = match (form.get("client_id"), form.get("client_secret")) {
        (Some(id), Some(secret)) if !id.is_empty() => Some((id.clone(), secret.clone())),
        _ => None,
    };
    let Some((user, password)) = from_form.or(from_header) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client_id and client_secret (a user and its password) are required",
        );
    };
    if auth.basic(user.clone(), password).await.is_err() {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "invalid client_id or client_secret",
        );
    }
    let scope = form.get("scope").filter(|s| !s.is_empty());
    let ttl = auth.config.token_ttl.as_secs().max(1);
    let token = checks::issue_token(
        &auth.token_key,
        &user,
        scope.map(String::as_str),
        unix_now(),
        ttl,
    );
    let mut body = json!({
        "access_token": token,
        "token_type": "bearer",
        "expires_in": ttl,
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
    });
    if let Some(s) = scope {
        body["scope"] = s.as_str().into();
    }
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space); malformed escapes stay.
fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        assert_eq!(url_decode("a%3Ab+c%"), "a:b c%");
        assert_eq!(url_decode("%zz"), "%zz");
        assert_eq!(url_decode("%41"), "A");
    }

    #[test]
    fn open_routes() {
        assert!(Api::Admin.open(&Method::GET, "/metrics"));
        assert!(Api::Admin.open(&Method::GET, "/v1/status/ready"));
        assert!(!Api::Admin.open(&Method::GET, "/v1/cluster"));
        assert!(!Api::Admin.open(&Method::POST, "/metrics"));
        assert!(Api::Catalog.open(&Method::POST, TOKENS_PATH));
        assert!(!Api::Catalog.open(&Method::GET, "/v1/config"));
        assert!(!Api::Registry.open(&Method::GET, "/subjects"));
    }
}
