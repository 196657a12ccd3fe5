//! Transaction control batches (Kafka's `EndTransactionMarker`): the commit or abort marker a
//! transaction coordinator has written to every partition of a transaction, and the
//! transactional batches the broker writes itself (a transaction's consumer offsets).
//!
//! A marker is a batch with the transactional and control attributes, the transaction's
//! producer id and epoch, base sequence -1 and one record whose key is `version:i16 (0)
//! type:i16` (0 abort, 1 commit) and whose value is `version:i16 (0) coordinator_epoch:i32`.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::batch::{BatchError, BatchHeader, NewRecord};

/// What a marker ends a transaction with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ControlType {
    Abort,
    Commit,
}

impl ControlType {
    pub fn from_commit(commit: bool) -> Self {
        if commit {
            ControlType::Commit
        } else {
            ControlType::Abort
        }
    }
    pub fn is_commit(self) -> bool {
        self == ControlType::Commit
    }
}

/// Encodes a marker batch (base offset 0) for `producer_id` at `producer_epoch`.
pub fn encode_marker(
    producer_id: i64,
    producer_epoch: i16,
    control: ControlType,
    coordinator_epoch: i32,
    timestamp_ms: i64,
) -> Bytes {
    let mut key = BytesMut::with_capacity(4);
    key.put_i16(0);
    key.put_i16(match control {
        ControlType::Abort => 0,
        ControlType::Commit => 1,
    });
    let mut value = BytesMut::with_capacity(6);
    value.put_i16(0);
    value.put_i32(coordinator_epoch);
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id,
        producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: timestamp_ms,
        key: Some(key.freeze()),
        value: Some(value.freeze()),
        headers: Default::default(),
    };
    encode(&[record]).expect("a marker always encodes")
}

/// Encodes records as one transactional batch of `producer_id` at `producer_epoch`, base
/// sequence -1 (the broker's own transactional writes are never deduplicated by sequence).
pub fn encode_transactional(
    records: &[NewRecord],
    producer_id: i64,
    producer_epoch: i16,
) -> Result<Bytes, BatchError> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // One batch with base sequence -1 (see `batch::encode_batch`).
            sequence: i as i32 - 1,
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        kafka_protocol::protocol::StrBytes::from_string(k.clone()),
                        v.clone(),
                    )
                })
                .collect(),
        })
        .collect();
    encode(&records)
}

fn encode(records: &[Record]) -> Result<Bytes, BatchError> {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| BatchError::Encode(e.to_string()))?;
    Ok(buf.freeze())
}

/// What a marker batch says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndMarker {
    pub control: ControlType,
    /// -1 when the value does not carry one.
    pub coordinator_epoch: i32,
}

/// The marker of a control batch (`None`: not a control batch, or one whose key is not a
/// transaction marker, which the broker skips as Kafka does unknown control types).
pub fn end_marker(h: &BatchHeader, batch: &Bytes) -> Option<EndMarker> {
    if !h.is_control() || h.compression() != 0 {
        return None;
    }
    let mut buf = batch.clone();
    let set = RecordBatchDecoder::decode(&mut buf).ok()?;
    let record = set.records.first()?;
    let key = record.key.as_ref()?;
    if key.len() < 4 {
        return None;
    }
    let control = match i16::from_be_bytes([key[2], key[3]]) {
        0 => ControlType::Abort,
        1 => ControlType::Commit,
        _ => return None,
    };
    let coordinator_epoch = record
        .value
        .as_ref()
        .filter(|v| v.len() >= 6)
        .map_or(-1, |v| i32::from_be_bytes([v[2], v[3], v[4], v[5]]));
    Some(EndMarker {
        control,
        coordinator_epoch,
    })
}

/// The marker type of a control batch (see [`end_marker`]).
pub fn marker_type(h: &BatchHeader, batch: &Bytes) -> Option<ControlType> {
    end_marker(h, batch).map(|m| m.control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_through_their_header() {
        for t in [ControlType::Abort, ControlType::Commit] {
            let b = encode_marker(42, 3, t, 7, 1000);
            let h = super::super::batch::validate(&b).unwrap();
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (42, 3, -1)
            );
            assert_eq!(h.records_count, 1);
            assert_eq!(marker_type(&h, &b), Some(t));
            assert_eq!(end_marker(&h, &b).unwrap().coordinator_epoch, 7);
        }
        let data = encode_transactional(
            &[NewRecord {
                key: Some(Bytes::from_static(b"k")),
                value: Some(Bytes::from_static(b"v")),
                timestamp: 5,
                headers: vec![],
            }],
            9,
            1,
        )
        .unwrap();
        let h = super::super::batch::validate(&data).unwrap();
        assert!(h.is_transactional() && !h.is_control());
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (9, 1, -1)
        );
        assert_eq!(marker_type(&h, &data), None);
    }
}
