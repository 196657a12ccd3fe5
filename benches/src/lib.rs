//! Helpers shared by the criterion benches in `benches/benches/`.
//!
//! The load benchmark (a librdkafka client against the running broker) lives in
//! `benches/load/`, a separate cargo package outside the workspace.

use bytes::Bytes;
use engine::log::batch::{encode_batch, BatchHeader, Compression, NewRecord, HEADER_LEN};

/// Size of one record's value in the benches: 1 KiB.
pub const RECORD_BYTES: usize = 1024;
/// Records per batch: 16 x 1 KiB, a 16 KiB batch (plus record and batch headers).
pub const RECORDS_PER_BATCH: usize = 16;

/// Encodes one uncompressed v2 batch of `n` records with `value_len`-byte values, as a
/// client would (base offset 0, no producer id, base sequence -1).
pub fn make_batch(n: usize, value_len: usize) -> Bytes {
    let value = Bytes::from(vec![b'v'; value_len]);
    let records: Vec<NewRecord> = (0..n)
        .map(|i| NewRecord {
            key: Some(Bytes::from(format!("key-{i:08}"))),
            value: Some(value.clone()),
            timestamp: 1_700_000_000_000 + i as i64,
            headers: Vec::new(),
        })
        .collect();
    encode_batch(&records, Compression::None).expect("encode batch")
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
