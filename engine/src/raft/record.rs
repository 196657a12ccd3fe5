//! The record format of a Raft log file, and the errors of Raft log storage: records
//! `u32 length, u32 crc32c` (big-endian) over `u8 type, protobuf body`, the type being an
//! entry or a hard state.

use std::path::PathBuf;

pub const ENTRY: u8 = 1;
pub const HARD_STATE: u8 = 2;
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
