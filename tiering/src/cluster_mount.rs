//! Unmount and mount in a cluster, driven through the controller.
//!
//! The admin API on any broker starts a job with one controller command; the job's state then
//! lives in the controller log, on the topic's record ([`engine::topic_jobs`]), and a driver on
//! every broker takes the steps that fall to it, each ending in a command:
//!
//! - Unmount: `Unmount` hides the topic on every broker. Each partition's leader seals it
//!   through its Raft group (`UnmountSealed`: every replica ends at the same offset, whatever
//!   raced the hiding). Once all are sealed, the coordinator of each `__consumer_offsets`
//!   partition reports the topic's committed offsets (`UnmountOffsets`). The controller leader
//!   waits until the object store holds every partition to its end, writes the topic manifest
//!   and commits `UnmountDone`: every broker forgets the topic, keeping its remote data.
//! - Mount: `Mount` places the topic anew (any replication factor up to the broker count);
//!   every replica starts empty at the mounted end, reading older offsets from the tier. Each
//!   coordinator restores its groups' offsets (`MountRestored`); then the controller leader
//!   deletes the manifest and commits `MountDone`.
//!
//! Every step is idempotent and found again from the log, so a broker that dies mid-job (the
//! controller leader included) leaves the job to the others: it resumes, never half done.

use std::sync::Arc;
use std::time::Duration;

use engine::broker::BrokerError;
use engine::cluster::Command;
use engine::topic_jobs::{Mounting, Unmounting};
use engine::topics::TopicRecord;
use serde_json::{json, Value};

use crate::mount::{manifest_plan, MountError, Mounts, PartitionProgress, UnmountStatus};
use crate::topic_manifest::{PartitionOffsets, TopicManifest};

/// How often the driver looks for steps to take.
const STEP_EVERY: Duration = Duration::from_millis(250);
/// How long a mount request waits for the mount to complete before answering "mounting".
const MOUNT_WAIT: Duration = Duration::from_secs(30);
/// How old a stored extent the status may show.
const STATUS_EXTENT_AGE: Duration = Duration::from_secs(1);

impl Mounts {
    /// Runs the driver on this broker (cluster only), for as long as the broker runs.
    pub fn spawn_cluster_driver(self: &Arc<Self>) {
        if self.broker.cluster.is_none() {
            return;
        }
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(STEP_EVERY).await;
                let Some(m) = me.upgrade() else { return };
                // Only the records with a job: every topic's record is not copied each step.
                let jobs = m
                    .broker
                    .topics
                    .records_where(|r| r.unmounting.is_some() || r.mounting.is_some());
                for rec in jobs {
                    let res = if let Some(job) = &rec.unmounting {
                        m.step_unmount(&rec, job).await
                    } else if let Some(job) = &rec.mounting {
                        m.step_mount(&rec, job).await
                    } else {
                        Ok(())
                    };
                    if let Err(e) = res {
                        tracing::debug!(topic = %rec.name, error = %e, "unmount or mount step failed; retrying");
                    }
                }
            }
        });
    }

    fn is_controller_leader(&self) -> bool {
        self.broker
            .cluster
            .as_ref()
            .is_some_and(|c| c.controller_leader() == Some(c.node_id()))
    }

    async fn propose(&self, cmd: Command) -> Result<(), MountError> {
        let c = self
            .broker
            .cluster
            .as_ref()
            .ok_or_else(|| BrokerError::Controller("this broker is not in a cluster".into()))?;
        c.propose(cmd).await.map_err(BrokerError::from)?;
        Ok(())
    }

    async fn step_unmount(&self, rec: &TopicRecord, job: &Unmounting) -> Result<(), MountError> {
        let (name, id) = (rec.name.clone(), rec.id);
        for (partition, res) in self.broker.seal_led_partitions(&name, &job.sealed).await {
            match res {
                Ok((start, end)) => {
                    self.propose(Command::UnmountSealed {
                        name: name.clone(),
                        id,
                        partition,
                        start,
                        end,
                    })
                    .await?
                }
                Err(e) => {
                    tracing::debug!(topic = %name, partition, error = %e, "cannot seal yet")
                }
            }
        }
        if !job.all_sealed(rec.partitions) {
            return Ok(());
        }
        let n = self.broker.offsets_partition_count() as i32;
        if !job.offsets_complete(n) {
            let (from, offsets) = self
                .broker
                .offsets_served(&name, |p| !job.offsets_from.contains(&p));
            if !from.is_empty() {
                self.propose(Command::UnmountOffsets {
                    name,
                    id,
                    from,
                    offsets,
                })
                .await?;
            }
            return Ok(());
        }
        if !self.is_controller_leader() {
            return Ok(());
        }
        // The controller leader finishes: once the tier holds everything, the manifest.
        for (&p, &(start, end)) in &job.sealed {
            let stored = self.tiering.stored_extent(id, p).await?;
            if end > start && stored.is_none_or(|e| e.end < end) {
                return Ok(());
            }
        }
        let partitions: Vec<PartitionOffsets> = job
            .sealed
            .iter()
            .map(|(&partition, &(start, end))| PartitionOffsets {
                partition,
                log_start_offset: start,
                log_end_offset: end,
            })
            .collect();
        // An Iceberg topic's translation finishes before the topic goes.
        if let Err(why) = self.translation_caught_up(&name, id, &partitions).await {
            tracing::debug!(topic = %name, why, "unmount waits for the Iceberg translation");
            return Ok(());
        }
        let mut m = TopicManifest::new(&name, id, rec.partitions, engine::time::now_ms());
        m.partitions = partitions;
        m.configs = rec.config.overrides.clone();
        m.replication_factor = Some(rec.replication_factor);
        m.group_offsets = job.group_offsets.clone();
        self.tiering.put_topic_manifest(m).await?;
        self.propose(Command::UnmountDone { name, id }).await?;
        tracing::info!(topic = %rec.name, "unmounted topic from the cluster");
        Ok(())
    }

    async fn step_mount(&self, rec: &TopicRecord, job: &Mounting) -> Result<(), MountError> {
        let (name, id) = (rec.name.clone(), rec.id);
        let n = self.broker.offsets_partition_count() as i32;
        if !(0..n).all(|p| job.restored.contains(&p)) {
            let from = self
                .broker
                .restore_served(&name, &job.group_offsets, &job.restored)
                .await;
            if !from.is_empty() {
                self.propose(Command::MountRestored { name, id, from })
                    .await?;
            }
            return Ok(());
        }
        if !self.is_controller_leader() {
            return Ok(());
        }
        // The topic is back: its manifest must not mount it a second time.
        match self.tiering.delete_topic_manifest(&job.from).await {
            Ok(()) | Err(crate::TieringError::TopicManifestMissing { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.propose(Command::MountDone { name, id }).await?;
        tracing::info!(topic = %rec.name, from = %job.from, "mounted topic in the cluster");
        Ok(())
    }

    /// Starts an unmount through the controller; the driver takes it from there.
    pub(crate) async fn start_cluster_unmount(&self, topic: &str) -> Result<(), MountError> {
        if engine::topics::is_internal(topic) {
            return Err(BrokerError::InternalTopic(topic.to_string()).into());
        }
        let unknown = || BrokerError::UnknownTopic(topic.to_string());
        let rec = self.broker.topics.record(topic).ok_or_else(unknown)?;
        if rec.unmounting.is_some() {
            return Err(MountError::Busy(topic.to_string()));
        }
        self.broker.topics.get(topic).ok_or_else(unknown)?;
        let mut config = rec.config.clone();
        if !config.remote_storage_set() {
            config
                .overrides
                .insert("remote.storage.enable".into(), "true".into());
            config.check_combination().map_err(BrokerError::from)?;
            self.broker.set_topic_config(topic, config).await?;
        }
        self.propose(Command::Unmount {
            name: topic.to_string(),
            id: rec.id,
            started_ms: engine::time::now_ms(),
        })
        .await
    }

    /// The progress of a cluster unmount of `topic` as this broker sees the controller's log:
    /// running (its record carries the job), done (gone, with a manifest in the store), or
    /// `None` (no unmount known).
    pub(crate) async fn cluster_status(
        &self,
        topic: &str,
    ) -> Result<Option<UnmountStatus>, MountError> {
        let Some(rec) = self.broker.topics.record(topic) else {
            return match self.tiering.get_topic_manifest(topic).await {
                Ok(m) => Ok(Some(finished(&m))),
                Err(crate::TieringError::TopicManifestMissing { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            };
        };
        let Some(job) = &rec.unmounting else {
            return Ok(None);
        };
        let topic_handle = self.broker.topics.get_internal(topic);
        let mut s = UnmountStatus {
            topic: topic.to_string(),
            state: if job.all_sealed(rec.partitions) {
                "uploading"
            } else {
                "sealing"
            },
            started_ms: job.started_ms,
            ..Default::default()
        };
        for p in 0..rec.partitions {
            let sealed = job.sealed.get(&p).copied();
            let stored = self.stored_extent_cached(rec.id, p).await?;
            let remote_end = stored.map(|e| e.end);
            s.remote_bytes += stored.map_or(0, |e| e.bytes);
            let state = match sealed {
                None => "sealing",
                Some((start, end)) => {
                    s.total_records += end - start;
                    let covered = remote_end.unwrap_or(start).clamp(start, end);
                    s.uploaded_records += covered - start;
                    s.partitions.push(PartitionOffsets {
                        partition: p,
                        log_start_offset: start,
                        log_end_offset: end,
                    });
                    if covered >= end {
                        "uploaded"
                    } else {
                        "uploading"
                    }
                }
            };
            s.progress.push(PartitionProgress {
                partition: p,
                leader: topic_handle
                    .as_ref()
                    .map_or(-1, |t| self.broker.partition_leader(t, p)),
                state,
                log_start_offset: sealed.map(|x| x.0),
                log_end_offset: sealed.map(|x| x.1),
                remote_end_offset: remote_end,
            });
        }
        // Everything uploaded: what is left is the Iceberg translation, if any.
        if job.all_sealed(rec.partitions) && s.uploaded_records >= s.total_records {
            if let Err(why) = self
                .translation_caught_up(topic, rec.id, &s.partitions)
                .await
            {
                s.state = "translating";
                s.error = Some(why);
            }
        }
        Ok(Some(s))
    }

    /// What the store holds of a partition, read at most once a second for the status: a
    /// progress bar polling a topic of many partitions would otherwise cost one GET per
    /// partition per poll.
    async fn stored_extent_cached(
        &self,
        id: uuid::Uuid,
        p: i32,
    ) -> Result<Option<engine::remote::RemoteExtent>, MountError> {
        if let Some((at, e)) = self.extents.lock().get(&(id, p)) {
            if at.elapsed() < STATUS_EXTENT_AGE {
                return Ok(*e);
            }
        }
        let e = self.tiering.stored_extent(id, p).await?;
        let mut extents = self.extents.lock();
        // Bounded: entries of other jobs go once stale.
        extents.retain(|_, (at, _)| at.elapsed() < STATUS_EXTENT_AGE);
        extents.insert((id, p), (std::time::Instant::now(), e));
        Ok(e)
    }

    /// Every cluster unmount running now.
    pub(crate) async fn cluster_statuses(&self) -> Result<Vec<UnmountStatus>, MountError> {
        let mut out = Vec::new();
        for rec in self.broker.topics.records_where(|r| r.unmounting.is_some()) {
            if let Some(s) = self.cluster_status(&rec.name).await? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Mounts an unmounted topic through the controller, placed on `replication_factor`
    /// brokers (if not given: as many as when it was unmounted); waits a while for its group
    /// offsets.
    pub(crate) async fn mount_cluster(
        &self,
        topic: &str,
        new_name: Option<&str>,
        replication_factor: Option<i16>,
    ) -> Result<Value, MountError> {
        let name = new_name.unwrap_or(topic);
        if engine::topics::is_internal(name) {
            return Err(BrokerError::InternalTopic(name.to_string()).into());
        }
        let m = self.tiering.get_topic_manifest(topic).await?;
        let (offsets, config) = manifest_plan(topic, &m)?;
        let pairs: Vec<(String, String)> = config
            .overrides
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Placed as it was unmounted unless told otherwise (at most on every broker).
        let brokers = self
            .broker
            .cluster
            .as_ref()
            .map_or(1, |c| c.placeable_brokers().len().max(1)) as i16;
        let rf = replication_factor
            .or(m.replication_factor.map(|rf| rf.min(brokers)))
            .unwrap_or(-1);
        let mut rec = self
            .broker
            .plan_topic(name, m.partition_count, rf, &pairs)?;
        rec.id = m.topic_id;
        let group_offsets = m.group_offsets.clone();
        let rec = engine::cluster::unmount::mount_record(
            rec,
            offsets,
            topic,
            group_offsets,
            engine::time::now_ms(),
        );
        self.propose(Command::Mount(rec.clone())).await?;
        let deadline = tokio::time::Instant::now() + MOUNT_WAIT;
        let mut state = "mounting";
        while tokio::time::Instant::now() < deadline {
            if self
                .broker
                .topics
                .record(name)
                .is_some_and(|r| r.id == rec.id && r.mounting.is_none())
            {
                state = "done";
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(json!({
            "topic": name,
            "mounted_from": topic,
            "topic_id": m.topic_id,
            "state": state,
            "replication_factor": rec.replication_factor,
            "partitions": m.partitions,
            "group_offsets": m.group_offsets.len(),
        }))
    }

    /// A cluster mount's progress: `mounting` while group offsets are being restored, `done`
    /// once complete; `None` for a topic this broker does not have.
    pub(crate) fn cluster_mount_status(&self, topic: &str) -> Option<Value> {
        let rec = self.broker.topics.record(topic)?;
        Some(match &rec.mounting {
            Some(job) => json!({
                "topic": topic,
                "state": "mounting",
                "mounted_from": job.from,
                "restored_offsets_partitions": job.restored,
                "group_offsets": job.group_offsets.len(),
            }),
            None => json!({ "topic": topic, "state": "done" }),
        })
    }
}

/// A cluster unmount that completed: its topic manifest is in the store.
fn finished(m: &TopicManifest) -> UnmountStatus {
    let total = m
        .partitions
        .iter()
        .map(|p| p.log_end_offset - p.log_start_offset)
        .sum();
    UnmountStatus {
        topic: m.topic.clone(),
        state: "done",
        uploaded_records: total,
        total_records: total,
        partitions: m.partitions.clone(),
        started_ms: m.created_ms,
        finished_ms: Some(m.created_ms),
        ..Default::default()
    }
}
