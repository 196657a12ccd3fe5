//! The `_schemas` topic: Confluent's own record format (JSON keys and values), one compacted
//! partition, written with acks=all and replayed from the start when the broker starts (in a
//! cluster: replicated, and tailed by every broker's registry, see `Registry::open`).

use bytes::Bytes;
use engine::broker::{Broker, BrokerError};
use engine::log::batch::{self, split_batches, Compression, NewRecord};
use engine::partition::{Cmd, PartitionError, PartitionHandle};

pub use engine::topics::SCHEMAS_TOPIC;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create {SCHEMAS_TOPIC}: {0}")]
    Topic(#[from] BrokerError),
    #[error("cannot write to {SCHEMAS_TOPIC}: {0}")]
    Append(#[from] PartitionError),
    #[error("{SCHEMAS_TOPIC} holds a malformed batch: {0}")]
    Corrupt(String),
}

/// The partition of `_schemas`, created (compacted, kept forever) on first use; in a cluster
/// through the controller, replicated like `__consumer_offsets` (RF = min(3, brokers)).
pub async fn partition(b: &Broker) -> Result<PartitionHandle, StoreError> {
    if let Some(t) = b.topics.get(SCHEMAS_TOPIC) {
        return Ok(t.partitions[0].clone());
    }
    let (replication, mut configs) = engine::internal_topic::replication(b);
    configs.push(("cleanup.policy".to_string(), "compact".to_string()));
    configs.push(("retention.ms".to_string(), "-1".to_string()));
    let created = match b.plan_topic(SCHEMAS_TOPIC, 1, replication, &configs) {
        Ok(rec) => b.create_topic(rec).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(t) => Ok(t.partitions[0].clone()),
        Err(BrokerError::TopicExists(_)) => b
            .topics
            .get(SCHEMAS_TOPIC)
            .map(|t| t.partitions[0].clone())
            .ok_or_else(|| BrokerError::UnknownTopic(SCHEMAS_TOPIC.into()).into()),
        Err(e) => Err(e.into()),
    }
}

/// Appends keyed JSON records (None = tombstone) and waits until they are committed; returns
/// the offset after the last one.
pub async fn append(b: &Broker, entries: &[(String, Option<String>)]) -> Result<i64, StoreError> {
    let p = partition(b).await?;
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
    let bytes = batch::encode_batch(&records, Compression::None)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let batches = split_batches(&bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let ok = p
        .ask(|reply| Cmd::Produce {
            batches,
            reply,
            acks_all: true,
        })
        .await?;
    Ok(ok.base_offset + records.len() as i64)
}

/// Reads every record of `_schemas` up to the high watermark, in order.
pub async fn replay(
    b: &Broker,
    mut apply: impl FnMut(Bytes, Option<Bytes>),
) -> Result<(), StoreError> {
    let Some(topic) = b.topics.get(SCHEMAS_TOPIC) else {
        return Ok(());
    };
    engine::internal_topic::replay(&topic.partitions[0], |r| {
        if let Some(key) = r.key {
            apply(key, r.value);
        }
    })
    .await
    .map_err(|e| match e {
        engine::internal_topic::ReplayError::Partition(e) => StoreError::Append(e),
        engine::internal_topic::ReplayError::Corrupt(m) => StoreError::Corrupt(m),
    })?;
    Ok(())
}
