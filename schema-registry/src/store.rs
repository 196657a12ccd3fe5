//! The `_schemas` topic: Confluent's own record format (JSON keys and values), one compacted
//! partition, written with acks=all and replayed from the start when the broker starts (in a
//! cluster: replicated, and tailed by every broker's registry, see `Registry::open`).

use bytes::Bytes;
use engine::internal_topic::{InternalTopic, InternalTopicError, TopicHost};
use engine::log::batch::NewRecord;
use engine::partition::PartitionHandle;

pub use engine::topics::SCHEMAS_TOPIC;

/// Why `_schemas` could not be created, written or read.
pub type StoreError = InternalTopicError;

/// `_schemas`: one partition, compacted, kept forever; replicated like `__consumer_offsets` in a
/// cluster (RF = min(3, brokers)).
const SCHEMAS: InternalTopic = InternalTopic {
    name: SCHEMAS_TOPIC,
    partitions: (1, 1),
};

/// The partition of `_schemas`, created on first use.
pub async fn partition(b: &dyn TopicHost) -> Result<PartitionHandle, StoreError> {
    SCHEMAS.partition(b, 0).await
}

/// Appends keyed JSON records (None = tombstone) and waits until they are committed; returns
/// the offset after the last one.
pub async fn append(
    b: &dyn TopicHost,
    entries: &[(String, Option<String>)],
) -> Result<i64, StoreError> {
    let now = engine::time::now_ms();
    let records: Vec<NewRecord> = entries
        .iter()
        .map(|(k, v)| NewRecord {
            key: Some(Bytes::from(k.clone())),
            value: v.clone().map(Bytes::from),
            timestamp: now,
            headers: Vec::new(),
        })
        .collect();
    let ok = SCHEMAS.append(b, 0, &records).await?;
    Ok(ok.base_offset + records.len() as i64)
}

/// Reads every record of `_schemas` up to the high watermark, in order.
pub async fn replay(
    b: &dyn TopicHost,
    mut apply: impl FnMut(Bytes, Option<Bytes>),
) -> Result<(), StoreError> {
    SCHEMAS
        .replay(b, 0, |r| {
            if let Some(key) = r.key {
                apply(key, r.value);
            }
        })
        .await
}
