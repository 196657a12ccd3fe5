//! Admin routes of Iceberg topics, merged into the broker's admin API.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use iceberg::{ErrorKind, TableIdent};
use serde::Deserialize;
use serde_json::json;

use crate::browse;
use crate::committer;
use crate::metrics::Metrics;
use crate::settings::{Mode, TopicSettings};
use crate::translator::{Shared, Translator};

/// Most data files and dead letters one request answers.
const MAX_FILES: usize = 500;
const MAX_DEAD_LETTERS: usize = 100;

impl Translator {
    pub fn routes(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/v1/iceberg/topics/{topic}", get(topic_route))
            .route("/v1/iceberg/topics/{topic}/files", get(files_route))
            .route(
                "/v1/iceberg/topics/{topic}/dead-letters",
                get(dead_letters_route),
            )
            .with_state(self.clone())
    }

    /// The committer's internal route, served on the Iceberg catalog listener (where other
    /// brokers' translators hand it rounds).
    pub fn committer_routes(&self) -> Router {
        committer::http::router(self.shared.clone())
    }
}

/// Who commits the topic's rounds, and what this broker's committer did for it.
fn committer_status(sh: &Shared, tp: &engine::topics::Topic) -> serde_json::Value {
    let me = sh.broker.node_id();
    let target = committer::resolve(sh, tp);
    let label = Metrics::label(&tp.name);
    json!({
        "node_id": target.node(me),
        "this_broker": target == committer::Target::Local,
        "commits": sh.metrics.commits.get_or_create(&label).get(),
        "rounds": sh.metrics.rounds.get_or_create(&label).get(),
        "rounds_superseded": sh.metrics.rounds_superseded.get_or_create(&label).get(),
    })
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

fn not_found(message: String) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error_code": 404, "message": message})),
    )
        .into_response()
}

/// The table (or, with `dlq`, the dead-letter table) of an Iceberg topic, as the catalog
/// has it now; `Ok(None)` while it does not exist yet.
async fn load(
    sh: &Shared,
    topic: &str,
    dlq: bool,
) -> Result<(TableIdent, Option<iceberg::table::Table>), Response> {
    let Some(tp) = sh.broker.topics.get(topic) else {
        return Err(not_found(format!("topic '{topic}' does not exist")));
    };
    let s = TopicSettings::of(&tp, &sh.broker.defaults(), &sh.config.default_namespace);
    if s.mode == Mode::Disabled {
        return Err(not_found(format!("topic '{topic}' has no iceberg.mode")));
    }
    let ident = if dlq {
        s.dlq_table(topic)
    } else {
        s.table(topic)
    };
    match sh.catalog.load_table(&ident).await {
        Ok(t) => Ok((ident, Some(t))),
        Err(e) if e.kind() == ErrorKind::TableNotFound => Ok((ident, None)),
        Err(e) => Err(unavailable(&ident, e.to_string())),
    }
}

fn unavailable(ident: &TableIdent, e: String) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"error_code": 503, "message": format!("table {ident}: {e}")})),
    )
        .into_response()
}

/// The answer both browse routes give: the table's identity and `limit`, then the fields `read`
/// found in it, or an empty `empty` list while the table does not exist yet.
async fn browse_table<F, Fut>(
    t: &Translator,
    topic: String,
    dlq: bool,
    limit: usize,
    empty: &str,
    read: F,
) -> Response
where
    F: FnOnce(iceberg::table::Table) -> Fut,
    Fut: std::future::Future<Output = Result<serde_json::Value, String>>,
{
    let (ident, table) = match load(&t.shared, &topic, dlq).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut body =
        json!({"topic": topic, "table": ident.to_string(), "table_exists": table.is_some()});
    let Some(table) = table else {
        body[empty] = json!([]);
        return Json(body).into_response();
    };
    match read(table).await {
        Ok(serde_json::Value::Object(fields)) => {
            body["limit"] = limit.into();
            for (k, v) in fields {
                body[k] = v;
            }
            Json(body).into_response()
        }
        Ok(other) => Json(other).into_response(),
        Err(e) => unavailable(&ident, e),
    }
}

/// The newest data files of the topic's table's current snapshot (`?limit=`, default 50).
async fn files_route(
    State(t): State<Arc<Translator>>,
    Path(topic): Path<String>,
    Query(q): Query<Limit>,
) -> Response {
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_FILES);
    browse_table(&t, topic, false, limit, "files", |table| async move {
        let f = browse::newest_files(&table, limit)
            .await
            .map_err(|e| e.to_string())?;
        Ok(json!({
            "snapshot_id": f.snapshot_id,
            "total_files": f.total_files,
            "total_records": f.total_records,
            "manifests": f.manifests,
            "manifests_read": f.manifests_read,
            "files": f.files,
        }))
    })
    .await
}

/// The newest rows of the topic's dead-letter table (`?limit=`, default 20).
async fn dead_letters_route(
    State(t): State<Arc<Translator>>,
    Path(topic): Path<String>,
    Query(q): Query<Limit>,
) -> Response {
    let limit = q.limit.unwrap_or(20).clamp(1, MAX_DEAD_LETTERS);
    browse_table(&t, topic, true, limit, "rows", |table| async move {
        let d = browse::newest_dead_letters(&table, limit)
            .await
            .map_err(|e| e.to_string())?;
        Ok(json!({
            "snapshot_id": d.snapshot_id,
            "total_records": d.total_records,
            "rows": d.rows,
            "omitted": d.omitted,
        }))
    })
    .await
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
            .get("iceberg.mode", &sh.broker.defaults())
            .0
            .to_string();
        let committer = (mode != Mode::Disabled.as_str()).then(|| committer_status(sh, &tp));
        return Json(json!({"topic": topic, "mode": mode, "catalog": sh.catalog_name, "committer": committer}))
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
        "committer": committer_status(sh, &tp),
        "dlq_records": m.dlq_records.get_or_create(&label).get(),
        "last_error": st.last_error,
    }))
    .into_response()
}
