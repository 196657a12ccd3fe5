//! Durable group state: keyed records in the internal topic `__consumer_offsets`.
//!
//! Encoding (big-endian; strings are a u16 length and UTF-8 bytes):
//!
//! ```text
//! key   = kind:u8 group:str [topic:str partition:i32]     kind 0 = offset, 1 = group,
//!                                                          3 = consumer group (KIP-848)
//!                                                          (kind 2: a new leader's marker)
//! offset value = version:u8(0) offset:i64 leader_epoch:i32 commit_timestamp:i64
//!                metadata_len:i32 (-1 = null) metadata bytes
//! group value  = version:u8(1) protocol_type:str generation:i32 protocol:nstr leader:nstr
//!                member_count:i32 member*
//! member       = id:str instance_id:nstr client_id:str client_host:str session_ms:i32
//!                rebalance_ms:i32 protocol_count:i32 (name:str metadata:bytes)* assignment:bytes
//! consumer group value = version:u8(0) JSON (a KIP-848 group, [`super::consumer_record`])
//! ```
//!
//! `nstr` is an i16 length (-1 = null) and UTF-8 bytes, `bytes` an i32 length and bytes. A
//! group value of version 0 (`protocol_type:str generation:i32`, written by earlier releases)
//! still decodes, as a group without members.
//!
//! The group value is written when a generation's assignment is stored (the leader's SyncGroup,
//! answered only once the record is committed) and when the group becomes empty, as Kafka's
//! GroupMetadataValue: a new coordinator restores the members of a stable group with their
//! assignments, so they keep consuming without a rebalance.
//!
//! A null value is a tombstone: the offset (OffsetDelete) or the group (DeleteGroups) is gone.
//! The latest record per key wins, so the topic is compactable.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use std::sync::Arc;

use crate::internal_topic::TopicHost;
use crate::internal_topic::{InternalTopic, InternalTopicError};
use crate::log::batch::NewRecord;
use crate::partition::{PartitionError, PartitionHandle};

use crate::topics::Topic;
pub use crate::topics::OFFSETS_TOPIC;

const KIND_OFFSET: u8 = 0;
const KIND_GROUP: u8 = 1;
/// Written by a new coordinator ([`barrier`]); carries nothing.
const KIND_BARRIER: u8 = 2;
const KIND_CONSUMER: u8 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group(String),
    /// A KIP-848 consumer group's state.
    Consumer(String),
}

/// A committed offset; `log_offset` is where it sits in `__consumer_offsets`, so that a
/// late-applied older commit never overwrites a newer one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetEntry {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp: i64,
    pub log_offset: i64,
}

impl OffsetEntry {
    /// The entry for a commit record stored at `log_offset` of `__consumer_offsets`.
    pub fn stored(v: OffsetValue, log_offset: i64) -> Self {
        OffsetEntry {
            offset: v.offset,
            leader_epoch: v.leader_epoch,
            metadata: v.metadata,
            commit_timestamp: v.commit_timestamp,
            log_offset,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub commit_timestamp: i64,
    pub metadata: Option<String>,
}

/// A classic group as stored: its generation and, once the generation's assignment was
/// stored, its members with their assignments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<MemberValue>,
}

/// One classic member of a stored group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Offset(OffsetValue),
    Group(GroupValue),
    Consumer(super::consumer_record::GroupRecord),
}

fn put_str(b: &mut BytesMut, s: &str) {
    let s = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    b.put_u16(s.len() as u16);
    b.put_slice(s);
}

fn put_nstr(b: &mut BytesMut, s: Option<&str>) {
    match s {
        None => b.put_i16(-1),
        Some(s) => {
            let s = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
            b.put_i16(s.len() as i16);
            b.put_slice(s);
        }
    }
}

fn get_nstr(b: &mut Bytes) -> Option<Option<String>> {
    if b.remaining() < 2 {
        return None;
    }
    let n = b.get_i16();
    if n < 0 {
        return Some(None);
    }
    let n = n as usize;
    if b.remaining() < n {
        return None;
    }
    String::from_utf8(b.split_to(n).to_vec()).ok().map(Some)
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

fn get_bytes(b: &mut Bytes) -> Option<Bytes> {
    if b.remaining() < 4 {
        return None;
    }
    let n = usize::try_from(b.get_i32()).ok()?;
    (b.remaining() >= n).then(|| b.split_to(n))
}

fn get_i32(b: &mut Bytes) -> Option<i32> {
    (b.remaining() >= 4).then(|| b.get_i32())
}

/// A count read from the wire, refused when it claims more items than bytes remain (each item
/// takes at least `min_item` bytes), so a damaged record cannot make replay allocate wildly.
fn get_count(b: &mut Bytes, min_item: usize) -> Option<usize> {
    let n = usize::try_from(get_i32(b)?).ok()?;
    (n.saturating_mul(min_item) <= b.remaining()).then_some(n)
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
            Key::Consumer(group) => {
                b.put_u8(KIND_CONSUMER);
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
            KIND_CONSUMER => Some(Key::Consumer(get_str(&mut b)?)),
            _ => None,
        }
    }

    pub fn group(&self) -> &str {
        match self {
            Key::Offset { group, .. } | Key::Group(group) | Key::Consumer(group) => group,
        }
    }
}

impl GroupValue {
    fn encode_into(&self, b: &mut BytesMut) {
        put_str(b, &self.protocol_type);
        b.put_i32(self.generation);
        put_nstr(b, self.protocol_name.as_deref());
        put_nstr(b, self.leader.as_deref());
        b.put_i32(self.members.len() as i32);
        for m in &self.members {
            put_str(b, &m.id);
            put_nstr(b, m.instance_id.as_deref());
            put_str(b, &m.client_id);
            put_str(b, &m.client_host);
            b.put_i32(m.session_timeout_ms);
            b.put_i32(m.rebalance_timeout_ms);
            b.put_i32(m.protocols.len() as i32);
            for (name, meta) in &m.protocols {
                put_str(b, name);
                put_bytes(b, meta);
            }
            put_bytes(b, &m.assignment);
        }
    }

    fn decode_from(version: u8, b: &mut Bytes) -> Option<GroupValue> {
        let protocol_type = get_str(b)?;
        let generation = get_i32(b)?;
        if version == 0 {
            return Some(GroupValue {
                protocol_type,
                generation,
                ..Default::default()
            });
        }
        let protocol_name = get_nstr(b)?;
        let leader = get_nstr(b)?;
        let count = get_count(b, 2 + 2 + 2 + 2 + 4 + 4 + 4 + 4)?;
        let mut members = Vec::with_capacity(count);
        for _ in 0..count {
            let id = get_str(b)?;
            let instance_id = get_nstr(b)?;
            let client_id = get_str(b)?;
            let client_host = get_str(b)?;
            let session_timeout_ms = get_i32(b)?;
            let rebalance_timeout_ms = get_i32(b)?;
            let n = get_count(b, 2 + 4)?;
            let mut protocols = Vec::with_capacity(n);
            for _ in 0..n {
                protocols.push((get_str(b)?, get_bytes(b)?));
            }
            let assignment = get_bytes(b)?;
            members.push(MemberValue {
                id,
                instance_id,
                client_id,
                client_host,
                session_timeout_ms,
                rebalance_timeout_ms,
                protocols,
                assignment,
            });
        }
        Some(GroupValue {
            protocol_type,
            generation,
            protocol_name,
            leader,
            members,
        })
    }
}

impl Value {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            Value::Offset(o) => {
                b.put_u8(0);
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
                b.put_u8(1);
                g.encode_into(&mut b);
            }
            Value::Consumer(c) => return c.encode(),
        }
        b.freeze()
    }

    /// Decodes the value that goes with `key`.
    pub fn decode(key: &Key, mut b: Bytes) -> Option<Value> {
        if !b.has_remaining() {
            return None;
        }
        if let Key::Consumer(_) = key {
            return super::consumer_record::GroupRecord::decode(&b).map(Value::Consumer);
        }
        let version = b.get_u8();
        match key {
            Key::Offset { .. } => {
                if version != 0 {
                    return None;
                }
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
            Key::Group(_) if version <= 1 => {
                GroupValue::decode_from(version, &mut b).map(Value::Group)
            }
            Key::Group(_) | Key::Consumer(_) => None,
        }
    }
}

/// Keyed records (None = tombstone), as they are appended.
fn records(entries: &[(Key, Option<Value>)], now: i64) -> Vec<NewRecord> {
    entries
        .iter()
        .map(|(k, v)| NewRecord {
            key: Some(k.encode()),
            value: v.as_ref().map(Value::encode),
            timestamp: now,
            headers: Vec::new(),
        })
        .collect()
}

/// Encodes keyed records (None = tombstone) as one uncompressed v2 batch.
#[cfg(test)]
fn encode_batch(entries: &[(Key, Option<Value>)]) -> Result<Bytes, crate::log::batch::BatchError> {
    crate::log::batch::encode_batch(
        &records(entries, crate::time::now_ms()),
        crate::log::batch::Compression::None,
    )
}

/// Why `__consumer_offsets` could not be created, written or read.
pub type StoreError = InternalTopicError;

/// Partitions of `__consumer_offsets` in a cluster (Kafka's `offsets.topic.num.partitions`,
/// whose default is 50): groups are spread over them by [`partition_for`], and each
/// partition's Raft leader coordinates its groups, so group traffic is spread over brokers. A
/// few suffice for a few brokers; each is a Raft group of its own. `--offsets-topic-partitions`
/// sets another count for a new cluster.
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

/// `__consumer_offsets`: one partition on a single node (every group has the same
/// coordinator, so more would buy nothing), [`CLUSTER_PARTITIONS`] in a cluster, RF =
/// min(3, brokers) and min.insync.replicas = min(2, RF) there.
pub const OFFSETS: InternalTopic = InternalTopic {
    name: OFFSETS_TOPIC,
    partitions: (1, CLUSTER_PARTITIONS),
};

/// `__consumer_offsets`, created on first use.
pub async fn topic(b: &dyn TopicHost) -> Result<Arc<Topic>, StoreError> {
    OFFSETS.topic(b).await
}

/// The partition of `__consumer_offsets` that holds `group`, created on first use.
pub async fn partition(b: &dyn TopicHost, group: &str) -> Result<PartitionHandle, StoreError> {
    let t = topic(b).await?;
    OFFSETS
        .partition(b, partition_for(group, t.partitions.len()))
        .await
}

/// Writes a record replay skips and waits until it is committed: on a new Raft leader, entries
/// of earlier terms are only known committed (and applied) once one of its own term is.
pub async fn barrier(b: &dyn TopicHost, partition: i32) -> Result<(), StoreError> {
    let marker = NewRecord {
        // A key kind `Key::decode` does not know: replay skips it.
        key: Some(Bytes::from_static(&[KIND_BARRIER])),
        value: None,
        timestamp: b.now_ms(),
        headers: Vec::new(),
    };
    OFFSETS.append(b, partition, &[marker]).await?;
    Ok(())
}

/// Sends records to the partition; the receiver answers once they are committed (acks=all).
pub fn send(
    p: &PartitionHandle,
    entries: &[(Key, Option<Value>)],
    now_ms: i64,
) -> tokio::sync::oneshot::Receiver<Result<crate::partition::ProduceOk, PartitionError>> {
    OFFSETS.send(p, &records(entries, now_ms))
}

/// Appends records of `group` to its partition and waits until they are committed; returns
/// the first record's offset.
pub async fn append(
    b: &dyn TopicHost,
    group: &str,
    entries: &[(Key, Option<Value>)],
) -> Result<i64, StoreError> {
    let t = topic(b).await?;
    let p = partition_for(group, t.partitions.len());
    Ok(OFFSETS
        .append(b, p, &records(entries, b.now_ms()))
        .await?
        .base_offset)
}

/// Appends offset records of `group` as ONE transactional batch of `producer_id` at
/// `producer_epoch` (TxnOffsetCommit) and waits until it is committed; returns the partition
/// of `__consumer_offsets` it went to and the first record's offset.
pub async fn append_txn(
    b: &dyn TopicHost,
    group: &str,
    entries: &[(Key, Option<Value>)],
    producer_id: i64,
    producer_epoch: i16,
) -> Result<(i32, i64), StoreError> {
    let t = topic(b).await?;
    let p = partition_for(group, t.partitions.len());
    let bytes = crate::log::control::encode_transactional(
        &records(entries, b.now_ms()),
        producer_id,
        producer_epoch,
    )
    .map_err(|e| InternalTopicError::Append {
        topic: OFFSETS_TOPIC,
        source: PartitionError::Storage(std::io::Error::other(e.to_string())),
    })?;
    Ok((p, OFFSETS.append_batch(b, p, &bytes).await?.base_offset))
}

/// One entry of `__consumer_offsets` as a replay sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replayed {
    /// A keyed record at `log_offset`; `producer_id` when it belongs to a transaction (a
    /// transactional offset commit), which counts only once its commit marker follows.
    Record {
        log_offset: i64,
        producer_id: Option<i64>,
        key: Key,
        value: Option<Value>,
    },
    /// A transaction marker: the end of that producer's transaction in this partition.
    Marker { producer_id: i64, commit: bool },
}

impl Replayed {
    /// What a stored record is to the coordinator (`None`: nothing it knows, such as a
    /// [`barrier`] or a control record that is not a transaction marker).
    pub fn from_record(r: kafka_protocol::records::Record) -> Option<Replayed> {
        if r.control {
            // A marker's key is `version:i16 type:i16` (0 abort, 1 commit).
            let key = r.key?;
            if key.len() < 4 {
                return None;
            }
            let commit = match i16::from_be_bytes([key[2], key[3]]) {
                0 => false,
                1 => true,
                _ => return None,
            };
            return Some(Replayed::Marker {
                producer_id: r.producer_id,
                commit,
            });
        }
        let key = r.key.and_then(Key::decode)?;
        let value = r.value.and_then(|v| Value::decode(&key, v));
        Some(Replayed::Record {
            log_offset: r.offset,
            producer_id: r.transactional.then_some(r.producer_id),
            key,
            value,
        })
    }
}

/// Reads every record and transaction marker of partition `p` of `__consumer_offsets` up to
/// the high watermark, in order.
pub async fn replay(
    b: &dyn TopicHost,
    p: i32,
    mut apply: impl FnMut(Replayed),
) -> Result<(), StoreError> {
    OFFSETS
        .replay_with_control(b, p, |r| {
            if let Some(r) = Replayed::from_record(r) {
                apply(r);
            }
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::split_batches;
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
    fn a_group_value_of_the_previous_release_decodes_without_members() {
        // version 0: protocol_type:str generation:i32
        let mut v0 = BytesMut::new();
        v0.put_u8(0);
        put_str(&mut v0, "consumer");
        v0.put_i32(7);
        let key = Key::Group("g".into());
        assert_eq!(
            Value::decode(&key, v0.freeze()),
            Some(Value::Group(GroupValue {
                protocol_type: "consumer".into(),
                generation: 7,
                ..Default::default()
            }))
        );
    }

    #[test]
    fn a_damaged_group_value_is_skipped_not_trusted() {
        let key = Key::Group("g".into());
        let full = Value::Group(GroupValue {
            protocol_type: "consumer".into(),
            generation: 1,
            protocol_name: Some("range".into()),
            leader: Some("m".into()),
            members: vec![MemberValue {
                id: "m".into(),
                instance_id: Some("i".into()),
                client_id: "c".into(),
                client_host: "h".into(),
                session_timeout_ms: 10,
                rebalance_timeout_ms: 10,
                protocols: vec![("range".into(), Bytes::from_static(b"x"))],
                assignment: Bytes::from_static(b"y"),
            }],
        })
        .encode();
        // Every truncation fails to decode instead of yielding a partial member.
        for cut in 1..full.len() {
            assert_eq!(Value::decode(&key, full.slice(..cut)), None, "cut at {cut}");
        }
        // A member count far beyond the bytes present is refused before allocating.
        let mut lying = BytesMut::new();
        lying.put_u8(1);
        put_str(&mut lying, "consumer");
        lying.put_i32(1);
        put_nstr(&mut lying, None);
        put_nstr(&mut lying, None);
        lying.put_i32(i32::MAX);
        assert_eq!(Value::decode(&key, lying.freeze()), None);
        // An unknown future version is not guessed at.
        let mut v9 = BytesMut::new();
        v9.put_u8(9);
        assert_eq!(Value::decode(&key, v9.freeze()), None);
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
                    protocol_name: Some("range".into()),
                    leader: Some("m-1".into()),
                    members: vec![MemberValue {
                        id: "m-1".into(),
                        instance_id: None,
                        client_id: "c".into(),
                        client_host: "/127.0.0.1".into(),
                        session_timeout_ms: 6000,
                        rebalance_timeout_ms: 300_000,
                        protocols: vec![
                            ("range".into(), Bytes::from_static(b"sub")),
                            ("roundrobin".into(), Bytes::new()),
                        ],
                        assignment: Bytes::from_static(b"assigned"),
                    }],
                })),
            ),
            (
                Key::Group("empty".into()),
                Some(Value::Group(GroupValue {
                    protocol_type: "consumer".into(),
                    generation: 6,
                    ..Default::default()
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
