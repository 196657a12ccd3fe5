//! Kafka v2 RecordBatch headers: validation and the few fields the broker patches.
//!
//! Batches are stored exactly as clients sent them, so the broker only ever parses the fixed
//! 61-byte header; the records (possibly compressed) are never decoded on the produce path.
//! Written by hand because `kafka-protocol`'s batch decoder decodes (and decompresses) every
//! record, which is the work this module exists to avoid.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
pub use kafka_protocol::records::Compression;
use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

/// Size of the v2 batch header, up to and including `records_count`.
pub const HEADER_LEN: usize = 61;
/// Bytes before the `batch_length` field's coverage starts (base offset + length).
pub const LOG_OVERHEAD: usize = 12;

const OFF_BASE_OFFSET: usize = 0;
const OFF_LEADER_EPOCH: usize = 12;
const OFF_CRC: usize = 17;
const OFF_ATTRIBUTES: usize = 21;
const OFF_MAX_TIMESTAMP: usize = 35;
/// Producer id (8 bytes), then producer epoch (2) and base sequence (4).
const OFF_PRODUCER_ID: usize = 43;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("record batch is truncated: {0} bytes, header needs {HEADER_LEN}")]
    Truncated(usize),
    #[error("record batch length field says {claimed} bytes but {actual} are present")]
    LengthMismatch { claimed: i64, actual: usize },
    #[error("record batch magic {0} is not supported (only v2 batches are accepted)")]
    UnsupportedMagic(i8),
    #[error("record batch CRC mismatch: header says {expected:#010x}, computed {actual:#010x}")]
    CorruptCrc { expected: u32, actual: u32 },
    #[error("record batch is malformed: {0}")]
    Malformed(&'static str),
    #[error("cannot encode the record batch: {0}")]
    Encode(String),
}

/// A parsed view of one v2 batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Value of the `batch_length` field: bytes after the length field itself.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `buf` without checking the CRC.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Truncated(buf.len()));
        }
        let mut b = buf;
        let h = BatchHeader {
            base_offset: b.get_i64(),
            batch_length: b.get_i32(),
            partition_leader_epoch: b.get_i32(),
            magic: b.get_i8(),
            crc: b.get_u32(),
            attributes: b.get_i16(),
            last_offset_delta: b.get_i32(),
            base_timestamp: b.get_i64(),
            max_timestamp: b.get_i64(),
            producer_id: b.get_i64(),
            producer_epoch: b.get_i16(),
            base_sequence: b.get_i32(),
            records_count: b.get_i32(),
        };
        if h.magic != 2 {
            return Err(BatchError::UnsupportedMagic(h.magic));
        }
        if (h.batch_length as i64) < (HEADER_LEN - LOG_OVERHEAD) as i64 {
            return Err(BatchError::Malformed(
                "batch length shorter than its header",
            ));
        }
        if h.last_offset_delta < 0 || h.records_count < 0 {
            return Err(BatchError::Malformed(
                "negative record count or offset delta",
            ));
        }
        Ok(h)
    }

    /// Total size on the wire / on disk, including base offset and length fields.
    pub fn total_len(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }
    pub fn compression(&self) -> i16 {
        self.attributes & ATTR_COMPRESSION_MASK
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_TIMESTAMP_TYPE != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
}

/// Computes the CRC32C the header's `crc` field must hold (attributes to the end).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[OFF_ATTRIBUTES..])
}

/// Validates one complete batch: header, exact length and CRC32C.
pub fn validate(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(batch)?;
    if h.total_len() != batch.len() {
        return Err(BatchError::LengthMismatch {
            claimed: h.batch_length as i64,
            actual: batch.len().saturating_sub(LOG_OVERHEAD),
        });
    }
    let actual = compute_crc(batch);
    if actual != h.crc {
        return Err(BatchError::CorruptCrc {
            expected: h.crc,
            actual,
        });
    }
    Ok(h)
}

/// Splits a produce request's `records` field into its batches, validating each one.
///
/// Clients send one batch per partition in practice, but the protocol allows several.
pub fn split_batches(records: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    let mut out = Vec::with_capacity(1);
    let mut pos = 0;
    while pos < records.len() {
        let rest = &records[pos..];
        if rest.len() < LOG_OVERHEAD {
            return Err(BatchError::Truncated(rest.len()));
        }
        let len = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        if len < 0 {
            return Err(BatchError::Malformed("negative batch length"));
        }
        let total = len as usize + LOG_OVERHEAD;
        if total > rest.len() {
            return Err(BatchError::LengthMismatch {
                claimed: len as i64,
                actual: rest.len() - LOG_OVERHEAD,
            });
        }
        let bytes = records.slice(pos..pos + total);
        let h = validate(&bytes)?;
        out.push((h, bytes));
        pos += total;
    }
    if out.is_empty() {
        return Err(BatchError::Malformed("no record batch in produce request"));
    }
    Ok(out)
}

/// Splits batches the log already checked (placed in the segments) by their headers alone.
pub fn split_headers(records: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    let mut out = Vec::with_capacity(1);
    let mut pos = 0;
    while pos < records.len() {
        let h = BatchHeader::parse(&records[pos..])?;
        if h.batch_length < 0 {
            return Err(BatchError::Malformed("negative batch length"));
        }
        let total = h.total_len();
        if total > records.len() - pos {
            return Err(BatchError::Malformed("batch length past the entry"));
        }
        out.push((h, records.slice(pos..pos + total)));
        pos += total;
    }
    Ok(out)
}

/// The broker-side fields written into a batch before it is appended.
#[derive(Debug, Clone, Copy)]
pub struct Assign {
    pub base_offset: i64,
    pub leader_epoch: i32,
    /// `Some(now)` for topics with `message.timestamp.type=LogAppendTime`.
    pub log_append_time: Option<i64>,
}

/// Writes the broker-assigned base offset and leader epoch (and, for LogAppendTime, the
/// timestamp type and max timestamp), recomputing the CRC only when covered bytes changed.
/// The base offset and epoch lie outside the CRC's coverage, so the common case costs nothing.
pub fn assign(batch: &Bytes, a: Assign) -> Bytes {
    let header = assign_header(batch, a);
    let mut buf = BytesMut::with_capacity(batch.len());
    buf.extend_from_slice(&header);
    buf.extend_from_slice(&batch[HEADER_LEN..]);
    buf.freeze()
}

/// The batch's header with the broker-assigned fields written in, leaving the records where
/// they are: the append path writes this header and then the client's bytes unchanged, so a
/// batch is never copied in memory. For LogAppendTime the CRC is recomputed over the patched
/// header's tail followed by the untouched records. `batch` must be a validated batch.
pub fn assign_header(batch: &[u8], a: Assign) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&batch[..HEADER_LEN]);
    (&mut h[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8]).put_i64(a.base_offset);
    (&mut h[OFF_LEADER_EPOCH..OFF_LEADER_EPOCH + 4]).put_i32(a.leader_epoch);
    if let Some(ts) = a.log_append_time {
        let attrs = i16::from_be_bytes([h[OFF_ATTRIBUTES], h[OFF_ATTRIBUTES + 1]]);
        (&mut h[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2]).put_i16(attrs | ATTR_TIMESTAMP_TYPE);
        (&mut h[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8]).put_i64(ts);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&h[OFF_ATTRIBUTES..]), &batch[HEADER_LEN..]);
        (&mut h[OFF_CRC..OFF_CRC + 4]).put_u32(crc);
    }
    h
}

/// The batch as an idempotent producer sends it: producer id, epoch and base sequence written
/// in, the CRC recomputed over what they change (tests and the simulation produce such batches;
/// [`encode_batch`] writes none).
pub fn with_producer(batch: &[u8], producer_id: i64, epoch: i16, base_sequence: i32) -> Bytes {
    let mut m = BytesMut::from(batch);
    (&mut m[OFF_PRODUCER_ID..OFF_PRODUCER_ID + 8]).put_i64(producer_id);
    (&mut m[OFF_PRODUCER_ID + 8..OFF_PRODUCER_ID + 10]).put_i16(epoch);
    (&mut m[OFF_PRODUCER_ID + 10..OFF_PRODUCER_ID + 14]).put_i32(base_sequence);
    let crc = compute_crc(&m);
    (&mut m[OFF_CRC..OFF_CRC + 4]).put_u32(crc);
    m.freeze()
}

/// A record as a producer hands it over, for [`encode_batch`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRecord {
    pub key: Option<Bytes>,
    /// `None` is a tombstone.
    pub value: Option<Bytes>,
    pub timestamp: i64,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Encodes records into one v2 batch the way Kafka clients do: base offset 0, no producer id,
/// base sequence -1. Used by the CLI, internal topics, tests and benches.
pub fn encode_batch(records: &[NewRecord], compression: Compression) -> Result<Bytes, BatchError> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever offset - sequence changes; this keeps
            // one batch with base sequence -1 (no idempotence).
            sequence: i as i32 - 1,
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| BatchError::Encode(e.to_string()))?;
    Ok(buf.freeze())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Encodes `n` records with the crate's encoder, as a client would.
    pub fn make_batch(n: usize, value_len: usize, compression: Compression) -> Bytes {
        let records: Vec<NewRecord> = (0..n)
            .map(|i| NewRecord {
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(vec![b'v'; value_len])),
                timestamp: 1_700_000_000_000 + i as i64,
                headers: Vec::new(),
            })
            .collect();
        encode_batch(&records, compression).expect("encode")
    }

    #[test]
    fn validates_client_batches_for_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = make_batch(10, 100, c);
            let h = validate(&b).expect("valid");
            assert_eq!(h.records_count, 10);
            assert_eq!(h.last_offset_delta, 9);
            assert_eq!(h.total_len(), b.len());
        }
    }

    #[test]
    fn rejects_corruption_and_truncation() {
        let b = make_batch(3, 10, Compression::None);
        let mut bad = BytesMut::from(&b[..]);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(matches!(validate(&bad), Err(BatchError::CorruptCrc { .. })));
        assert!(matches!(validate(&b[..30]), Err(BatchError::Truncated(30))));
        assert!(matches!(
            split_batches(&b.slice(..b.len() - 1)),
            Err(BatchError::LengthMismatch { .. })
        ));
        let mut v1 = BytesMut::from(&b[..]);
        v1[16] = 1; // magic
        assert_eq!(validate(&v1), Err(BatchError::UnsupportedMagic(1)));
    }

    #[test]
    fn assign_patches_offsets_and_keeps_crc_valid() {
        let b = make_batch(5, 10, Compression::Lz4);
        let patched = assign(
            &b,
            Assign {
                base_offset: 42,
                leader_epoch: 7,
                log_append_time: None,
            },
        );
        let h = validate(&patched).unwrap();
        assert_eq!(
            (h.base_offset, h.partition_leader_epoch, h.last_offset()),
            (42, 7, 46)
        );
        let lat = assign(
            &b,
            Assign {
                base_offset: 1,
                leader_epoch: 0,
                log_append_time: Some(99),
            },
        );
        let h = validate(&lat).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 99);
    }

    #[test]
    fn splits_several_batches() {
        let a = make_batch(2, 5, Compression::None);
        let b = make_batch(3, 5, Compression::Gzip);
        let mut both = BytesMut::new();
        both.extend_from_slice(&a);
        both.extend_from_slice(&b);
        let parts = split_batches(&both.freeze()).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].0.records_count, 3);
    }
}
