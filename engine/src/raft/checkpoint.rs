//! A partition replica's checkpoint: the Raft index its segment log has applied and synced,
//! which is also the snapshot its leader sends to a replica that is behind its first index.
//!
//! The segment log is the state machine and, up to the checkpoint, the snapshot itself: the
//! Raft log before the checkpoint is only kept while whole files of it can be dropped later
//! (`log_file`), a restart opens the segments cut at `offset` and re-applies only the
//! entries after `index`, and a replica installing a snapshot copies the segments from its own
//! log end up to `offset` from the leader (`partition::snapshot`).
//!
//! The controller's group has no segments: its state (the cluster metadata) is small and is
//! carried whole in `state`, which is also what its snapshots send (`cluster::metadata_state`).
//!
//! File `<raft dir>/checkpoint`, written atomically: `u8 version (1), u64 index, u64 term,
//! i64 offset, u64 first_file, u32 length, ConfState protobuf`, then (optional, absent in the
//! first release's files) `u32 length, state`, then a `u32 crc32c` of all of it. Version 1 is
//! what every later field is appended after.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::ConfState;

use super::record::StoreError;

const VERSION: u8 = 1;
pub const FILE: &str = "checkpoint";

#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The last Raft entry the segment log reflects.
    pub index: u64,
    pub term: u64,
    /// The group's configuration as of `index`.
    pub conf: ConfState,
    /// The segment log's next offset after applying `index`: what a restart cuts it back to.
    pub offset: i64,
    /// Raft log files numbered below this one are stale (a snapshot replaced them) and ignored.
    pub first_file: u64,
    /// The state machine's state at `index` when it keeps one outside segments (the
    /// controller's metadata); empty for partitions.
    pub state: bytes::Bytes,
}

impl Checkpoint {
    pub fn encode(&self) -> Vec<u8> {
        let conf = self.conf.write_to_bytes().unwrap_or_default();
        let mut b = Vec::with_capacity(49 + conf.len() + self.state.len());
        b.push(VERSION);
        b.extend_from_slice(&self.index.to_be_bytes());
        b.extend_from_slice(&self.term.to_be_bytes());
        b.extend_from_slice(&self.offset.to_be_bytes());
        b.extend_from_slice(&self.first_file.to_be_bytes());
        b.extend_from_slice(&(conf.len() as u32).to_be_bytes());
        b.extend_from_slice(&conf);
        if !self.state.is_empty() {
            b.extend_from_slice(&(self.state.len() as u32).to_be_bytes());
            b.extend_from_slice(&self.state);
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Checkpoint, String> {
        if b.len() < 41 {
            return Err(format!("{} bytes is too short", b.len()));
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().expect("4 bytes")) {
            return Err("checksum mismatch".into());
        }
        if body[0] != VERSION {
            return Err(format!("version {} is newer than this broker's", body[0]));
        }
        let u = |i: usize| u64::from_be_bytes(body[i..i + 8].try_into().expect("8 bytes"));
        let n = u32::from_be_bytes(body[33..37].try_into().expect("4 bytes")) as usize;
        let conf = body
            .get(37..37 + n)
            .ok_or("configuration cut short")
            .and_then(|c| {
                ConfState::parse_from_bytes(c).map_err(|_| "configuration undecodable")
            })?;
        let rest = &body[37 + n..];
        let state = match rest.len() {
            0 => bytes::Bytes::new(),
            1..4 => return Err("state length cut short".into()),
            _ => {
                let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
                if rest.len() - 4 != len {
                    return Err(format!("state of {} bytes, {len} expected", rest.len() - 4));
                }
                bytes::Bytes::copy_from_slice(&rest[4..])
            }
        };
        Ok(Checkpoint {
            index: u(1),
            term: u(9),
            offset: u(17) as i64,
            first_file: u(25),
            conf,
            state,
        })
    }

    /// The checkpoint in `dir`, if one was written.
    pub fn read(dir: &Path) -> Result<Option<Checkpoint>, StoreError> {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(b) => Checkpoint::decode(&b)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// Writes it durably (a crash leaves the old or the new one).
    pub fn write(&self, dir: &Path) -> Result<(), StoreError> {
        let path = dir.join(FILE);
        crate::log::files::write_atomic(&path, &self.encode())
            .map_err(|source| StoreError::Io { path, source })
    }
}

/// Writes one replica's checkpoints, never an older one over a newer. A checkpoint is
/// computed on the shard thread and written off it; a snapshot installed in between writes
/// its own, newer one and deletes the log files before it, and the older one written after
/// would send the next start to those deleted files.
#[derive(Clone)]
pub struct Writer {
    dir: PathBuf,
    /// The index of the newest checkpoint on disk; held while one is written.
    newest: Arc<parking_lot::Mutex<u64>>,
}

impl Writer {
    pub fn new(dir: &Path, newest: u64) -> Self {
        Writer {
            dir: dir.to_path_buf(),
            newest: Arc::new(parking_lot::Mutex::new(newest)),
        }
    }

    /// Writes `cp` unless a checkpoint at or past its index is on disk; whether it did.
    pub fn write(&self, cp: &Checkpoint) -> Result<bool, StoreError> {
        let mut newest = self.newest.lock();
        if cp.index <= *newest {
            return Ok(false);
        }
        cp.write(&self.dir)?;
        *newest = cp.index;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_damage() {
        let c = Checkpoint {
            index: 42,
            term: 7,
            conf: ConfState::from((vec![1, 2, 3], vec![4])),
            offset: 1234,
            first_file: 3,
            state: Default::default(),
        };
        let b = c.encode();
        assert_eq!(Checkpoint::decode(&b).unwrap(), c);
        let with_state = Checkpoint {
            state: bytes::Bytes::from_static(b"{\"topics\":[]}"),
            ..c.clone()
        };
        let b2 = with_state.encode();
        assert_eq!(Checkpoint::decode(&b2).unwrap(), with_state);
        let mut cut = b2[..b2.len() - 6].to_vec();
        let crc = crc32c::crc32c(&cut);
        cut.extend_from_slice(&crc.to_be_bytes());
        assert!(Checkpoint::decode(&cut).unwrap_err().contains("expected"));
        let mut bad = b.clone();
        bad[5] ^= 1;
        assert!(Checkpoint::decode(&bad).unwrap_err().contains("checksum"));
        assert!(Checkpoint::decode(&b[..10]).is_err());
    }
}
