//! Splitting a fetched `records` field into whole v2 record batches and decoding them
//! without trusting the broker's numbers further than the bytes we hold.

use anyhow::{bail, Result};
use bytes::Bytes;
use engine::log::batch::{self, LOG_OVERHEAD};
use kafka_protocol::records::{Record, RecordBatchDecoder};

/// One complete batch as fetched.
#[derive(Debug, Clone)]
pub struct RawBatch {
    pub bytes: Bytes,
    pub base_offset: i64,
    pub last_offset: i64,
}

/// Whole batches at the front of `data`, each checked (magic v2, length, CRC32C) with the
/// broker's own batch code; a trailing partial batch (the broker cut the answer at max bytes)
/// is left out. The decoder later caps what it reserves, so a lying record count costs nothing.
pub fn split(mut data: Bytes) -> Result<Vec<RawBatch>> {
    let mut out = Vec::new();
    while data.len() >= LOG_OVERHEAD {
        let base_offset = i64::from_be_bytes(data[..8].try_into().unwrap_or_default());
        let length = i32::from_be_bytes(data[8..12].try_into().unwrap_or_default());
        let Ok(length) = usize::try_from(length) else {
            bail!("record batch at offset {base_offset} has negative length {length}");
        };
        if data.len() < LOG_OVERHEAD + length {
            break;
        }
        let bytes = data.split_to(LOG_OVERHEAD + length);
        let h = match batch::validate(&bytes) {
            Ok(h) => h,
            Err(batch::BatchError::UnsupportedMagic(m)) => bail!(
                "record batch at offset {base_offset} uses message format v{m}, which this CLI cannot read"
            ),
            Err(e) => bail!("record batch at offset {base_offset} is damaged: {e}"),
        };
        out.push(RawBatch {
            bytes,
            base_offset,
            last_offset: h.last_offset(),
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
    use engine::log::batch::{encode_batch, Assign, Compression, NewRecord};

    fn batch(base: i64, n: usize) -> Bytes {
        let records: Vec<NewRecord> = (0..n)
            .map(|i| NewRecord {
                value: Some(Bytes::from(format!("v{i}"))),
                timestamp: 1_700_000_000_000,
                ..Default::default()
            })
            .collect();
        let b = encode_batch(&records, Compression::None).expect("encode");
        let at = Assign {
            base_offset: base,
            leader_epoch: 0,
            log_append_time: None,
        };
        batch::assign(&b, at)
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
        b[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
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
        // A corrupted payload fails the CRC check: an error, not a panic or garbage records.
        let mut b = BytesMut::from(&batch(0, 2)[..]);
        let last = b.len() - 1;
        b[last] ^= 0xff;
        let e = split(b.freeze()).expect_err("crc").to_string();
        assert!(e.contains("CRC"), "{e}");
        // Short garbage is just an incomplete tail.
        assert!(split(Bytes::from_static(&[1, 2, 3]))
            .expect("split")
            .is_empty());
    }
}
