//! Checking the records inside a batch before it is stored.
//!
//! The header's CRC only proves the bytes arrived as the client wrote them, not that the
//! client told the truth: a batch that claims two billion records would move the partition's
//! offsets by two billion, and one that holds more records than it claims would give two
//! records the same offset. So, like Kafka's log validator, the broker walks the records:
//! each one's length prefix and offset delta must line up with the header. Uncompressed
//! batches are walked in place; compressed ones are decompressed first, into a buffer whose
//! size is capped so a small "zip bomb" cannot exhaust memory. The stored bytes are still the
//! ones the client sent.

use std::io::Read;

use super::batch::{BatchError, BatchHeader, HEADER_LEN};

/// Decompressed size allowed for one batch: generous for real data (compression ratios of
/// records rarely pass 20:1), small enough to bound a hostile batch's cost.
pub fn decompressed_limit(max_message_bytes: usize) -> usize {
    max_message_bytes.saturating_mul(32).max(64 << 20)
}

/// What the walk learned about a batch's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Some record has a null key (compacted topics refuse those, as Kafka does).
    pub null_key: bool,
    /// The smallest and largest record timestamp deltas (relative to the batch's base
    /// timestamp), for `message.timestamp.before/after.max.ms`.
    pub min_timestamp_delta: i64,
    pub max_timestamp_delta: i64,
}

/// Verifies that the batch holds exactly `records_count` well-framed records with offset
/// deltas 0, 1, 2, ... and that `last_offset_delta` agrees.
pub fn check(batch: &[u8], h: &BatchHeader, limit: usize) -> Result<Summary, BatchError> {
    check_with(batch, h, limit, |_, _, _| {})
}

/// [`check`] that also hands `visit(index, key, value)` every record (None: a null key or
/// value), so a caller that needs the records (schema id validation) decompresses and walks
/// the batch once, not twice. Compressed records are decompressed within `limit`.
pub fn check_with(
    batch: &[u8],
    h: &BatchHeader,
    limit: usize,
    visit: impl FnMut(i32, Option<&[u8]>, Option<&[u8]>),
) -> Result<Summary, BatchError> {
    if h.records_count < 1 {
        return Err(BatchError::Malformed(
            "a batch must hold at least one record",
        ));
    }
    if h.last_offset_delta != h.records_count - 1 {
        return Err(BatchError::Malformed(
            "last offset delta does not match the record count",
        ));
    }
    let payload = &batch[HEADER_LEN..];
    match h.compression() {
        0 => walk(payload, h.records_count, visit),
        codec => walk(&decompress(codec, payload, limit)?, h.records_count, visit),
    }
}

fn decompress(codec: i16, data: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
    let bad = |_| BatchError::Malformed("compressed records cannot be decompressed");
    let mut out = Vec::new();
    match codec {
        1 => bounded(flate2::read::GzDecoder::new(data), limit, &mut out)?,
        2 => snappy(data, limit, &mut out)?,
        3 => bounded(lz4::Decoder::new(data).map_err(bad)?, limit, &mut out)?,
        4 => bounded(
            zstd::stream::read::Decoder::new(data).map_err(bad)?,
            limit,
            &mut out,
        )?,
        _ => return Err(BatchError::Malformed("unknown compression codec")),
    }
    Ok(out)
}

fn bounded(r: impl Read, limit: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    r.take(limit as u64 + 1)
        .read_to_end(out)
        .map_err(|_| BatchError::Malformed("compressed records cannot be decompressed"))?;
    if out.len() > limit {
        return Err(BatchError::Malformed(
            "records decompress to more than the broker accepts",
        ));
    }
    Ok(())
}

/// Kafka's snappy is either one raw block or the xerial framing Java's snappy-java writes:
/// a 16-byte header, then blocks each prefixed with a big-endian u32 length.
fn snappy(data: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    const XERIAL: &[u8] = b"\x82SNAPPY\x00";
    let mut blocks = Vec::new();
    if data.starts_with(XERIAL) && data.len() >= 16 {
        let mut rest = &data[16..];
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err(BatchError::Malformed("truncated snappy block"));
            }
            let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let block = rest
                .get(4..4 + n)
                .ok_or(BatchError::Malformed("truncated snappy block"))?;
            blocks.push(block);
            rest = &rest[4 + n..];
        }
    } else {
        blocks.push(data);
    }
    let mut dec = snap::raw::Decoder::new();
    for block in blocks {
        let n = snap::raw::decompress_len(block)
            .map_err(|_| BatchError::Malformed("bad snappy block"))?;
        if out.len() + n > limit {
            return Err(BatchError::Malformed(
                "records decompress to more than the broker accepts",
            ));
        }
        let start = out.len();
        out.resize(start + n, 0);
        dec.decompress(block, &mut out[start..])
            .map_err(|_| BatchError::Malformed("bad snappy block"))?;
    }
    Ok(())
}

/// Walks `count` records: varint length, attributes, varlong timestamp delta, varint offset
/// delta (must equal the record's index), key and value (handed to `visit`), then skips the
/// headers.
fn walk(
    mut buf: &[u8],
    count: i32,
    mut visit: impl FnMut(i32, Option<&[u8]>, Option<&[u8]>),
) -> Result<Summary, BatchError> {
    let mut summary = Summary {
        min_timestamp_delta: i64::MAX,
        max_timestamp_delta: i64::MIN,
        ..Summary::default()
    };
    for i in 0..count {
        let len = varint(&mut buf)?;
        if len < 0 || len as usize > buf.len() {
            return Err(BatchError::Malformed("record length runs past the batch"));
        }
        let (mut rec, rest) = buf.split_at(len as usize);
        if rec.is_empty() {
            return Err(BatchError::Malformed("empty record"));
        }
        rec = &rec[1..]; // attributes
        let ts_delta = varint(&mut rec)?;
        summary.min_timestamp_delta = summary.min_timestamp_delta.min(ts_delta);
        summary.max_timestamp_delta = summary.max_timestamp_delta.max(ts_delta);
        if varint(&mut rec)? != i as i64 {
            return Err(BatchError::Malformed(
                "record offset deltas are not 0, 1, 2, ...",
            ));
        }
        let key = bytes_field(&mut rec)?;
        let value = bytes_field(&mut rec)?;
        summary.null_key |= key.is_none();
        visit(i, key, value);
        buf = rest;
    }
    if !buf.is_empty() {
        return Err(BatchError::Malformed(
            "batch holds more records than its header says",
        ));
    }
    Ok(summary)
}

/// A varint-length-prefixed byte field of a record (-1: null).
fn bytes_field<'a>(rec: &mut &'a [u8]) -> Result<Option<&'a [u8]>, BatchError> {
    let n = varint(rec)?;
    if n < 0 {
        return Ok(None);
    }
    if n as usize > rec.len() {
        return Err(BatchError::Malformed("record field runs past the record"));
    }
    let (field, rest) = rec.split_at(n as usize);
    *rec = rest;
    Ok(Some(field))
}

/// Zigzag varint (up to 64 bits), as Kafka's record fields use.
fn varint(buf: &mut &[u8]) -> Result<i64, BatchError> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf
            .split_first()
            .ok_or(BatchError::Malformed("truncated varint in a record"))?;
        *buf = rest;
        v |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Ok((v >> 1) as i64 ^ -((v & 1) as i64));
        }
    }
    Err(BatchError::Malformed(
        "varint longer than 10 bytes in a record",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::{self, tests::make_batch};
    use bytes::BytesMut;
    use kafka_protocol::records::Compression;

    #[test]
    fn accepts_client_batches_for_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = make_batch(50, 200, c);
            let h = batch::validate(&b).unwrap();
            let summary = check(&b, &h, 1 << 20).unwrap_or_else(|e| panic!("{c:?}: {e}"));
            assert!(!summary.null_key);
        }
    }

    fn with_count(b: &[u8], count: i32, last_delta: i32) -> BytesMut {
        let mut m = BytesMut::from(b);
        m[57..61].copy_from_slice(&count.to_be_bytes());
        m[23..27].copy_from_slice(&last_delta.to_be_bytes());
        let crc = batch::compute_crc(&m);
        m[17..21].copy_from_slice(&crc.to_be_bytes());
        m
    }

    #[test]
    fn rejects_lying_record_counts() {
        for c in [Compression::None, Compression::Zstd] {
            let b = make_batch(5, 10, c);
            for (count, delta) in [(2_000_000_000, 1_999_999_999), (3, 2), (6, 5), (5, 9)] {
                let m = with_count(&b, count, delta);
                let h = batch::validate(&m).unwrap();
                assert!(check(&m, &h, 1 << 20).is_err(), "{c:?} count {count}");
            }
        }
    }

    #[test]
    fn walker_yields_keys_and_values() {
        for c in [Compression::None, Compression::Zstd] {
            let b = make_batch(7, 30, c);
            let h = batch::validate(&b).unwrap();
            let mut seen = Vec::new();
            check_with(&b, &h, 1 << 20, |i, k, v| {
                seen.push((i, k.map(<[u8]>::len), v.map(<[u8]>::len)))
            })
            .unwrap();
            assert_eq!(seen.len(), 7, "{c:?}");
            assert!(seen.iter().enumerate().all(|(i, s)| s.0 == i as i32));
            assert!(seen.iter().all(|s| s.2 == Some(30)), "{seen:?}");
        }
    }

    #[test]
    fn caps_decompressed_size() {
        let b = make_batch(100, 10_000, Compression::Zstd);
        let h = batch::validate(&b).unwrap();
        assert!(check(&b, &h, 100_000).is_err());
        assert!(check(&b, &h, 10 << 20).is_ok());
    }
}
