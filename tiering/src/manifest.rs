//! The partition manifest: the one object that says what the tier holds for a partition.
//!
//! It is written with a single PUT (atomic in every object store) and only after all objects
//! of the segments it names exist, so at any crash point it names only complete objects.

use bytes::Bytes;
use engine::remote::{RemoteExtent, RemoteSegment};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::TieringError;
use crate::layout::ObjectKind;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub kind: ObjectKind,
    /// Key relative to the store root; stored whole so later layouts can still read old ones.
    pub key: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSegment {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size: u64,
    pub max_timestamp: i64,
    pub objects: Vec<ObjectRef>,
}

impl ManifestSegment {
    pub fn object(&self, kind: ObjectKind) -> Option<&ObjectRef> {
        self.objects.iter().find(|o| o.kind == kind)
    }

    pub fn remote(&self) -> RemoteSegment {
        RemoteSegment {
            base_offset: self.base_offset,
            next_offset: self.next_offset,
            size: self.size,
            max_timestamp: self.max_timestamp,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionManifest {
    pub format_version: u32,
    /// The topic's name when last written (informational: objects are keyed by id).
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    /// Offsets below this are unreadable (DeleteRecords, total retention).
    pub log_start_offset: i64,
    /// Ascending by base offset, not overlapping.
    pub segments: Vec<ManifestSegment>,
    /// The leader epoch (Raft term) of the replica that wrote it; 0 on a single node. A
    /// replica never writes over a manifest with a higher epoch: it has been deposed.
    #[serde(default)]
    pub leader_epoch: i32,
}

impl PartitionManifest {
    pub fn empty(topic: &str, topic_id: Uuid, partition: i32) -> Self {
        PartitionManifest {
            format_version: FORMAT_VERSION,
            topic: topic.to_string(),
            topic_id,
            partition,
            log_start_offset: 0,
            segments: Vec::new(),
            leader_epoch: 0,
        }
    }

    pub fn extent(&self) -> RemoteExtent {
        match (self.segments.first(), self.segments.last()) {
            (Some(first), Some(last)) => RemoteExtent {
                start: self.log_start_offset.max(first.base_offset),
                end: last.next_offset,
                bytes: self.segments.iter().map(|s| s.size).sum(),
                segments: self.segments.len() as u64,
            },
            _ => RemoteExtent {
                start: self.log_start_offset,
                end: self.log_start_offset,
                bytes: 0,
                segments: 0,
            },
        }
    }

    /// The offset below which an offered segment adds nothing.
    pub fn covered_end(&self) -> i64 {
        self.segments.last().map_or(self.log_start_offset, |s| {
            s.next_offset.max(self.log_start_offset)
        })
    }

    /// Index of the segment holding `offset`, or of the first one after it (a gap).
    pub fn segment_for(&self, offset: i64) -> Option<usize> {
        let i = self.segments.partition_point(|s| s.next_offset <= offset);
        (i < self.segments.len()).then_some(i)
    }

    pub fn encode(&self) -> Bytes {
        // Serializing plain data cannot fail.
        Bytes::from(serde_json::to_vec_pretty(self).unwrap_or_default())
    }

    /// Parses and checks a manifest; anything unexpected is `Corrupt` naming the key.
    pub fn decode(key: &Path, bytes: &[u8]) -> Result<Self, TieringError> {
        let m: PartitionManifest = serde_json::from_slice(bytes)
            .map_err(|e| TieringError::corrupt(key, format!("not a partition manifest: {e}")))?;
        if m.format_version != FORMAT_VERSION {
            return Err(TieringError::corrupt(
                key,
                format!("unknown manifest format version {}", m.format_version),
            ));
        }
        let mut prev_next = i64::MIN;
        for s in &m.segments {
            if s.base_offset < prev_next || s.next_offset <= s.base_offset {
                return Err(TieringError::corrupt(
                    key,
                    format!(
                        "segment {}..{} is empty or overlaps the one before",
                        s.base_offset, s.next_offset
                    ),
                ));
            }
            match s.object(ObjectKind::Log) {
                Some(o) if o.size == s.size => {}
                _ => {
                    return Err(TieringError::corrupt(
                        key,
                        format!("segment {} has no log object of its size", s.base_offset),
                    ))
                }
            }
            if s.object(ObjectKind::OffsetIndex).is_none() {
                return Err(TieringError::corrupt(
                    key,
                    format!("segment {} has no offset index", s.base_offset),
                ));
            }
            prev_next = s.next_offset;
        }
        Ok(m)
    }

    /// Reads the manifest at `key`; `None` when there is none yet.
    pub async fn load(store: &dyn ObjectStore, key: &Path) -> Result<Option<Self>, TieringError> {
        match store.get(key).await {
            Ok(r) => {
                let bytes = r
                    .bytes()
                    .await
                    .map_err(|e| TieringError::store("get", key, e))?;
                Self::decode(key, &bytes).map(Some)
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(TieringError::store("get", key, e)),
        }
    }

    pub async fn store(&self, store: &dyn ObjectStore, key: &Path) -> Result<(), TieringError> {
        store
            .put(key, PutPayload::from(self.encode()))
            .await
            .map_err(|e| TieringError::store("put", key, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base: i64, next: i64) -> ManifestSegment {
        ManifestSegment {
            base_offset: base,
            next_offset: next,
            size: 10,
            max_timestamp: 5,
            objects: vec![
                ObjectRef {
                    kind: ObjectKind::Log,
                    key: format!("x/{base}.log"),
                    size: 10,
                },
                ObjectRef {
                    kind: ObjectKind::OffsetIndex,
                    key: format!("x/{base}.index"),
                    size: 8,
                },
            ],
        }
    }

    #[test]
    fn roundtrip_extent_and_damage() {
        let key = Path::from("m.json");
        let mut m = PartitionManifest::empty("t", Uuid::nil(), 0);
        assert_eq!(m.extent(), RemoteExtent::default());
        m.segments = vec![seg(0, 10), seg(10, 20)];
        m.log_start_offset = 4;
        let back = PartitionManifest::decode(&key, &m.encode()).unwrap();
        assert_eq!(back, m);
        let e = back.extent();
        assert_eq!((e.start, e.end, e.segments, e.bytes), (4, 20, 2, 20));
        assert_eq!(back.segment_for(12), Some(1));
        assert_eq!(back.segment_for(20), None);
        assert!(matches!(
            PartitionManifest::decode(&key, b"{\"nope\":1}"),
            Err(TieringError::Corrupt { .. })
        ));
        m.segments = vec![seg(0, 10), seg(5, 20)];
        let err = PartitionManifest::decode(&key, &m.encode()).unwrap_err();
        assert!(err.to_string().contains("m.json"), "{err}");
    }
}
