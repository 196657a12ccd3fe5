//! Unmount (hibernate) a topic into the object store and mount it back, and the admin API
//! routes for both.
//!
//! Unmount: hide the topic from clients (UNKNOWN_TOPIC_OR_PARTITION from then on, so nothing
//! more is written), seal every partition, wait until the tier holds every offset, write the
//! topic manifest (configs, offsets, committed group offsets), and only then forget the topic
//! locally. A failure before the manifest is written serves the topic again; a crash leaves it
//! on the broker (its record was never removed), so nothing is lost either way.
//!
//! Mount: read the manifest, recreate the topic with the same id and offsets (each partition's
//! local log starts empty at its old end; older offsets are read from the tier, nothing is
//! downloaded), restore the group offsets, then delete the manifest so the topic cannot be
//! mounted twice. A topic id already in use refuses the mount.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use engine::broker::{Broker, BrokerError};
use engine::config::TopicConfig;
use engine::remote::RemoteTier;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::json;

use crate::error::TieringError;
use crate::topic_manifest::{PartitionOffsets, TopicManifest};
use crate::Tiering;

/// How long an unmount waits for its uploads before giving up and serving the topic again.
const UPLOAD_DEADLINE: Duration = Duration::from_secs(30 * 60);
/// Finished unmounts stay listed this long (so whoever started one, from the CLI or another
/// browser, sees how it ended), and at most this many of them: the list stays bounded.
const FINISHED_KEPT_MS: i64 = 60 * 60 * 1000;
const FINISHED_KEPT: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Tiering(#[from] TieringError),
    #[error("an unmount of '{0}' is already running")]
    Busy(String),
    #[error("uploads of '{0}' did not finish within {1:?}; the topic is served again")]
    Timeout(String, Duration),
    #[error("topic '{0}' cannot be mounted: {1}")]
    Invalid(String, String),
}

impl MountError {
    fn status(&self) -> StatusCode {
        match self {
            MountError::Broker(BrokerError::UnknownTopic(_))
            | MountError::Tiering(TieringError::TopicManifestMissing { .. }) => {
                StatusCode::NOT_FOUND
            }
            MountError::Broker(BrokerError::TopicExists(_)) | MountError::Busy(_) => {
                StatusCode::CONFLICT
            }
            MountError::Broker(BrokerError::InvalidTopicName(_))
            | MountError::Broker(BrokerError::InternalTopic(_))
            | MountError::Broker(BrokerError::InvalidConfig(_))
            | MountError::Broker(BrokerError::InvalidReplicationFactor(..))
            | MountError::Tiering(TieringError::Corrupt { .. })
            | MountError::Invalid(..) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for MountError {
    fn into_response(self) -> Response {
        (self.status(), Json(json!({ "error": self.to_string() }))).into_response()
    }
}

/// Progress of one unmount, as `GET /v1/topics/unmount/status/{topic}` shows it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct UnmountStatus {
    pub topic: String,
    /// `sealing`, `uploading`, `translating` (an Iceberg topic's table catching up), `done`
    /// or `failed`.
    pub state: &'static str,
    /// Offsets in the object store out of all the topic's offsets.
    pub uploaded_records: i64,
    pub total_records: i64,
    pub remote_bytes: u64,
    pub partitions: Vec<PartitionOffsets>,
    pub error: Option<String>,
    /// When it was started and, once `done` or `failed`, when it ended (ms since the epoch).
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    /// In a cluster: each partition's leader and step.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub progress: Vec<PartitionProgress>,
}

/// One partition of a cluster unmount, as the status shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionProgress {
    pub partition: i32,
    pub leader: i32,
    /// `sealing`, `uploading` or `uploaded`.
    pub state: &'static str,
    pub log_start_offset: Option<i64>,
    pub log_end_offset: Option<i64>,
    /// The end of what the object store holds.
    pub remote_end_offset: Option<i64>,
}

impl UnmountStatus {
    fn finished(&self) -> bool {
        matches!(self.state, "done" | "failed")
    }
}

pub struct Mounts {
    pub(crate) broker: Arc<Broker>,
    pub(crate) tiering: Arc<Tiering>,
    jobs: Mutex<HashMap<String, UnmountStatus>>,
    /// In a cluster: stored extents the status read lately, and when (`cluster_mount`).
    pub(crate) extents: Mutex<HashMap<(uuid::Uuid, i32), StoredExtent>>,
}

/// When a partition's stored extent was read, and what it was.
pub(crate) type StoredExtent = (std::time::Instant, Option<engine::remote::RemoteExtent>);

impl Mounts {
    pub fn new(broker: Arc<Broker>, tiering: Arc<Tiering>) -> Arc<Self> {
        Arc::new(Mounts {
            broker,
            tiering,
            jobs: Mutex::new(HashMap::new()),
            extents: Mutex::new(HashMap::new()),
        })
    }

    fn set(&self, topic: &str, f: impl FnOnce(&mut UnmountStatus)) {
        if let Some(s) = self.jobs.lock().get_mut(topic) {
            f(s);
        }
    }

    /// Starts an unmount in the background; its progress is in [`Mounts::status`].
    pub fn start_unmount(self: &Arc<Self>, topic: &str) -> Result<(), MountError> {
        if self.broker.topics.get(topic).is_none() {
            return Err(BrokerError::UnknownTopic(topic.to_string()).into());
        }
        {
            let mut jobs = self.jobs.lock();
            if jobs.get(topic).is_some_and(|s| !s.finished()) {
                return Err(MountError::Busy(topic.to_string()));
            }
            let now = engine::time::now_ms();
            prune(&mut jobs, now);
            jobs.insert(
                topic.to_string(),
                UnmountStatus {
                    topic: topic.to_string(),
                    state: "sealing",
                    started_ms: now,
                    ..Default::default()
                },
            );
        }
        let me = self.clone();
        let topic = topic.to_string();
        tokio::spawn(async move {
            let res = me.unmount(&topic).await;
            me.set(&topic, |s| {
                s.finished_ms = Some(engine::time::now_ms());
                match res {
                    Ok(()) => s.state = "done",
                    Err(e) => {
                        tracing::error!(topic = %topic, error = %e, "unmount failed");
                        s.state = "failed";
                        s.error = Some(e.to_string());
                    }
                }
            });
        });
        Ok(())
    }

    pub fn status(&self, topic: &str) -> Option<UnmountStatus> {
        self.jobs.lock().get(topic).cloned()
    }

    /// Every unmount running on this broker and those that ended within the last hour,
    /// whoever started them, newest first.
    pub fn statuses(&self) -> Vec<UnmountStatus> {
        let mut jobs = self.jobs.lock();
        prune(&mut jobs, engine::time::now_ms());
        let mut all: Vec<UnmountStatus> = jobs.values().cloned().collect();
        all.sort_by(|a, b| {
            b.started_ms
                .cmp(&a.started_ms)
                .then_with(|| a.topic.cmp(&b.topic))
        });
        all
    }

    async fn unmount(&self, topic: &str) -> Result<(), MountError> {
        let hidden = self.broker.hide_and_seal(topic).await?;
        let res = self.upload_all(&hidden).await;
        let manifest = match res {
            Ok(m) => m,
            Err(e) => {
                self.broker.unhide(hidden);
                return Err(e);
            }
        };
        if let Err(e) = self.tiering.put_topic_manifest(manifest).await {
            self.broker.unhide(hidden);
            return Err(e.into());
        }
        self.broker.forget_unmounted(hidden).await?;
        Ok(())
    }

    /// Waits until the tier holds every offset of the hidden topic; returns its manifest.
    async fn upload_all(
        &self,
        hidden: &engine::unmount::HiddenTopic,
    ) -> Result<TopicManifest, MountError> {
        let name = &hidden.record.name;
        let partitions: Vec<PartitionOffsets> = hidden
            .offsets
            .iter()
            .enumerate()
            .map(|(i, &(start, end))| PartitionOffsets {
                partition: i as i32,
                log_start_offset: start,
                log_end_offset: end,
            })
            .collect();
        let total: i64 = partitions
            .iter()
            .map(|p| p.log_end_offset - p.log_start_offset)
            .sum();
        self.set(name, |s| {
            s.state = "uploading";
            s.total_records = total;
            s.partitions = partitions.clone();
        });
        let deadline = Instant::now() + UPLOAD_DEADLINE;
        loop {
            let mut uploaded = 0;
            let mut bytes = 0;
            let mut complete = true;
            for p in &partitions {
                let e = self
                    .tiering
                    .extent(&hidden.remote_partition(p.partition))
                    .unwrap_or_default();
                let covered = e.end.min(p.log_end_offset).max(p.log_start_offset);
                uploaded += covered - p.log_start_offset;
                bytes += e.bytes;
                complete &= e.end >= p.log_end_offset || p.log_end_offset == p.log_start_offset;
            }
            self.set(name, |s| {
                s.uploaded_records = uploaded;
                s.remote_bytes = bytes;
            });
            if complete {
                // An Iceberg topic's translation finishes before the topic goes.
                match self
                    .translation_caught_up(name, hidden.record.id, &partitions)
                    .await
                {
                    Ok(()) => break,
                    Err(why) => {
                        tracing::debug!(topic = %name, why, "unmount waits for the Iceberg translation");
                        self.set(name, |s| s.state = "translating");
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(MountError::Timeout(name.clone(), UPLOAD_DEADLINE));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut m = TopicManifest::new(
            name,
            hidden.record.id,
            hidden.record.partitions,
            engine::time::now_ms(),
        );
        m.partitions = partitions;
        m.configs = hidden.record.config.overrides.clone();
        m.group_offsets = self.broker.committed_offsets(name);
        Ok(m)
    }

    /// `Ok` once whatever must finish with the topic before it goes (the Iceberg translation)
    /// has reached each partition's end.
    pub(crate) async fn translation_caught_up(
        &self,
        name: &str,
        id: uuid::Uuid,
        partitions: &[PartitionOffsets],
    ) -> Result<(), String> {
        let Some(gate) = self.broker.unmount_gate.get() else {
            return Ok(());
        };
        let ends = partitions
            .iter()
            .map(|p| (p.partition, (p.log_start_offset, p.log_end_offset)))
            .collect();
        gate.caught_up(name, id, &ends).await
    }

    /// Mounts an unmounted topic, under `new_name` if given.
    pub async fn mount(
        &self,
        topic: &str,
        new_name: Option<&str>,
    ) -> Result<serde_json::Value, MountError> {
        let name = new_name.unwrap_or(topic);
        // A new name is checked before the object store is read, so a typo is answered at
        // once and with Kafka's own rules, whatever the manifest holds.
        if new_name.is_some() {
            engine::config::validate_topic_name(name).map_err(BrokerError::InvalidTopicName)?;
            if engine::topics::is_internal(name) {
                return Err(BrokerError::InternalTopic(name.to_string()).into());
            }
        }
        let m = self.tiering.get_topic_manifest(topic).await?;
        let (offsets, config) = manifest_plan(topic, &m)?;
        self.broker
            .mount_topic(name, m.topic_id, config, &offsets)
            .await?;
        let restored = m.group_offsets;
        let failed = self.broker.restore_offsets(name, &restored).await;
        if failed > 0 {
            tracing::warn!(
                topic = name,
                failed,
                "some committed group offsets were not restored"
            );
        }
        // The topic is back: its manifest must not mount it a second time.
        if let Err(e) = self.tiering.delete_topic_manifest(topic).await {
            tracing::warn!(topic, error = %e, "mounted, but the topic manifest could not be removed; a second mount will be refused while the topic id is in use");
        }
        Ok(json!({
            "topic": name,
            "mounted_from": topic,
            "topic_id": m.topic_id,
            "partitions": m.partitions,
            "group_offsets": restored.len() - failed,
        }))
    }

    pub async fn list_mountable(&self) -> Result<serde_json::Value, MountError> {
        let mut out = Vec::new();
        for name in self.tiering.list_topic_manifests().await? {
            match self.tiering.get_topic_manifest(&name).await {
                Ok(m) => out.push(json!({
                    "topic": m.topic,
                    "topic_id": m.topic_id,
                    "partitions": m.partition_count,
                    "records": m.partitions.iter().map(|p| p.log_end_offset - p.log_start_offset).sum::<i64>(),
                    "unmounted_at_ms": m.created_ms,
                    "configs": m.configs,
                    "group_offsets": m.group_offsets.len(),
                })),
                Err(e) => out.push(json!({ "topic": name, "error": e.to_string() })),
            }
        }
        Ok(serde_json::Value::Array(out))
    }

    /// The admin API routes: `POST /v1/topics/unmount`, `GET /v1/topics/unmount/status` (all
    /// unmounts), `GET /v1/topics/unmount/status/{topic}`, `POST /v1/topics/mount`,
    /// `GET /v1/topics/mountable`.
    pub fn routes(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/v1/topics/unmount", post(unmount_route))
            .route("/v1/topics/unmount/status", get(statuses_route))
            .route("/v1/topics/unmount/status/{topic}", get(status_route))
            .route("/v1/topics/mount", post(mount_route))
            .route("/v1/topics/mount/status/{topic}", get(mount_status_route))
            .route("/v1/topics/mountable", get(mountable_route))
            .with_state(self.clone())
    }
}

/// Each partition's `(log start, log end)` and the topic config a manifest mounts with
/// (remote storage on), checked whatever the object store handed back.
pub(crate) fn manifest_plan(
    topic: &str,
    m: &TopicManifest,
) -> Result<(Vec<(i64, i64)>, TopicConfig), MountError> {
    let count = usize::try_from(m.partition_count).unwrap_or(0);
    let mut offsets = vec![(0i64, 0i64); count];
    let mut seen = vec![false; count];
    for p in &m.partitions {
        // Reading the manifest refuses partitions out of range already; checked again here
        // so that indexing cannot panic whatever the object store handed back.
        let Some(i) = usize::try_from(p.partition).ok().filter(|&i| i < count) else {
            return Err(MountError::Invalid(
                topic.to_string(),
                format!(
                    "its manifest lists partition {} of a topic with {count} partitions",
                    p.partition
                ),
            ));
        };
        offsets[i] = (p.log_start_offset, p.log_end_offset);
        seen[i] = true;
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        return Err(MountError::Invalid(
            topic.to_string(),
            format!("its manifest has no offsets for partition {missing}"),
        ));
    }
    let config = TopicConfig::from_pairs(
        m.configs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain([("remote.storage.enable", "true")]),
    )
    .map_err(|e| MountError::Invalid(topic.to_string(), e.to_string()))?;
    Ok((offsets, config))
}

/// Drops finished unmounts that ended more than [`FINISHED_KEPT_MS`] ago, and the oldest
/// finished ones beyond [`FINISHED_KEPT`]; running ones always stay.
fn prune(jobs: &mut HashMap<String, UnmountStatus>, now_ms: i64) {
    jobs.retain(|_, s| {
        !s.finished() || s.finished_ms.is_some_and(|f| now_ms - f < FINISHED_KEPT_MS)
    });
    let mut finished: Vec<(i64, String)> = jobs
        .values()
        .filter(|s| s.finished())
        .map(|s| (s.finished_ms.unwrap_or(0), s.topic.clone()))
        .collect();
    if finished.len() > FINISHED_KEPT {
        finished.sort();
        for (_, topic) in &finished[..finished.len() - FINISHED_KEPT] {
            jobs.remove(topic);
        }
    }
}

#[derive(Deserialize)]
struct UnmountBody {
    topic: String,
}

#[derive(Deserialize)]
struct MountBody {
    topic: String,
    #[serde(default)]
    new_name: Option<String>,
    /// In a cluster: how many replicas each partition gets (absent: as many as when it was
    /// unmounted, capped at the brokers there are; the cluster default for an older manifest).
    #[serde(default)]
    replication_factor: Option<i16>,
}

async fn unmount_route(
    State(m): State<Arc<Mounts>>,
    Json(body): Json<UnmountBody>,
) -> Result<impl IntoResponse, MountError> {
    if m.broker.cluster.is_some() {
        m.start_cluster_unmount(&body.topic).await?;
    } else {
        m.start_unmount(&body.topic)?;
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "topic": body.topic, "state": "sealing" })),
    ))
}

async fn statuses_route(State(m): State<Arc<Mounts>>) -> Response {
    if m.broker.cluster.is_some() {
        return match m.cluster_statuses().await {
            Ok(s) => Json(s).into_response(),
            Err(e) => e.into_response(),
        };
    }
    Json(m.statuses()).into_response()
}

async fn status_route(State(m): State<Arc<Mounts>>, Path(topic): Path<String>) -> Response {
    let status = if m.broker.cluster.is_some() {
        match m.cluster_status(&topic).await {
            Ok(s) => s,
            Err(e) => return e.into_response(),
        }
    } else {
        m.status(&topic)
    };
    match status {
        Some(s) => Json(s).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no unmount of '{topic}' is running on this broker or ended there within the last hour") })),
        )
            .into_response(),
    }
}

async fn mount_route(
    State(m): State<Arc<Mounts>>,
    Json(body): Json<MountBody>,
) -> Result<impl IntoResponse, MountError> {
    let new_name = body.new_name.as_deref();
    if m.broker.cluster.is_some() {
        return m
            .mount_cluster(&body.topic, new_name, body.replication_factor)
            .await
            .map(Json);
    }
    if body.replication_factor.is_some_and(|rf| rf != 1) {
        return Err(
            BrokerError::InvalidReplicationFactor(body.replication_factor.unwrap_or(1), 1).into(),
        );
    }
    m.mount(&body.topic, new_name).await.map(Json)
}

async fn mount_status_route(State(m): State<Arc<Mounts>>, Path(topic): Path<String>) -> Response {
    let status = if m.broker.cluster.is_some() {
        m.cluster_mount_status(&topic)
    } else {
        m.broker
            .topics
            .get(&topic)
            .map(|_| json!({ "topic": topic, "state": "done" }))
    };
    match status {
        Some(s) => Json(s).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("topic '{topic}' is not mounted on this cluster") })),
        )
            .into_response(),
    }
}

async fn mountable_route(State(m): State<Arc<Mounts>>) -> Result<impl IntoResponse, MountError> {
    m.list_mountable().await.map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(topic: &str, state: &'static str, finished_ms: Option<i64>) -> (String, UnmountStatus) {
        (
            topic.to_string(),
            UnmountStatus {
                topic: topic.to_string(),
                state,
                finished_ms,
                ..Default::default()
            },
        )
    }

    #[test]
    fn finished_unmounts_are_kept_an_hour_and_running_ones_always() {
        let now = 10 * FINISHED_KEPT_MS;
        let mut jobs: HashMap<_, _> = [
            job("running", "uploading", None),
            job("recent", "done", Some(now - 1000)),
            job(
                "failed-recently",
                "failed",
                Some(now - FINISHED_KEPT_MS + 1),
            ),
            job("old", "done", Some(now - FINISHED_KEPT_MS)),
        ]
        .into_iter()
        .collect();
        prune(&mut jobs, now);
        let mut kept: Vec<&str> = jobs.keys().map(String::as_str).collect();
        kept.sort();
        assert_eq!(kept, ["failed-recently", "recent", "running"]);
    }

    #[test]
    fn at_most_so_many_finished_unmounts_are_kept_the_newest() {
        let now = 10 * FINISHED_KEPT_MS;
        let mut jobs: HashMap<_, _> = (0..FINISHED_KEPT + 5)
            .map(|i| job(&format!("t{i}"), "done", Some(now - 1000 + i as i64)))
            .chain([job("running", "sealing", None)])
            .collect();
        prune(&mut jobs, now);
        assert_eq!(jobs.len(), FINISHED_KEPT + 1);
        assert!(jobs.contains_key("running"));
        assert!(!jobs.contains_key("t4") && jobs.contains_key("t5"));
    }
}
