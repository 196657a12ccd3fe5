//! The admin HTTP API: readiness for orchestrators, Prometheus metrics and per-topic storage.
//! Other crates add their routes (tiering's mount/unmount) through [`serve_with`]; all of them
//! sit behind `crate::http_auth` (readiness and metrics stay open).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::broker::Broker;

pub fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/v1/status/ready", get(ready))
        .route("/v1/cluster", get(cluster))
        .route("/v1/cluster/brokers", get(cluster_brokers))
        .route("/v1/cluster/metadata", get(cluster_metadata))
        .route("/v1/cluster/decommission/{node}", post(decommission))
        .route("/metrics", get(metrics))
        .route("/v1/topics/{name}/storage", get(topic_storage))
        .merge(crate::admin_security::routes())
        .layer(axum::middleware::from_fn(browser_guard))
        .with_state(broker)
}

/// The token the web console sends in `X-CSRF-Token` with every mutating request; one per
/// broker process, embedded in the console page (a cross-site page cannot read it).
pub fn csrf_token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| uuid::Uuid::new_v4().simple().to_string())
}

static CONSOLE_HOSTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Host names (besides IP addresses and `localhost`) under which browsers may reach the
/// admin listener and send mutating requests: the advertised host and `--console-host`.
pub fn set_console_hosts(hosts: Vec<String>) {
    let _ = CONSOLE_HOSTS.set(hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect());
}

/// Why a mutating request from a browser is refused, if it is: unless its `Host` is one of
/// the console's own names, its `Origin` is that same host, and it carries the CSRF token.
/// Requests with none of the headers browsers always add (`Origin`, `Sec-Fetch-Site`,
/// `Cookie`, `Referer`) come from programs such as the CLI and pass, as without the console.
pub fn browser_refusal(
    method: &axum::http::Method,
    headers: &axum::http::HeaderMap,
) -> Option<String> {
    use axum::http::Method;
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let browser = ["origin", "sec-fetch-site", "cookie", "referer"]
        .iter()
        .any(|n| headers.contains_key(*n));
    if !browser {
        return None;
    }
    let Some(host) = h("host").map(str::to_ascii_lowercase) else {
        return Some("a browser request without a Host header".into());
    };
    let name = match host.rsplit_once(':') {
        Some((n, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => host.as_str(),
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let own = name == "localhost"
        || name.parse::<std::net::IpAddr>().is_ok()
        || CONSOLE_HOSTS
            .get()
            .is_some_and(|hs| hs.iter().any(|h| h == name));
    if !own {
        return Some(format!(
            "Host '{host}' is not one of the console's names (add it with --console-host)"
        ));
    }
    match h("origin").map(str::to_ascii_lowercase) {
        Some(o) if o == format!("http://{host}") || o == format!("https://{host}") => {}
        Some(o) => return Some(format!("cross-site request from Origin '{o}'")),
        None => return Some("a browser request without an Origin header".into()),
    }
    if h("x-csrf-token") != Some(csrf_token()) {
        return Some("missing or wrong X-CSRF-Token".into());
    }
    None
}

/// Middleware refusing what [`browser_refusal`] refuses with 403.
pub async fn browser_guard(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match browser_refusal(req.method(), req.headers()) {
        None => next.run(req).await,
        Some(why) => (
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({"error": format!("refused: {why}")})),
        )
            .into_response(),
    }
}

/// Where each partition's data lives: local disk and the remote tier.
async fn topic_storage(
    State(b): State<Arc<Broker>>,
    Path(name): Path<String>,
) -> impl IntoResponse {
    let Some(topic) = b.topics.get(&name) else {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": format!("topic '{name}' does not exist")})),
        );
    };
    let mut parts = Vec::with_capacity(topic.partitions.len());
    for (i, p) in topic.partitions.iter().enumerate() {
        let marks = *p.marks.borrow();
        let local = p
            .ask(|reply| crate::partition::Cmd::LocalSize { reply })
            .await
            .unwrap_or_default();
        let remote = b.remote.as_ref().and_then(|t| {
            t.extent(&crate::remote::RemotePartition {
                topic: name.clone(),
                topic_id: topic.id,
                partition: i as i32,
            })
        });
        parts.push(serde_json::json!({
            "partition": i,
            "log_start_offset": marks.log_start,
            "local_start_offset": marks.local_start,
            "high_watermark": marks.high,
            "local_bytes": local.0,
            "local_segments": local.1,
            "remote_start_offset": remote.filter(|e| !e.is_empty()).map(|e| e.start),
            "remote_end_offset": remote.filter(|e| !e.is_empty()).map(|e| e.end),
            "remote_bytes": remote.map_or(0, |e| e.bytes),
            "remote_segments": remote.map_or(0, |e| e.segments),
        }));
    }
    (
        StatusCode::OK,
        Json(serde_json::json!({
            "topic": name,
            "topic_id": topic.id,
            "remote_storage": topic.resolved.log.remote_storage,
            "partitions": parts,
        })),
    )
}

async fn ready(State(b): State<Arc<Broker>>) -> impl IntoResponse {
    let failed = b.metrics.storage_failed_partitions.get();
    if failed > 0 {
        // Storage errors stop replicas until a restart: an orchestrator should look.
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "storage_failed", "failed_partitions": failed})),
        )
    } else if b.is_ready() {
        (StatusCode::OK, Json(serde_json::json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "starting"})),
        )
    }
}

async fn cluster(State(b): State<Arc<Broker>>) -> impl IntoResponse {
    Json(serde_json::json!({
        "cluster_id": b.topics.cluster_id,
        "node_id": b.node_id(),
        "kafka_advertised": format!("{}:{}", b.advertised.0, b.advertised.1),
        "shards": b.shards.len(),
        "io_backend": b.shards.io_backend,
        "topics": b.topics.all().len(),
    }))
}

/// Every broker the cluster knows and its state: `active`, `draining` (being decommissioned,
/// replicas still moving off it) or `decommissioned` (holds none; it can be shut down), and its
/// place in the controller group (`voter`, `learner`, or none once decommissioned); and every
/// partition without a leader or with an ISR short of its replicas, as this broker sees them.
async fn cluster_brokers(State(b): State<Arc<Broker>>) -> impl IntoResponse {
    let Some(c) = &b.cluster else {
        return Json(serde_json::json!({"brokers": [{
            "id": b.node_id(),
            "host": b.advertised.0,
            "port": b.advertised.1,
            "alive": true,
            "state": "active",
        }]}));
    };
    let (voters, group) = (c.controller_voters(), c.controller_brokers());
    let brokers: Vec<_> = c
        .members
        .all()
        .into_iter()
        .map(|m| {
            let state = if !c.is_draining(m.node_id) {
                "active"
            } else if crate::cluster::reassign::holds_replicas(&b.topics, m.node_id) {
                "draining"
            } else {
                "decommissioned"
            };
            serde_json::json!({
                "id": m.node_id,
                "host": m.kafka_host,
                "port": m.kafka_port,
                "alive": c.members.is_alive(m.node_id),
                "state": state,
                "controller_role": if voters.contains(&m.node_id) {
                    Some("voter")
                } else if group.contains(&m.node_id) {
                    Some("learner")
                } else {
                    None
                },
                "supported_features": m.features,
                "rpc_version": m.rpc_version,
                "release": m.release,
            })
        })
        .collect();
    let partitions = b.not_fully_replicated();
    Json(serde_json::json!({
        "controller": c.controller_leader(),
        "finalized_features": c.finalized_features(),
        "brokers": brokers,
        "not_fully_replicated": partitions,
    }))
}

/// A backup of the cluster metadata (topics, assignments, configs, decommissions, features) as
/// this broker's controller has applied it; `--restore-metadata` reads it back.
async fn cluster_metadata(State(b): State<Arc<Broker>>) -> axum::response::Response {
    let Some(c) = &b.cluster else {
        let body = serde_json::json!({"error": "a single broker has no cluster metadata; back up its data directory"});
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    };
    match c.backup().await {
        Some(backup) => Json(backup).into_response(),
        None => {
            let body = serde_json::json!({"error": "the controller is not running on this broker"});
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// Starts decommissioning a broker through the controller: it gets no new replicas and the
/// controller leader moves every replica it holds to the other brokers.
async fn decommission(State(b): State<Arc<Broker>>, Path(node): Path<i32>) -> impl IntoResponse {
    let res =
        match crate::cluster::reassign::plan_decommission(&b.topics, b.cluster.as_deref(), node) {
            Ok(cmd) => match &b.cluster {
                Some(c) => c.propose(cmd).await.map_err(|e| e.to_string()),
                None => Err("not a cluster".into()),
            },
            Err(e) => Err(e.to_string()),
        };
    match res {
        Ok(()) => (
            StatusCode::OK,
            Json(serde_json::json!({"node": node, "state": "draining"})),
        ),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": e })),
        ),
    }
}

async fn metrics(State(b): State<Arc<Broker>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        b.metrics.encode(),
    )
}

/// Serves the admin API on an already-bound listener, without authentication, until the task
/// is dropped.
pub async fn serve(listener: tokio::net::TcpListener, broker: Arc<Broker>) -> std::io::Result<()> {
    let auth = crate::http_auth::HttpAuth::new(broker.clone(), Default::default())
        .map_err(std::io::Error::other)?;
    serve_with(listener, broker, Router::new(), auth, Default::default()).await
}

/// [`serve`] with more routes merged in, behind `auth` (every route but readiness and
/// metrics needs credentials when it requires them, and a superuser with authorization on),
/// within `limits`.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    broker: Arc<Broker>,
    extra: Router,
    auth: Arc<crate::http_auth::HttpAuth>,
    limits: crate::http::HttpLimits,
) -> std::io::Result<()> {
    let limiter = crate::http::limiter("admin", &limits, &broker.metrics);
    let routes = auth.wrap(crate::http_auth::Api::Admin, router(broker).merge(extra));
    crate::http::serve(listener, routes, limits, limiter).await
}
