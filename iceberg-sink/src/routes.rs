//! Admin routes of Iceberg topics, merged into the broker's admin API.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::metrics::Metrics;
use crate::translator::Translator;

impl Translator {
    pub fn routes(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/v1/iceberg/topics/{topic}", get(topic_route))
            .with_state(self.clone())
    }
}

async fn topic_route(State(t): State<Arc<Translator>>, Path(topic): Path<String>) -> Response {
    let sh = &t.shared;
    let Some(tp) = sh.broker.topics.get(&topic) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error_code": 404, "message": format!("topic '{topic}' does not exist")})),
        )
            .into_response();
    };
    let st = sh.status.lock().get(&topic).cloned();
    let Some(st) = st else {
        let mode = tp
            .config
            .get("iceberg.mode", &sh.broker.config.defaults)
            .0
            .to_string();
        return Json(json!({"topic": topic, "mode": mode, "catalog": sh.catalog_name}))
            .into_response();
    };
    let label = Metrics::label(&topic);
    let m = &sh.metrics;
    let partitions: Vec<_> = st
        .partitions
        .iter()
        .map(|&(p, next, high)| {
            json!({"partition": p, "next_offset": next, "high_watermark": high, "lag": (high - next).max(0)})
        })
        .collect();
    let lag: i64 = st.partitions.iter().map(|&(_, n, h)| (h - n).max(0)).sum();
    Json(json!({
        "topic": topic,
        "mode": st.mode,
        "catalog": sh.catalog_name,
        "table": st.table,
        "table_exists": st.table_exists,
        "location": st.location,
        "snapshot": st.snapshot,
        "partitions": partitions,
        "lag_records": lag,
        "lag_ms": st.lag_ms,
        "target_lag_ms": st.target_lag_ms,
        "records_written": m.records.get_or_create(&label).get(),
        "files_written": m.files.get_or_create(&label).get(),
        "bytes_written": m.bytes.get_or_create(&label).get(),
        "commits": m.commits.get_or_create(&label).get(),
        "commit_errors": m.commit_errors.get_or_create(&label).get(),
        "dlq_records": m.dlq_records.get_or_create(&label).get(),
        "last_error": st.last_error,
    }))
    .into_response()
}
