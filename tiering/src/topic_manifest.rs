//! Topic manifests: what unmount writes and mount reads to bring a topic back with the same
//! offsets, configs and committed group offsets, possibly under a new name. Keyed by name.

use std::collections::BTreeMap;

use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::TieringError;
use crate::layout::{self, TOPICS_PREFIX};

pub const TOPIC_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOffsets {
    pub partition: i32,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

pub use engine::topic_jobs::GroupOffset;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicManifest {
    pub format_version: u32,
    pub topic: String,
    pub topic_id: Uuid,
    pub partition_count: i32,
    pub partitions: Vec<PartitionOffsets>,
    /// Topic config overrides (Kafka names).
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    #[serde(default)]
    pub group_offsets: Vec<GroupOffset>,
    pub created_ms: i64,
    /// Replicas per partition when it was unmounted from a cluster: a mount that names none
    /// places it alike (absent: unmounted from a single broker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<i16>,
}

impl TopicManifest {
    pub fn new(topic: &str, topic_id: Uuid, partition_count: i32, created_ms: i64) -> Self {
        TopicManifest {
            format_version: TOPIC_FORMAT_VERSION,
            topic: topic.to_string(),
            topic_id,
            partition_count,
            partitions: Vec::new(),
            configs: BTreeMap::new(),
            group_offsets: Vec::new(),
            created_ms,
            replication_factor: None,
        }
    }

    pub fn decode(key: &Path, bytes: &[u8]) -> Result<Self, TieringError> {
        let m: TopicManifest = serde_json::from_slice(bytes)
            .map_err(|e| TieringError::corrupt(key, format!("not a topic manifest: {e}")))?;
        if m.format_version != TOPIC_FORMAT_VERSION {
            return Err(TieringError::corrupt(
                key,
                format!("unknown topic manifest format version {}", m.format_version),
            ));
        }
        if m.partition_count < 1 || m.partitions.len() > m.partition_count as usize {
            return Err(TieringError::corrupt(
                key,
                format!(
                    "partition count {} with {} partition entries",
                    m.partition_count,
                    m.partitions.len()
                ),
            ));
        }
        if let Some(p) = m.partitions.iter().find(|p| {
            p.partition < 0
                || p.partition >= m.partition_count
                || p.log_start_offset > p.log_end_offset
        }) {
            return Err(TieringError::corrupt(
                key,
                format!("partition entry {p:?} is out of range"),
            ));
        }
        Ok(m)
    }
}

/// Writes (or replaces) the manifest of `m.topic`.
pub async fn put(store: &dyn ObjectStore, m: &TopicManifest) -> Result<(), TieringError> {
    let key = layout::topic_manifest_key(&m.topic)?;
    let bytes = serde_json::to_vec_pretty(m).unwrap_or_default();
    store
        .put(&key, PutPayload::from(bytes))
        .await
        .map_err(|e| TieringError::store("put", &key, e))?;
    Ok(())
}

/// Reads a topic's manifest; a missing one is `TopicManifestMissing`, a damaged one `Corrupt`.
pub async fn get(store: &dyn ObjectStore, topic: &str) -> Result<TopicManifest, TieringError> {
    let key = layout::topic_manifest_key(topic)?;
    let bytes = match store.get(&key).await {
        Ok(r) => r
            .bytes()
            .await
            .map_err(|e| TieringError::store("get", &key, e))?,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(TieringError::TopicManifestMissing {
                topic: topic.to_string(),
                key: key.to_string(),
            })
        }
        Err(e) => return Err(TieringError::store("get", &key, e)),
    };
    TopicManifest::decode(&key, &bytes)
}

/// Names of the topics that have a manifest, sorted.
pub async fn list(store: &dyn ObjectStore) -> Result<Vec<String>, TieringError> {
    let prefix = Path::from(TOPICS_PREFIX);
    let metas: Vec<_> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| TieringError::store("list", &prefix, e))?;
    let mut names: Vec<String> = metas
        .iter()
        .filter(|m| m.location.filename() == Some(layout::PARTITION_MANIFEST))
        .filter_map(|m| {
            let parts: Vec<_> = m.location.parts().collect();
            (parts.len() == 3).then(|| parts[1].as_ref().to_string())
        })
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Removes a topic's manifest; a missing one is not an error.
pub async fn delete(store: &dyn ObjectStore, topic: &str) -> Result<(), TieringError> {
    let key = layout::topic_manifest_key(topic)?;
    match store.delete(&key).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(TieringError::store("delete", &key, e)),
    }
}
