//! Durable group state: keyed records in the internal topic `__consumer_offsets`.
//!
//! Encoding (big-endian; strings are a u16 length and UTF-8 bytes):
//!
//! ```text
//! key   = kind:u8 group:str [topic:str partition:i32]     kind 0 = offset, 1 = group
//!                                                          (kind 2: a new leader's marker)
//! offset value = version:u8(0) offset:i64 leader_epoch:i32 commit_timestamp:i64
//!                metadata_len:i32 (-1 = null) metadata bytes
//! group value  = version:u8(0) protocol_type:str generation:i32
//! ```
//!
//! A null value is a tombstone: the offset (OffsetDelete) or the group (DeleteGroups) is gone.
//! The latest record per key wins, so the topic is compactable.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use std::sync::Arc;

use crate::broker::{Broker, BrokerError};
use crate::log::batch::{self, split_batches, BatchError, Compression, NewRecord};
use crate::partition::{Cmd, PartitionError, PartitionHandle};

use crate::topics::Topic;
pub use crate::topics::OFFSETS_TOPIC;

const KIND_OFFSET: u8 = 0;
const KIND_GROUP: u8 = 1;
/// Written by a new coordinator ([`barrier`]); carries nothing.
const KIND_BARRIER: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub commit_timestamp: i64,
    pub metadata: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Offset(OffsetValue),
    Group(GroupValue),
}

fn put_str(b: &mut BytesMut, s: &str) {
    let s = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    b.put_u16(s.len() as u16);
    b.put_slice(s);
}

fn get_str(b: &mut Bytes) -> Option<String> {
    if b.remaining() < 2 {
        return None;
    }
    let n = b.get_u16() as usize;
    if b.remaining() < n {
        return None;
    }
    String::from_utf8(b.split_to(n).to_vec()).ok()
}

impl Key {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            Key::Offset {
                group,
                topic,
                partition,
            } => {
                b.put_u8(KIND_OFFSET);
                put_str(&mut b, group);
                put_str(&mut b, topic);
                b.put_i32(*partition);
            }
            Key::Group(group) => {
                b.put_u8(KIND_GROUP);
                put_str(&mut b, group);
            }
        }
        b.freeze()
    }

    pub fn decode(mut b: Bytes) -> Option<Key> {
        if !b.has_remaining() {
            return None;
        }
        match b.get_u8() {
            KIND_OFFSET => {
                let group = get_str(&mut b)?;
                let topic = get_str(&mut b)?;
                if b.remaining() < 4 {
                    return None;
                }
                Some(Key::Offset {
                    group,
                    topic,
                    partition: b.get_i32(),
                })
            }
            KIND_GROUP => Some(Key::Group(get_str(&mut b)?)),
            _ => None,
        }
    }

    pub fn group(&self) -> &str {
        match self {
            Key::Offset { group, .. } | Key::Group(group) => group,
        }
    }
}

impl Value {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(0);
        match self {
            Value::Offset(o) => {
                b.put_i64(o.offset);
                b.put_i32(o.leader_epoch);
                b.put_i64(o.commit_timestamp);
                match &o.metadata {
                    None => b.put_i32(-1),
                    Some(m) => {
                        b.put_i32(m.len() as i32);
                        b.put_slice(m.as_bytes());
                    }
                }
            }
            Value::Group(g) => {
                put_str(&mut b, &g.protocol_type);
                b.put_i32(g.generation);
            }
        }
        b.freeze()
    }

    /// Decodes the value that goes with `key`.
    pub fn decode(key: &Key, mut b: Bytes) -> Option<Value> {
        if !b.has_remaining() || b.get_u8() != 0 {
            return None;
        }
        match key {
            Key::Offset { .. } => {
                if b.remaining() < 24 {
                    return None;
                }
                let offset = b.get_i64();
                let leader_epoch = b.get_i32();
                let commit_timestamp = b.get_i64();
                let len = b.get_i32();
                let metadata = if len < 0 {
                    None
                } else if b.remaining() < len as usize {
                    return None;
                } else {
                    Some(String::from_utf8(b.split_to(len as usize).to_vec()).ok()?)
                };
                Some(Value::Offset(OffsetValue {
                    offset,
                    leader_epoch,
                    commit_timestamp,
                    metadata,
                }))
            }
            Key::Group(_) => {
                let protocol_type = get_str(&mut b)?;
                if b.remaining() < 4 {
                    return None;
                }
                Some(Value::Group(GroupValue {
                    protocol_type,
                    generation: b.get_i32(),
                }))
            }
        }
    }
}

/// Encodes keyed records (None = tombstone) as one uncompressed v2 batch.
pub fn encode_batch(entries: &[(Key, Option<Value>)]) -> Result<Bytes, BatchError> {
    let now = crate::time::now_ms();
    let records: Vec<NewRecord> = entries
        .iter()
        .map(|(k, v)| NewRecord {
            key: Some(k.encode()),
            value: v.as_ref().map(Value::encode),
            timestamp: now,
            headers: Vec::new(),
        })
        .collect();
    batch::encode_batch(&records, Compression::None)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create {OFFSETS_TOPIC}: {0}")]
    Topic(#[from] BrokerError),
    #[error("cannot append to {OFFSETS_TOPIC}: {0}")]
    Append(#[from] PartitionError),
    #[error("{OFFSETS_TOPIC} holds a malformed batch: {0}")]
    Corrupt(String),
}

/// Partitions of `__consumer_offsets` in a cluster (Kafka's `offsets.topic.num.partitions`,
/// whose default is 50): groups are spread over them by [`partition_for`], and each
/// partition's Raft leader coordinates its groups, so group traffic is spread over brokers. A
/// few suffice for a few brokers; each is a Raft group of its own.
pub const CLUSTER_PARTITIONS: i32 = 6;

/// The partition of `__consumer_offsets` that holds a group: Kafka's
/// `abs(groupId.hashCode()) % partitions` (Java's `String.hashCode` over UTF-16 code units),
/// so groups land where a Kafka cluster with the same partition count would put them.
pub fn partition_for(group: &str, partitions: usize) -> i32 {
    if partitions <= 1 {
        return 0;
    }
    let h = group
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
    // Kafka's Utils.abs: `h & 0x7fffffff`, so i32::MIN maps to 0.
    ((h & 0x7fff_ffff) as usize % partitions) as i32
}

/// `__consumer_offsets`, created on first use: one partition on a single node (every group
/// has the same coordinator, so more would buy nothing), [`CLUSTER_PARTITIONS`] in a cluster.
///
/// In a cluster the topic is created through the controller with RF = min(3, brokers) and
/// min.insync.replicas = min(2, RF); concurrent creators race harmlessly (one record wins,
/// the others see TopicExists and use it).
pub async fn topic(b: &Broker) -> Result<Arc<Topic>, StoreError> {
    if let Some(t) = b.topics.get(OFFSETS_TOPIC) {
        return Ok(t);
    }
    let partitions = if b.cluster.is_some() {
        CLUSTER_PARTITIONS
    } else {
        1
    };
    let (replication, mut configs) = crate::internal_topic::replication(b);
    configs.push(("retention.ms".to_string(), "-1".to_string()));
    let compact = ("cleanup.policy".to_string(), "compact".to_string());
    let mut with_compact = configs.clone();
    with_compact.push(compact);
    // Compacted where the broker supports compaction; otherwise kept forever.
    let rec = match b.plan_topic(OFFSETS_TOPIC, partitions, replication, &with_compact) {
        Err(BrokerError::InvalidConfig(_)) => {
            b.plan_topic(OFFSETS_TOPIC, partitions, replication, &configs)
        }
        other => other,
    };
    let existing = || {
        b.topics
            .get(OFFSETS_TOPIC)
            .ok_or_else(|| BrokerError::UnknownTopic(OFFSETS_TOPIC.into()))
    };
    Ok(match rec {
        Ok(rec) => match b.create_topic(rec).await {
            Ok(t) => t,
            Err(BrokerError::TopicExists(_)) => existing()?,
            Err(e) => return Err(e.into()),
        },
        Err(BrokerError::TopicExists(_)) => existing()?,
        Err(e) => return Err(e.into()),
    })
}

/// The partition of `__consumer_offsets` that holds `group`, created on first use.
pub async fn partition(b: &Broker, group: &str) -> Result<PartitionHandle, StoreError> {
    let t = topic(b).await?;
    nth(&t, partition_for(group, t.partitions.len()))
}

fn nth(t: &Topic, p: i32) -> Result<PartitionHandle, StoreError> {
    t.partition(p)
        .cloned()
        .ok_or_else(|| StoreError::Corrupt(format!("no partition {p}")))
}

/// Writes a record replay skips and waits until it is committed: on a new Raft leader, entries
/// of earlier terms are only known committed (and applied) once one of its own term is.
pub async fn barrier(b: &Broker, partition: i32) -> Result<(), StoreError> {
    let p = nth(&*topic(b).await?, partition)?;
    let marker = NewRecord {
        // A key kind `Key::decode` does not know: replay skips it.
        key: Some(Bytes::from_static(&[KIND_BARRIER])),
        value: None,
        timestamp: crate::time::now_ms(),
        headers: Vec::new(),
    };
    let batches = batch::encode_batch(&[marker], Compression::None)
        .and_then(|bytes| split_batches(&bytes))
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    p.ask(|reply| Cmd::Produce {
        batches,
        reply,
        acks_all: true,
    })
    .await?;
    Ok(())
}

/// Sends records to the partition; the receiver answers once they are committed (acks=all).
/// Returns the log offset of the first record.
pub fn send(
    p: &PartitionHandle,
    entries: &[(Key, Option<Value>)],
) -> tokio::sync::oneshot::Receiver<Result<crate::partition::ProduceOk, PartitionError>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    match encode_batch(entries).and_then(|bytes| split_batches(&bytes)) {
        Ok(batches) => {
            if let Err(e) = p.tx.send(Cmd::Produce {
                batches,
                reply: tx,
                acks_all: true,
            }) {
                if let Cmd::Produce { reply, .. } = e.0 {
                    let _ = reply.send(Err(PartitionError::Stopped));
                }
            }
        }
        Err(e) => {
            let _ = tx.send(Err(PartitionError::Storage(std::io::Error::other(
                e.to_string(),
            ))));
        }
    }
    rx
}

/// Appends records of `group` to its partition and waits until they are committed; returns
/// the first record's offset.
pub async fn append(
    b: &Broker,
    group: &str,
    entries: &[(Key, Option<Value>)],
) -> Result<i64, StoreError> {
    let p = partition(b, group).await?;
    let ok = send(&p, entries)
        .await
        .map_err(|_| PartitionError::Stopped)??;
    Ok(ok.base_offset)
}

/// Reads every record of partition `p` of `__consumer_offsets` up to the high watermark, in
/// order.
pub async fn replay(
    b: &Broker,
    p: i32,
    mut apply: impl FnMut(i64, Key, Option<Value>),
) -> Result<(), StoreError> {
    let Some(topic) = b.topics.get(OFFSETS_TOPIC) else {
        return Ok(());
    };
    crate::internal_topic::replay(&nth(&topic, p)?, |r| {
        let Some(key) = r.key.and_then(Key::decode) else {
            return;
        };
        let value = r.value.and_then(|v| Value::decode(&key, v));
        apply(r.offset, key, value);
    })
    .await
    .map_err(|e| match e {
        crate::internal_topic::ReplayError::Partition(e) => StoreError::Append(e),
        crate::internal_topic::ReplayError::Corrupt(m) => StoreError::Corrupt(m),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn groups_land_where_kafka_puts_them() {
        // Java: "hello".hashCode() == 99162322, 99162322 % 50 == 22; "my-group".hashCode()
        // == -1906497762, & 0x7fffffff == 240985886, % 50 == 36.
        assert_eq!(partition_for("hello", 50), 22);
        assert_eq!(partition_for("my-group", 50), 36);
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("anything", 1), 0);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE: Kafka's Utils.abs maps it to
        // 0, not to a negative index.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // Non-ASCII hashes UTF-16 code units: "é" is 233, an emoji a surrogate pair.
        assert_eq!(partition_for("é", 50), 233 % 50);
        assert_eq!(
            partition_for("😀", 100_000),
            (0xd83d * 31 + 0xde00) % 100_000
        );
        let spread: std::collections::HashSet<i32> = (0..200)
            .map(|i| partition_for(&format!("g{i}"), 6))
            .collect();
        assert_eq!(spread.len(), 6);
    }

    #[test]
    fn keys_and_values_round_trip_through_a_batch() {
        let entries = vec![
            (
                Key::Offset {
                    group: "g".into(),
                    topic: "t".into(),
                    partition: 3,
                },
                Some(Value::Offset(OffsetValue {
                    offset: 42,
                    leader_epoch: 0,
                    commit_timestamp: 7,
                    metadata: Some("meta".into()),
                })),
            ),
            (
                Key::Group("g".into()),
                Some(Value::Group(GroupValue {
                    protocol_type: "consumer".into(),
                    generation: 5,
                })),
            ),
            (
                Key::Offset {
                    group: "g".into(),
                    topic: "u".into(),
                    partition: 0,
                },
                None,
            ),
        ];
        let bytes = encode_batch(&entries).unwrap();
        let batches = split_batches(&bytes).unwrap();
        assert_eq!(batches.len(), 1, "one batch");
        let mut buf = bytes.clone();
        let set = RecordBatchDecoder::decode(&mut buf).unwrap();
        let back: Vec<(Key, Option<Value>)> = set
            .records
            .into_iter()
            .map(|r| {
                let k = Key::decode(r.key.unwrap()).unwrap();
                let v = r.value.and_then(|v| Value::decode(&k, v));
                (k, v)
            })
            .collect();
        assert_eq!(back, entries);
    }
}
