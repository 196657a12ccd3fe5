//! The engine's side of unmounting a topic into the remote tier and mounting it back on a
//! single broker. The `tiering` crate drives the whole operation (uploads, topic manifest);
//! these are the steps only the broker can take: hide a topic from clients, seal its logs,
//! forget it locally, and recreate it at the offsets it had. (A cluster's steps are in
//! `broker/unmount_steps.rs`, driven through the controller.)

use std::sync::Arc;

use uuid::Uuid;

use crate::broker::{Broker, BrokerError};
use crate::config::TopicConfig;
pub use crate::group::GroupOffset;
use crate::group::{CommitPartition, CommitRequest};
use crate::log::PartitionLog;
use crate::partition::Cmd;
use crate::remote::RemotePartition;
use crate::topics::{Topic, TopicRecord};

/// A topic hidden from clients while it is being unmounted.
pub struct HiddenTopic {
    pub record: TopicRecord,
    pub topic: Arc<Topic>,
    /// Per partition: `(log start, log end)` after sealing; every offset below the end is in
    /// a sealed segment offered to the remote tier.
    pub offsets: Vec<(i64, i64)>,
}

impl HiddenTopic {
    pub fn remote_partition(&self, partition: i32) -> RemotePartition {
        RemotePartition {
            topic: self.record.name.clone(),
            topic_id: self.record.id,
            partition,
        }
    }
}

impl Broker {
    /// Turns remote storage on if needed, hides the topic (clients get
    /// UNKNOWN_TOPIC_OR_PARTITION from now on, so nothing more is written) and seals every
    /// partition's active segment so that all of it can be uploaded.
    pub async fn hide_and_seal(&self, name: &str) -> Result<HiddenTopic, BrokerError> {
        if crate::topics::is_internal(name) {
            return Err(BrokerError::InternalTopic(name.to_string()));
        }
        // Hiding and sealing here are local steps; a cluster takes them through its controller
        // and every replica's Raft group.
        self.single_node_only("unmounting a topic")?;
        if self.remote.is_none() {
            return Err(BrokerError::Remote(crate::remote::RemoteError::Store(
                "no remote tier is configured".into(),
            )));
        }
        let rec = self
            .topics
            .record(name)
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
        if !rec.config.remote_storage_set() {
            let mut config = rec.config.clone();
            config
                .overrides
                .insert("remote.storage.enable".into(), "true".into());
            config.check_combination()?;
            self.set_topic_config(name, config).await?;
        }
        let _guard = self.topics.change_lock.lock().await;
        let record = self
            .topics
            .record(name)
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
        let topic = self
            .topics
            .hide(name)
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
        let mut offsets = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            match p.ask(|reply| Cmd::Roll { reply }).await {
                Ok(end) => offsets.push((p.marks.borrow().log_start, end)),
                Err(e) => {
                    self.topics.publish_arc(topic.clone());
                    return Err(BrokerError::Storage(std::io::Error::other(e.to_string())));
                }
            }
        }
        // A transaction open now would never get its marker into the uploaded log (the topic
        // is gone when its coordinator writes it), and a mount would restore it still open,
        // holding back the last stable offset: refuse until the transactions end. Nothing new
        // starts while the topic is hidden.
        let mut open = Vec::new();
        for (i, p) in topic.partitions.iter().enumerate() {
            let views = match p.ask(|reply| Cmd::Producers { reply }).await {
                Ok(v) => v,
                Err(e) => {
                    self.topics.publish_arc(topic.clone());
                    return Err(BrokerError::Storage(std::io::Error::other(e.to_string())));
                }
            };
            for v in views.iter().filter(|v| v.txn_start_offset >= 0) {
                open.push((i as i32, v.producer_id, v.txn_start_offset));
            }
        }
        if !open.is_empty() {
            self.topics.publish_arc(topic);
            return Err(BrokerError::TransactionsOpen {
                topic: name.to_string(),
                open,
            });
        }
        Ok(HiddenTopic {
            record,
            topic,
            offsets,
        })
    }

    /// Serves a hidden topic again (an unmount that could not finish).
    pub fn unhide(&self, hidden: HiddenTopic) {
        self.topics.publish_arc(hidden.topic);
    }

    /// Forgets a hidden topic locally: its record, its partitions and files. Its remote data
    /// stays, for a later mount.
    pub async fn forget_unmounted(&self, hidden: HiddenTopic) -> Result<(), BrokerError> {
        let _guard = self.topics.change_lock.lock().await;
        self.topics.remove(&hidden.record.name)?;
        self.unmounted.lock().insert(hidden.record.id);
        for p in &hidden.topic.partitions {
            p.stop(true, false).await;
        }
        if let Ok(dir) = self.topic_dir(&hidden.record.name) {
            let _ = std::fs::remove_dir_all(dir);
        }
        self.update_gauges();
        tracing::info!(topic = %hidden.record.name, "unmounted topic");
        // The manifest carries them; a mount commits them again.
        self.groups.forget_topic(self, &hidden.record.name);
        Ok(())
    }

    /// Recreates a topic from an unmount: same id, configs and offsets; each partition's log
    /// starts empty at its old end, with the producer state (idempotence, aborted
    /// transactions) it had there, and older offsets are read from the remote tier.
    pub async fn mount_topic(
        &self,
        name: &str,
        id: Uuid,
        config: TopicConfig,
        offsets: &[(i64, i64)],
    ) -> Result<Arc<Topic>, BrokerError> {
        crate::config::validate_topic_name(name).map_err(BrokerError::InvalidTopicName)?;
        config.check_combination()?;
        self.single_node_only("mounting a topic")?;
        let _guard = self.topics.change_lock.lock().await;
        if self.topics.record(name).is_some() {
            return Err(BrokerError::TopicExists(name.to_string()));
        }
        if let Some(other) = self.topics.all().into_iter().find(|t| t.id == id) {
            return Err(BrokerError::TopicExists(format!(
                "{} (it already has topic id {id})",
                other.name
            )));
        }
        let rec = TopicRecord::new(name, id, 1, config, vec![], offsets.len() as i32);
        let dir = self.topic_dir(name)?;
        let _ = std::fs::remove_dir_all(&dir);
        for (p, &(start, end)) in offsets.iter().enumerate() {
            let pdir = dir.join(p.to_string());
            PartitionLog::init_at(&pdir, start, end, crate::time::now_ms())?;
            let id = RemotePartition {
                topic: name.to_string(),
                topic_id: id,
                partition: p as i32,
            };
            // A failure leaves the directories behind; the next mount starts them over.
            self.restore_producer_state(&id, &pdir, start, end).await?;
        }
        let topic = self.open_topic(&rec).await?;
        self.topics.insert(rec, topic)?;
        self.update_gauges();
        tracing::info!(topic = %name, "mounted topic");
        self.topics
            .get(name)
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))
    }

    /// Every committed offset of `topic`, in any group.
    pub fn committed_offsets(&self, topic: &str) -> Vec<GroupOffset> {
        self.groups.committed_for_topic(topic)
    }

    /// Commits offsets for a (re)mounted topic as simple commits; returns how many failed.
    pub async fn restore_offsets(&self, topic: &str, offsets: &[GroupOffset]) -> usize {
        let mut failed = 0;
        let mut groups: Vec<&str> = offsets.iter().map(|o| o.group.as_str()).collect();
        groups.dedup();
        for g in groups {
            let parts = offsets
                .iter()
                .filter(|o| o.group == g)
                .map(|o| CommitPartition {
                    partition: o.partition,
                    offset: o.offset,
                    leader_epoch: -1,
                    metadata: o.metadata.clone(),
                })
                .collect();
            let res = self
                .groups
                .commit(
                    self,
                    g,
                    CommitRequest {
                        version: 8,
                        generation: -1,
                        member_id: String::new(),
                        instance_id: None,
                        topics: vec![(topic.to_string(), parts)],
                    },
                )
                .await;
            failed += res
                .iter()
                .flat_map(|(_, ps)| ps.iter())
                .filter(|(_, outcome)| outcome.is_err())
                .count();
        }
        failed
    }
}
