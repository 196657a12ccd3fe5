//! Helpers shared by the criterion benches in `benches/benches/`.
//!
//! The load benchmark (a librdkafka client against the running broker) lives in
//! `benches/load/`, a separate cargo package outside the workspace.

use bytes::{Bytes, BytesMut};
use engine::log::batch::{BatchHeader, HEADER_LEN};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Size of one record's value in the benches: 1 KiB.
pub const RECORD_BYTES: usize = 1024;
/// Records per batch: 16 x 1 KiB, a 16 KiB batch (plus record and batch headers).
pub const RECORDS_PER_BATCH: usize = 16;

/// Encodes one uncompressed v2 batch of `n` records with `value_len`-byte values, as a
/// client would (base offset 0, no producer id, base sequence -1).
pub fn make_batch(n: usize, value_len: usize) -> Bytes {
    let value = Bytes::from(vec![b'v'; value_len]);
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever offset - sequence changes.
            sequence: i as i32 - 1,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("key-{i:08}"))),
            value: Some(value.clone()),
            headers: Default::default(),
            delete_horizon: false,
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
    .expect("encode batch");
    buf.freeze()
}

/// The standard bench batch: 16 records of 1 KiB.
pub fn bench_batch() -> Bytes {
    make_batch(RECORDS_PER_BATCH, RECORD_BYTES)
}

/// The offset after the last batch in `chunk` (a run of whole batches as `read` returns).
pub fn next_offset_after(chunk: &[u8]) -> Option<i64> {
    let mut pos = 0;
    let mut next = None;
    while pos + HEADER_LEN <= chunk.len() {
        let h = BatchHeader::parse(&chunk[pos..]).ok()?;
        next = Some(h.next_offset());
        pos += h.total_len();
    }
    next
}

/// A small deterministic PRNG (xorshift64*) so the benches need no `rand`.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform-ish in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}
