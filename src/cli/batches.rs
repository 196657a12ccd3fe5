//! Splitting a fetched `records` field into whole v2 record batches and decoding them
//! without trusting the broker's numbers further than the bytes we hold.

use anyhow::{bail, Result};
use bytes::{Buf, Bytes};
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder};

/// Offset + length prefix of every batch.
const LOG_OVERHEAD: usize = 12;
/// Bytes of a v2 batch header after the length field.
const V2_HEADER_AFTER_LENGTH: usize = 49;
const MAGIC_AT: usize = 16;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const RECORD_COUNT_AT: usize = 57;
/// Most records a compressed batch may claim (the decoder reserves room for all of them).
const MAX_COMPRESSED_RECORDS: i32 = 1_000_000;

/// One complete batch as fetched.
#[derive(Debug, Clone)]
pub struct RawBatch {
    pub bytes: Bytes,
    pub base_offset: i64,
    pub last_offset: i64,
}

/// Whole batches at the front of `data`; a trailing partial batch (the broker cut the
/// answer at max bytes) is left out.
pub fn split(mut data: Bytes) -> Result<Vec<RawBatch>> {
    let mut out = Vec::new();
    while data.len() >= LOG_OVERHEAD {
        let mut head = &data[..LOG_OVERHEAD];
        let base_offset = head.get_i64();
        let length = head.get_i32();
        let Ok(length) = usize::try_from(length) else {
            bail!("record batch at offset {base_offset} has negative length {length}");
        };
        let total = LOG_OVERHEAD + length;
        if data.len() < total {
            break;
        }
        let bytes = data.split_to(total);
        let magic = bytes.get(MAGIC_AT).copied().unwrap_or(0) as i8;
        if magic != 2 {
            bail!("record batch at offset {base_offset} uses message format v{magic}, which this CLI cannot read");
        }
        if length < V2_HEADER_AFTER_LENGTH {
            bail!(
                "record batch at offset {base_offset} is {length} bytes, shorter than its header"
            );
        }
        let at = |i: usize| {
            let mut b = &bytes[i..i + 4];
            b.get_i32()
        };
        let attributes = i16::from_be_bytes([bytes[ATTRIBUTES_AT], bytes[ATTRIBUTES_AT + 1]]);
        let count = at(RECORD_COUNT_AT);
        let max = if attributes & 0x7 == Compression::None as i16 {
            i32::try_from(length).unwrap_or(i32::MAX)
        } else {
            MAX_COMPRESSED_RECORDS
        };
        if !(0..=max).contains(&count) {
            bail!("record batch at offset {base_offset} claims {count} records");
        }
        let last_offset = base_offset.saturating_add(i64::from(at(LAST_OFFSET_DELTA_AT)));
        out.push(RawBatch {
            bytes,
            base_offset,
            last_offset,
        });
    }
    Ok(out)
}

/// The records of one batch.
pub fn decode(batch: &RawBatch) -> Result<Vec<Record>> {
    let mut bytes = batch.bytes.clone();
    match RecordBatchDecoder::decode(&mut bytes) {
        Ok(set) => Ok(set.records),
        Err(e) => bail!(
            "cannot decode the record batch at offset {} ({})",
            batch.base_offset,
            super::errors::one_line(&e.to_string())
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::records::{RecordBatchEncoder, RecordEncodeOptions, TimestampType};

    fn batch(base: i64, n: usize) -> Bytes {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: base + i as i64,
                sequence: i as i32 - 1,
                timestamp: 1_700_000_000_000,
                key: None,
                value: Some(Bytes::from(format!("v{i}"))),
                headers: IndexMap::new(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .expect("encode");
        buf.freeze()
    }

    #[test]
    fn splits_whole_batches_and_drops_a_partial_tail() {
        let mut data = BytesMut::new();
        data.extend_from_slice(&batch(10, 3));
        data.extend_from_slice(&batch(13, 2));
        let second = batch(15, 1);
        data.extend_from_slice(&second[..second.len() - 5]);
        let got = split(data.freeze()).expect("split");
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].base_offset, got[0].last_offset), (10, 12));
        assert_eq!((got[1].base_offset, got[1].last_offset), (13, 14));
        let recs = decode(&got[1]).expect("decode");
        assert_eq!(
            recs.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![13, 14]
        );
    }

    #[test]
    fn rejects_lies_without_panicking() {
        // Claimed record count far beyond the bytes.
        let mut b = BytesMut::from(&batch(0, 1)[..]);
        b[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(split(b.freeze()).is_err());
        // Negative length.
        let mut b = BytesMut::from(&batch(0, 1)[..]);
        b[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(split(b.freeze()).is_err());
        // Too short for a header.
        let mut b = BytesMut::new();
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&10i32.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, 0, 2, 0, 0, 0, 0, 0]);
        assert!(split(b.freeze()).is_err());
        // Corrupted payload fails the CRC instead of panicking.
        let mut b = BytesMut::from(&batch(0, 2)[..]);
        let last = b.len() - 1;
        b[last] ^= 0xff;
        let got = split(b.freeze()).expect("split");
        assert!(decode(&got[0]).is_err());
        // Short garbage is just an incomplete tail.
        assert!(split(Bytes::from_static(&[1, 2, 3]))
            .expect("split")
            .is_empty());
    }
}
