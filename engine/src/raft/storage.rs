//! raft-rs's `Storage` over a Raft log file ([`super::log_file`]).
//!
//! raft-rs's `MemStorage` held every entry ever appended, so a replica's memory grew with every
//! byte produced. This storage keeps, per entry, only its term and where its record starts in
//! the file (16 bytes), plus the newest entries up to [`CACHE_BYTES`], which is what leaders
//! send to followers that keep up. Anything older (a follower catching up, a replica
//! re-applying its log at start) is read back from the file with positioned reads; raft-rs
//! asks for it in slices (`max_committed_size_per_ready`, `max_size_per_msg`), so memory stays
//! bounded however long the log is.
//!
//! raft-rs treats a storage error as fatal (it panics), so a read that fails hands raft-rs the
//! entries read before it and keeps the error, which `run_ready` returns right after: the
//! partition then stops as after any storage error (`partition::failure`).

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use parking_lot::RwLock;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use super::log_file::{StoreError, ENTRY, RECORD_HEADER};

/// The newest entries kept in memory per group, in bytes of payload.
pub const CACHE_BYTES: usize = 1 << 20;

/// Where an entry is: its term, and where its record starts in the file.
#[derive(Clone, Copy)]
struct Loc {
    term: u64,
    pos: u64,
}

pub struct DiskStorage {
    inner: RwLock<Inner>,
}

struct Inner {
    path: PathBuf,
    /// A read handle on the file the [`super::log_file::RaftStore`] appends to.
    file: File,
    hard_state: HardState,
    conf_state: ConfState,
    /// Every entry's location, entry 1 first (the log is never compacted yet).
    locs: Vec<Loc>,
    /// The newest entries, a suffix of the log.
    cache: VecDeque<Entry>,
    cache_bytes: usize,
    /// The first read error, for `run_ready` to report.
    failure: Option<io::Error>,
}

impl DiskStorage {
    pub fn new(path: PathBuf, file: File, conf_state: ConfState) -> DiskStorage {
        DiskStorage {
            inner: RwLock::new(Inner {
                path,
                file,
                hard_state: HardState::default(),
                conf_state,
                locs: Vec::new(),
                cache: VecDeque::new(),
                cache_bytes: 0,
                failure: None,
            }),
        }
    }

    /// The last index (0: empty).
    pub fn last(&self) -> u64 {
        self.inner.read().locs.len() as u64
    }

    /// Entries just written at `positions`; an entry at an index the log already has replaces
    /// it and everything after it (a new leader overwriting an uncommitted suffix).
    pub fn append(&self, entries: &[Entry], positions: &[u64]) {
        let mut s = self.inner.write();
        for (e, &pos) in entries.iter().zip(positions) {
            let keep = (e.index.saturating_sub(1) as usize).min(s.locs.len());
            s.locs.truncate(keep);
            while s.cache.back().is_some_and(|c| c.index >= e.index) {
                let gone = s.cache.pop_back().expect("checked");
                s.cache_bytes -= gone.data.len();
            }
            s.locs.push(Loc { term: e.term, pos });
            s.cache_bytes += e.data.len();
            s.cache.push_back(e.clone());
            while s.cache_bytes > CACHE_BYTES && s.cache.len() > 1 {
                let old = s.cache.pop_front().expect("more than one");
                s.cache_bytes -= old.data.len();
            }
        }
    }

    pub fn set_hard_state(&self, hs: HardState) {
        self.inner.write().hard_state = hs;
    }

    /// Records a new commit index; returns the hard state to persist.
    pub fn set_commit(&self, commit: u64) -> HardState {
        let mut s = self.inner.write();
        s.hard_state.commit = commit;
        s.hard_state.clone()
    }

    /// The first read error since the last call, if any.
    pub fn take_failure(&self) -> Option<StoreError> {
        let mut s = self.inner.write();
        let path = s.path.clone();
        s.failure
            .take()
            .map(|source| StoreError::Io { path, source })
    }

    /// Entries in memory and bytes they hold (for tests and benches).
    pub fn cached(&self) -> (usize, usize) {
        let s = self.inner.read();
        (s.cache.len(), s.cache_bytes)
    }
}

impl Inner {
    fn read_entry(&self, index: u64) -> io::Result<Entry> {
        let loc = self.locs[(index - 1) as usize];
        let mut head = [0u8; RECORD_HEADER];
        self.file.read_exact_at(&mut head, loc.pos)?;
        let n = u32::from_be_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(head[4..].try_into().expect("4 bytes"));
        let mut payload = vec![0u8; n];
        self.file
            .read_exact_at(&mut payload, loc.pos + RECORD_HEADER as u64)?;
        let bad = |why: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("entry {index} at byte {}: {why}", loc.pos),
            )
        };
        if n == 0 || payload[0] != ENTRY || crc32c::crc32c(&payload) != crc {
            return Err(bad("record damaged".into()));
        }
        let e = Entry::parse_from_bytes(&payload[1..]).map_err(|e| bad(e.to_string()))?;
        if e.index != index {
            return Err(bad(format!("holds entry {}", e.index)));
        }
        Ok(e)
    }
}

impl raft::Storage for DiskStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let s = self.inner.read();
        Ok(RaftState::new(s.hard_state.clone(), s.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max = max_size.into().unwrap_or(u64::MAX);
        let s = self.inner.read();
        let last = s.locs.len() as u64;
        if low < 1 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > last + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let cached_from = s.cache.front().map_or(u64::MAX, |e| e.index);
        let mut out = Vec::new();
        let mut size = 0u64;
        for index in low..high {
            let e = if index >= cached_from {
                s.cache[(index - cached_from) as usize].clone()
            } else {
                match s.read_entry(index) {
                    Ok(e) => e,
                    Err(err) => {
                        drop(s);
                        let mut w = self.inner.write();
                        tracing::error!(path = %w.path.display(), error = %err, "cannot read the raft log");
                        w.failure.get_or_insert(err);
                        return Ok(out);
                    }
                }
            };
            // raft-rs's own rule (`limit_size`): at least one entry, then up to `max` bytes.
            size += u64::from(e.compute_size());
            if !out.is_empty() && size > max {
                break;
            }
            out.push(e);
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == 0 {
            return Ok(0);
        }
        let s = self.inner.read();
        match s.locs.get((idx - 1) as usize) {
            Some(l) => Ok(l.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // The log is never compacted yet, so raft-rs never needs one.
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::log_file::RaftStore;
    use super::*;
    use raft::Storage as _;

    fn entry(index: u64, term: u64, bytes: usize) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; bytes].into(),
            ..Default::default()
        }
    }

    #[test]
    fn old_entries_are_read_back_from_disk_and_memory_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, s) = RaftStore::open(dir.path(), &[1]).unwrap();
        // 64 MiB of entries: far more than the cache holds.
        for i in 1..=256u64 {
            let e = entry(i, 1 + i / 100, 256 << 10);
            let pos = store.persist(std::slice::from_ref(&e), None).unwrap();
            s.append(&[e], &pos);
        }
        let (n, bytes) = s.cached();
        assert!(
            bytes <= CACHE_BYTES && n < 8,
            "{n} entries, {bytes} bytes in memory"
        );
        assert_eq!(s.last_index().unwrap(), 256);
        assert_eq!(s.term(150).unwrap(), 2);
        let ctx = GetEntriesContext::empty(false);
        // Old entries come from the file, in slices of at most max_size (at least one).
        let got = s.entries(10, 200, 1 << 20, ctx).unwrap();
        assert_eq!(
            got.iter().map(|e| e.index).collect::<Vec<_>>(),
            [10, 11, 12]
        );
        assert_eq!(got[1], entry(11, 1, 256 << 10));
        let one = s.entries(5, 6, 0, GetEntriesContext::empty(false)).unwrap();
        assert_eq!(one, [entry(5, 1, 256 << 10)]);
        // A new leader overwrites an uncommitted suffix; the file keeps the stale records,
        // and both the running storage and a reopened one see the new entries.
        let e = entry(200, 9, 10);
        let pos = store.persist(std::slice::from_ref(&e), None).unwrap();
        s.append(std::slice::from_ref(&e), &pos);
        assert_eq!(s.last_index().unwrap(), 200);
        let ctx = GetEntriesContext::empty(false);
        assert_eq!(s.entries(199, 201, None, ctx).unwrap()[1], e);
        drop((store, s));
        let (_, s) = RaftStore::open(dir.path(), &[1]).unwrap();
        assert_eq!(s.last_index().unwrap(), 200);
        assert_eq!(s.term(200).unwrap(), 9);
        let ctx = GetEntriesContext::empty(false);
        assert_eq!(s.entries(198, 201, None, ctx).unwrap()[2], e);
        assert!(s.cached().1 <= CACHE_BYTES);
        assert!(s.take_failure().is_none());
    }

    #[test]
    fn a_damaged_record_is_a_storage_failure_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, s) = RaftStore::open(dir.path(), &[1]).unwrap();
        for i in 1..=8u64 {
            let e = entry(i, 1, 512 << 10);
            let pos = store.persist(std::slice::from_ref(&e), None).unwrap();
            s.append(&[e], &pos);
        }
        // Entry 2's record is overwritten on disk after it was written (a bad sector).
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("raft.log"))
            .unwrap();
        let pos = s.inner.read().locs[1].pos;
        f.write_all_at(&[0xff; 64], pos + 100).unwrap();
        let ctx = GetEntriesContext::empty(false);
        let got = s.entries(1, 4, None, ctx).unwrap();
        assert_eq!(got.len(), 1, "entries before the damage only");
        let err = s.take_failure().expect("the read error is kept");
        assert!(err.to_string().contains("entry 2"), "{err}");
    }
}
