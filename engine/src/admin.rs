//! The admin HTTP API: readiness for orchestrators and Prometheus metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::broker::Broker;

pub fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/v1/status/ready", get(ready))
        .route("/v1/cluster", get(cluster))
        .route("/metrics", get(metrics))
        .with_state(broker)
}

async fn ready(State(b): State<Arc<Broker>>) -> impl IntoResponse {
    if b.is_ready() {
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

async fn metrics(State(b): State<Arc<Broker>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        b.metrics.encode(),
    )
}

/// Serves the admin API on an already-bound listener until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, broker: Arc<Broker>) -> std::io::Result<()> {
    axum::serve(listener, router(broker)).await
}
