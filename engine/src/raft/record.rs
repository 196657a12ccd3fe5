//! The record format of a Raft log file, and the errors of Raft log storage: records
//! `u32 length, u32 crc32c` (big-endian) over `u8 type, body`, the type being an entry
//! (protobuf), a hard state (protobuf), or an entry whose batches are in the partition's
//! segment log ([`Placed`], then the protobuf entry without them).

use std::path::PathBuf;

pub const ENTRY: u8 = 1;
pub const HARD_STATE: u8 = 2;
pub const PLACED: u8 = 3;
/// A record's header: `u32 length, u32 crc32c`.
pub const RECORD_HEADER: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("raft log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("raft log {0}: {1}")]
    Corrupt(PathBuf, String),
}

/// Appends one record of `kind` holding `body` to `buf`.
pub fn record(buf: &mut Vec<u8>, kind: u8, body: &[u8]) {
    let mut payload = Vec::with_capacity(body.len() + 1);
    payload.push(kind);
    payload.extend_from_slice(body);
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    buf.extend_from_slice(&payload);
}

/// Where a placed entry's batches are in the partition's segment log (one log: the Raft log
/// record holds the entry without them). The batches are the entry data's suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The segment (its base offset) and the byte position of the first batch in its file.
    pub segment: i64,
    pub position: u64,
    /// Bytes of batches.
    pub len: u32,
    /// The first batch's base offset, and the offset after the last batch.
    pub offset: i64,
    pub next: i64,
}

const PLACED_LEN: usize = 36;

impl Placed {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.segment.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
        out.extend_from_slice(&self.len.to_be_bytes());
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.extend_from_slice(&self.next.to_be_bytes());
    }

    /// Decodes a placed record's body: where the batches are, and the entry's protobuf.
    pub fn decode(body: &[u8]) -> Option<(Placed, &[u8])> {
        if body.len() < PLACED_LEN {
            return None;
        }
        let i64_at = |i: usize| i64::from_be_bytes(body[i..i + 8].try_into().expect("8 bytes"));
        let p = Placed {
            segment: i64_at(0),
            position: u64::from_be_bytes(body[8..16].try_into().expect("8 bytes")),
            len: u32::from_be_bytes(body[16..20].try_into().expect("4 bytes")),
            offset: i64_at(20),
            next: i64_at(28),
        };
        Some((p, &body[PLACED_LEN..]))
    }
}
