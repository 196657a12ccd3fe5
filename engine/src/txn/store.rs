//! Durable transaction state: one record per transactional id in the internal topic
//! `__transaction_state` (the latest wins, so the topic is compactable).
//!
//! Encoding (big-endian; strings are a u16 length and UTF-8 bytes):
//!
//! ```text
//! key   = kind:u8 transactional_id:str        kind 0 = transaction (kind 1: a new leader's marker)
//! value = version:u8(0|1) producer_id:i64 last_producer_id:i64 epoch:i16 last_epoch:i16
//!         timeout_ms:i32 state:u8 partition_count:i32 (topic:str partition:i32)*
//!         start_ms:i64 update_ms:i64
//!         [version 1: next_producer_id:i64 client_version:u8]
//! ```
//!
//! `state` is [`TxnState::code`], `client_version` [`TxnVersion::level`]. A null value is a
//! tombstone: the transactional id is gone. Version 1 is written only for transaction
//! protocol v2 transactions, which exist only once the cluster finalized `transaction.version`
//! 2, that is once every broker reads it; the others stay version 0, as an earlier release
//! writes and reads them.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::state::{TxnMeta, TxnState, TxnVersion, NO_PRODUCER_ID};
use crate::internal_topic::{InternalTopic, InternalTopicError, TopicHost};
use crate::log::batch::NewRecord;
use crate::topics::Topic;
pub use crate::topics::TRANSACTIONS_TOPIC;

const KIND_TXN: u8 = 0;
/// Written by a new coordinator ([`barrier`]); carries nothing.
const KIND_BARRIER: u8 = 1;
/// Transaction protocol v1 records (what an earlier release reads).
const VERSION: u8 = 0;
/// With the next producer id and the client's transaction version (protocol v2).
const VERSION_TV2: u8 = 1;

/// Why `__transaction_state` could not be created, written or read.
pub type StoreError = InternalTopicError;

/// `__transaction_state`: one partition on a single node, as many as `__consumer_offsets` has
/// by default in a cluster; RF = min(3, brokers) and min.insync.replicas = min(2, RF) there.
pub const TRANSACTIONS: InternalTopic = InternalTopic {
    name: TRANSACTIONS_TOPIC,
    partitions: (1, crate::group::store::CLUSTER_PARTITIONS),
};

/// The partition that holds a transactional id: Kafka's `abs(hashCode) % partitions`, the same
/// hash as groups.
pub fn partition_for(txn_id: &str, partitions: usize) -> i32 {
    crate::group::store::partition_for(txn_id, partitions)
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

/// The key of a transactional id's record.
pub fn encode_key(txn_id: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(KIND_TXN);
    put_str(&mut b, txn_id);
    b.freeze()
}

/// The transactional id of a key; `None` for a barrier or anything unknown.
pub fn decode_key(mut b: Bytes) -> Option<String> {
    if !b.has_remaining() || b.get_u8() != KIND_TXN {
        return None;
    }
    get_str(&mut b)
}

pub fn encode_value(m: &TxnMeta) -> Bytes {
    let mut b = BytesMut::new();
    let tv2 = m.version != TxnVersion::V1 || m.next_producer_id != NO_PRODUCER_ID;
    b.put_u8(if tv2 { VERSION_TV2 } else { VERSION });
    b.put_i64(m.producer_id);
    b.put_i64(m.last_producer_id);
    b.put_i16(m.epoch);
    b.put_i16(m.last_epoch);
    b.put_i32(m.timeout_ms);
    b.put_u8(m.state.code());
    b.put_i32(m.partitions.len() as i32);
    for (topic, p) in &m.partitions {
        put_str(&mut b, topic);
        b.put_i32(*p);
    }
    b.put_i64(m.start_ms);
    b.put_i64(m.update_ms);
    if tv2 {
        b.put_i64(m.next_producer_id);
        b.put_u8(m.version.level());
    }
    b.freeze()
}

/// A value; `None` when damaged or of an unknown version (replay skips it).
pub fn decode_value(mut b: Bytes) -> Option<TxnMeta> {
    if b.remaining() < 1 + 8 + 8 + 2 + 2 + 4 + 1 + 4 {
        return None;
    }
    let version = b.get_u8();
    if version != VERSION && version != VERSION_TV2 {
        return None;
    }
    let producer_id = b.get_i64();
    let last_producer_id = b.get_i64();
    let epoch = b.get_i16();
    let last_epoch = b.get_i16();
    let timeout_ms = b.get_i32();
    let state = TxnState::from_code(b.get_u8())?;
    let n = usize::try_from(b.get_i32()).ok()?;
    // Each partition takes at least 6 bytes: a damaged count cannot make us allocate wildly.
    if n.saturating_mul(6) > b.remaining() {
        return None;
    }
    let mut partitions = BTreeSet::new();
    for _ in 0..n {
        let topic = get_str(&mut b)?;
        if b.remaining() < 4 {
            return None;
        }
        partitions.insert((topic, b.get_i32()));
    }
    if b.remaining() < 16 {
        return None;
    }
    let (start_ms, update_ms) = (b.get_i64(), b.get_i64());
    let (next_producer_id, client_version) = if version == VERSION_TV2 {
        if b.remaining() < 9 {
            return None;
        }
        (b.get_i64(), TxnVersion::from_level(b.get_u8())?)
    } else {
        (NO_PRODUCER_ID, TxnVersion::V1)
    };
    Some(TxnMeta {
        producer_id,
        last_producer_id,
        epoch,
        last_epoch,
        timeout_ms,
        state,
        partitions,
        start_ms,
        update_ms,
        next_producer_id,
        version: client_version,
    })
}

fn record(txn_id: &str, m: Option<&TxnMeta>, now: i64) -> NewRecord {
    NewRecord {
        key: Some(encode_key(txn_id)),
        value: m.map(encode_value),
        timestamp: now,
        headers: Vec::new(),
    }
}

/// `__transaction_state`, created on first use.
pub async fn topic(b: &dyn TopicHost) -> Result<Arc<Topic>, StoreError> {
    TRANSACTIONS.topic(b).await
}

/// Appends the record of `txn_id` (`None`: a tombstone) to its partition and waits until it is
/// committed (acks=all).
pub async fn append(
    b: &dyn TopicHost,
    txn_id: &str,
    m: Option<&TxnMeta>,
) -> Result<(), StoreError> {
    let t = topic(b).await?;
    let p = partition_for(txn_id, t.partitions.len());
    TRANSACTIONS
        .append(b, p, &[record(txn_id, m, b.now_ms())])
        .await?;
    Ok(())
}

/// Writes a record replay skips and waits until it is committed: on a new Raft leader, entries
/// of earlier terms are only known committed (and applied) once one of its own term is.
pub async fn barrier(b: &dyn TopicHost, partition: i32) -> Result<(), StoreError> {
    let marker = NewRecord {
        key: Some(Bytes::from_static(&[KIND_BARRIER])),
        value: None,
        timestamp: b.now_ms(),
        headers: Vec::new(),
    };
    TRANSACTIONS.append(b, partition, &[marker]).await?;
    Ok(())
}

/// Reads every record of partition `p` up to the high watermark, in order: the transactional
/// id and its state (`None`: a tombstone). Damaged values are skipped.
pub async fn replay(
    b: &dyn TopicHost,
    p: i32,
    mut apply: impl FnMut(String, Option<TxnMeta>),
) -> Result<(), StoreError> {
    TRANSACTIONS
        .replay(b, p, |r| {
            let Some(id) = r.key.and_then(decode_key) else {
                return;
            };
            match r.value {
                None => apply(id, None),
                Some(v) => match decode_value(v) {
                    Some(m) => apply(id, Some(m)),
                    None => tracing::warn!(transactional_id = %id, "a damaged transaction record skipped"),
                },
            }
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> TxnMeta {
        TxnMeta {
            producer_id: 4000,
            last_producer_id: 17,
            epoch: 3,
            last_epoch: 2,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [
                ("orders".to_string(), 0),
                ("__consumer_offsets".to_string(), 5),
            ]
            .into_iter()
            .collect(),
            start_ms: 1_700_000_000_000,
            update_ms: 1_700_000_000_500,
            next_producer_id: NO_PRODUCER_ID,
            version: TxnVersion::V1,
        }
    }

    #[test]
    fn a_record_round_trips() {
        assert_eq!(decode_key(encode_key("tx-1")).as_deref(), Some("tx-1"));
        let m = meta();
        assert_eq!(decode_value(encode_value(&m)), Some(m));
        for state in TxnState::ALL {
            let m = TxnMeta {
                state,
                partitions: BTreeSet::new(),
                ..meta()
            };
            assert_eq!(decode_value(encode_value(&m)), Some(m));
        }
    }

    #[test]
    fn a_v2_record_round_trips_and_a_v1_one_keeps_the_earlier_format() {
        let v1 = encode_value(&meta());
        assert_eq!(v1[0], VERSION);
        let m = TxnMeta {
            state: TxnState::PrepareCommit,
            next_producer_id: 4001,
            version: TxnVersion::V2,
            ..meta()
        };
        let v = encode_value(&m);
        assert_eq!((v[0], v.len()), (VERSION_TV2, v1.len() + 9));
        assert_eq!(decode_value(v.clone()), Some(m));
        for cut in 0..v.len() {
            assert_eq!(decode_value(v.slice(..cut)), None, "cut at {cut}");
        }
    }

    #[test]
    fn barriers_and_damaged_values_are_skipped() {
        assert_eq!(decode_key(Bytes::from_static(&[KIND_BARRIER])), None);
        assert_eq!(decode_key(Bytes::new()), None);
        let v = encode_value(&meta());
        for cut in 0..v.len() {
            assert_eq!(decode_value(v.slice(..cut)), None, "cut at {cut}");
        }
        let mut newer = BytesMut::from(&v[..]);
        newer[0] = 9;
        assert_eq!(decode_value(newer.freeze()), None);
        // A partition count far beyond the bytes left.
        let mut huge = BytesMut::from(&v[..]);
        huge[26..30].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(decode_value(huge.freeze()), None);
    }

    #[test]
    fn ids_land_where_kafka_puts_them() {
        // Java: "hello".hashCode() % 50 == 22, as for groups.
        assert_eq!(partition_for("hello", 50), 22);
        assert_eq!(partition_for("anything", 1), 0);
    }
}
