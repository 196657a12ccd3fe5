//! The committer's internal route on the Iceberg catalog listener, and its client: how a
//! partition leader's translator hands a round to the committer broker.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use engine::security::acl::{Operation, ResourceType};

use super::wire::{AnswerBody, ErrorBody, RoundBody, ROUNDS_PATH};
use super::{resolve, submit, Answer, CommitterError, Target};
use crate::translator::Shared;

/// Largest round body: data files' metadata (paths, column statistics), never data.
const MAX_BODY_BYTES: usize = 16 << 20;
/// A round's answer waits for the commit it is in (a catalog round trip or a few).
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read back (an offsets map).
const MAX_RESPONSE: usize = 1 << 20;

pub(crate) fn router(sh: Arc<Shared>) -> Router {
    Router::new()
        .route(ROUNDS_PATH, post(rounds))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(sh)
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(ErrorBody { error: message })).into_response()
}

async fn rounds(
    State(sh): State<Arc<Shared>>,
    caller: engine::http_auth::Caller,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // Brokers only (their signed requests; Kafka's inter-broker CLUSTER_ACTION).
    let (op, rt) = (Operation::ClusterAction, ResourceType::Cluster);
    if !caller.allowed(op, rt, crate::catalog::authz::CLUSTER) {
        let why = caller.denied(op, rt, crate::catalog::authz::CLUSTER);
        return error(StatusCode::FORBIDDEN, why);
    }
    let bytes = match body {
        Ok(b) => b,
        Err(e) => return error(e.status(), e.body_text()),
    };
    let round: RoundBody = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("malformed round: {e}")),
    };
    let ident = match round.ident() {
        Ok(i) => i,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let Some(topic) = sh
        .broker
        .topics
        .get_internal(&round.topic)
        .filter(|t| t.id == round.topic_id)
    else {
        let e = CommitterError::UnknownTopic(round.topic.clone());
        return error(StatusCode::NOT_FOUND, e.to_string());
    };
    // Before reading the files: a broker that does not commit the topic says so at once.
    if let t @ (Target::Remote { .. } | Target::Unknown(_)) = resolve(&sh, &topic) {
        let answer = Answer::NotCommitter {
            leader: t.node(sh.broker.node_id()),
        };
        return Json(AnswerBody::of(&answer)).into_response();
    }
    let table = match (sh.committer)
        .table_for(&sh, &ident, round.schema_id, round.partition_spec_id)
        .await
    {
        Ok(t) => t,
        Err(e) => return failure(e),
    };
    let handover = match round.into_handover(&table) {
        Ok(h) => h,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("round refused: {e}")),
    };
    match submit(&sh, handover).await {
        Ok(a) => Json(AnswerBody::of(&a)).into_response(),
        Err(e) => failure(e),
    }
}

fn failure(e: CommitterError) -> Response {
    let status = match &e {
        CommitterError::BadRound(_) => StatusCode::BAD_REQUEST,
        CommitterError::UnknownTopic(_) | CommitterError::NoTable { .. } => StatusCode::NOT_FOUND,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, e.to_string())
}

/// Why a round could not be handed over.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The committer refused the round (4xx): sending it again does not help.
    #[error("{0}")]
    Refused(String),
    /// No answer, or a 5xx: another try (perhaps to another committer) may.
    #[error("{0}")]
    Transport(String),
}

/// Sends `round` to the committer whose catalog listener is at `base` (`http://host:port`,
/// or `https://` under `--http-tls`), signed as this broker's own request.
pub(crate) async fn send(
    broker: &engine::Broker,
    base: &str,
    round: &RoundBody,
) -> Result<Answer, SendError> {
    tokio::time::timeout(TIMEOUT, exchange(broker, base, round))
        .await
        .map_err(|_| SendError::Transport(format!("no answer within {TIMEOUT:?}")))?
}

async fn exchange(
    broker: &engine::Broker,
    base: &str,
    round: &RoundBody,
) -> Result<Answer, SendError> {
    let (scheme, rest) = match base.strip_prefix("https://") {
        Some(rest) => ("https", rest),
        None => ("http", base.strip_prefix("http://").unwrap_or("")),
    };
    let authority = Some(rest.trim_end_matches('/'))
        .filter(|s| !s.is_empty() && !s.contains('/'))
        .ok_or_else(|| SendError::Refused(format!("bad committer URL {base}")))?;
    let body = serde_json::to_vec(round).map_err(|e| SendError::Refused(e.to_string()))?;
    let transport = |e: reqwest::Error| SendError::Transport(e.to_string());
    let mut req = engine::http::peer_client()
        .post(format!("{scheme}://{authority}{ROUNDS_PATH}"))
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    if let Some((name, value)) =
        engine::http_auth::sign_request(broker, "POST", authority, ROUNDS_PATH, &body)
    {
        req = req.header(name, value);
    }
    let mut resp = req.body(body).send().await.map_err(transport)?;
    let status = resp.status();
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if bytes.len() + chunk.len() > MAX_RESPONSE {
            return Err(SendError::Transport("answer too large".into()));
        }
        bytes.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        let message = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        let message = format!("{status}: {message}");
        // 404: the topic or table is not known there yet (metadata still spreading).
        return Err(
            if status.is_client_error() && status != StatusCode::NOT_FOUND {
                SendError::Refused(message)
            } else {
                SendError::Transport(message)
            },
        );
    }
    serde_json::from_slice::<AnswerBody>(&bytes)
        .map_err(|e| SendError::Transport(format!("malformed answer: {e}")))?
        .into_answer()
        .map_err(SendError::Transport)
}
