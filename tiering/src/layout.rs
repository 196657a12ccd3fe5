//! Where every object lives. Keys are deterministic, so a re-upload after a crash overwrites
//! the same objects instead of leaving copies.
//!
//! ```text
//! <hhhh>/<topic id>/<partition>/manifest.json                  partition manifest
//! <hhhh>/<topic id>/<partition>/<base offset, 20 digits>.log   segment bytes as on disk
//!                                                  .index      offset index
//!                                                  .timeindex  time index
//!                                                  .snapshot   producer-state snapshot
//! topics/<topic name>/manifest.json                            topic manifest (mount/unmount)
//! ```
//!
//! `hhhh` is a hash of topic id and partition: partitions spread over 65536 first path
//! elements (S3 scales request rates per prefix), while one partition's objects share a prefix
//! so that deleting a partition or sweeping its orphans is one listing.

use object_store::path::Path;
use uuid::Uuid;

pub const PARTITION_MANIFEST: &str = "manifest.json";
pub const TOPICS_PREFIX: &str = "topics";

/// The kinds of object a segment is uploaded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Log,
    OffsetIndex,
    TimeIndex,
    ProducerSnapshot,
}

impl ObjectKind {
    pub fn extension(self) -> &'static str {
        match self {
            ObjectKind::Log => "log",
            ObjectKind::OffsetIndex => "index",
            ObjectKind::TimeIndex => "timeindex",
            ObjectKind::ProducerSnapshot => "snapshot",
        }
    }
}

/// FNV-1a, written out so the spread of keys never changes with a dependency's version.
pub fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// The common prefix of one partition's objects.
pub fn partition_prefix(topic_id: Uuid, partition: i32) -> Path {
    let id = format!("{topic_id}/{partition}");
    let h = fnv1a(FNV_OFFSET, id.as_bytes()) & 0xffff;
    Path::from(format!("{h:04x}/{id}"))
}

pub fn partition_manifest_key(topic_id: Uuid, partition: i32) -> Path {
    partition_prefix(topic_id, partition).join(PARTITION_MANIFEST)
}

pub fn segment_key(topic_id: Uuid, partition: i32, base_offset: i64, kind: ObjectKind) -> Path {
    partition_prefix(topic_id, partition)
        .join(format!("{base_offset:020}.{}", kind.extension()).as_str())
}

/// The base offset a segment object's file name encodes (`None` for other objects).
pub fn base_of_segment_object(key: &Path) -> Option<i64> {
    let name = key.filename()?;
    let (stem, _) = name.split_once('.')?;
    if stem.len() != 20 {
        return None;
    }
    stem.parse().ok()
}

/// The manifest of a (mounted or unmounted) topic; an error for a name that is not a legal
/// topic name, so that a name from a manifest or a request never addresses another key.
pub fn topic_manifest_key(topic: &str) -> Result<Path, engine::names::NameError> {
    Ok(Path::from(TOPICS_PREFIX)
        .join(engine::names::topic(topic)?)
        .join(PARTITION_MANIFEST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_parse_back() {
        let id = Uuid::from_u128(0x1234);
        let k = segment_key(id, 3, 42, ObjectKind::Log);
        assert_eq!(k, segment_key(id, 3, 42, ObjectKind::Log));
        assert!(k.as_ref().ends_with("/00000000000000000042.log"));
        assert!(k.as_ref().starts_with(partition_prefix(id, 3).as_ref()));
        assert_eq!(base_of_segment_object(&k), Some(42));
        assert_eq!(base_of_segment_object(&partition_manifest_key(id, 3)), None);
        assert_ne!(partition_prefix(id, 3), partition_prefix(id, 4));
        assert_eq!(
            topic_manifest_key("orders").unwrap().as_ref(),
            "topics/orders/manifest.json"
        );
        for bad in ["..", "../orders", "a/b", ""] {
            assert!(topic_manifest_key(bad).is_err(), "{bad:?}");
        }
    }
}
