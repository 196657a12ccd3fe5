//! The controller's state as of an applied index: every topic record (with its replica
//! assignments and ongoing moves) and the brokers being decommissioned. It is what the
//! controller's checkpoint holds, so that its Raft log can be dropped a file at a time
//! (`raft::log_file`), and what a controller replica behind the leader's first index is sent
//! as a snapshot: small (a record per topic), so it travels whole in one message.
//!
//! A restart does not need it for topics: every command's effect on the topic table is
//! persisted before the next entry is applied, so the table is never behind the checkpoint,
//! and the entries after the checkpoint are applied again idempotently, as before. Only the
//! draining set, which lives in memory, is taken from it. A replica that installs a snapshot
//! is behind it by definition: [`reconcile`] brings its topic table there before the
//! checkpoint that records the snapshot is written.

use std::collections::{BTreeMap, BTreeSet};

use crate::broker::{Broker, BrokerError};
use crate::topics::TopicRecord;

/// The encoding's version; a newer one is refused with a message rather than misread.
const VERSION: u8 = 1;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetadataState {
    pub version: u8,
    pub topics: Vec<TopicRecord>,
    pub draining: BTreeSet<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("controller state undecodable: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("controller state version {0} is newer than this broker's ({VERSION}); upgrade it")]
    Version(u8),
}

impl MetadataState {
    /// This broker's applied state (the controller task calls it between entries).
    pub fn capture(b: &Broker) -> MetadataState {
        MetadataState {
            version: VERSION,
            topics: b.topics.records(),
            draining: b
                .cluster
                .as_ref()
                .map(|c| c.draining.lock().clone())
                .unwrap_or_default(),
        }
    }

    pub fn encode(&self) -> bytes::Bytes {
        serde_json::to_vec(self)
            .expect("topic records serialize")
            .into()
    }

    pub fn decode(b: &[u8]) -> Result<MetadataState, StateError> {
        let s: MetadataState = serde_json::from_slice(b)?;
        if s.version > VERSION {
            return Err(StateError::Version(s.version));
        }
        Ok(s)
    }
}

/// Brings this broker's topic table to `state`, which is newer than what it applied: topics
/// it lacks are created, topics `state` lacks (or has under another id) were deleted since and
/// go with their files, and records that differ get the configs, partitions and replicas the
/// commands in between would have given them.
pub async fn reconcile(b: &Broker, state: &MetadataState) -> Result<(), BrokerError> {
    let wanted: BTreeMap<&str, &TopicRecord> =
        state.topics.iter().map(|r| (r.name.as_str(), r)).collect();
    for local in b.topics.records() {
        if wanted
            .get(local.name.as_str())
            .is_none_or(|r| r.id != local.id)
        {
            tracing::info!(topic = %local.name, "topic deleted while this broker was behind");
            match b.delete_topic_local(&local.name).await {
                Ok(()) | Err(BrokerError::UnknownTopic(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    for rec in &state.topics {
        match b.topics.record(&rec.name) {
            None => {
                b.create_topic_local(rec.clone()).await?;
            }
            Some(local) if local != *rec => {
                // Configs first (new partitions open with them), then partitions added, then
                // the replicas of every partition, persisting the snapshot's record.
                if local.config != rec.config {
                    b.set_topic_config_local(&rec.name, rec.config.clone(), 0)
                        .await?;
                }
                if local.partitions < rec.partitions {
                    let new = rec
                        .assignments
                        .get(local.partitions.max(0) as usize..)
                        .map(<[_]>::to_vec)
                        .unwrap_or_default();
                    b.add_partitions_local(&rec.name, rec.partitions, new, 0)
                        .await?;
                }
                super::reassign::resync(b, rec.clone()).await?
            }
            Some(_) => {}
        }
    }
    if let Some(c) = &b.cluster {
        *c.draining.lock() = state.draining.clone();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_a_newer_version() {
        let s = MetadataState {
            version: VERSION,
            topics: vec![],
            draining: [3].into(),
        };
        assert_eq!(MetadataState::decode(&s.encode()).unwrap(), s);
        let newer = MetadataState { version: 9, ..s };
        assert!(matches!(
            MetadataState::decode(&newer.encode()),
            Err(StateError::Version(9))
        ));
        assert!(matches!(
            MetadataState::decode(b"{\"topics\":"),
            Err(StateError::Decode(_))
        ));
    }
}
