//! raft-rs's `Storage` over a Raft log file ([`super::log_file`]).
//!
//! raft-rs's `MemStorage` held every entry ever appended, so a replica's memory grew with every
//! byte produced. This storage keeps, per entry, only its term and where its record starts in
//! the file (16 bytes), plus the newest entries up to [`CACHE_BYTES`], which is what leaders
//! send to followers that keep up. Anything older (a follower catching up, a replica
//! re-applying its log at start) is read back from the file with positioned reads (a placed
//! entry's batches from the partition's segment, where its record says they are); raft-rs
//! asks for it in slices (`max_committed_size_per_ready`, `max_size_per_msg`), so memory stays
//! bounded however long the log is.
//!
//! raft-rs treats a storage error as fatal (it panics), so a read that fails hands raft-rs the
//! entries read before it and keeps the error, which `run_ready` returns right after: the
//! partition then stops as after any storage error (`partition::failure`).

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use parking_lot::RwLock;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use super::checkpoint::Checkpoint;
use super::record::{Placed, StoreError, ENTRY, PLACED, RECORD_HEADER};

/// The most bytes of payload of the newest entries kept in memory per group. Entries every
/// replica that keeps up has and that were applied leave it at once
/// ([`DiskStorage::trim_cache`]), so an idle group holds none, and a busy one what is in
/// flight: at 1 MiB, a leader producing 200 MB/s to peers that sync in ~10 ms read most
/// entries back from disk to send and apply them (`read_entry`, a copy each).
pub const CACHE_BYTES: usize = 8 << 20;

/// Where an entry's record is: which file of the log, and where in it; and, for an entry
/// whose batches are in the segment log, the offset they start at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    pub file: u64,
    pub at: u64,
    pub placed_at: Option<i64>,
}

/// Where an entry is: its term, and its record.
#[derive(Clone, Copy)]
struct Loc {
    term: u64,
    pos: Pos,
}

pub struct DiskStorage {
    inner: RwLock<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// The partition's segment log, where placed entries' batches are.
    segments: Option<PathBuf>,
    /// Read handles on the log's files, by number.
    files: BTreeMap<u64, File>,
    /// The highest index of an entry each file ever held (replaced ones too): what may go
    /// once a checkpoint passes it ([`DiskStorage::compact`]).
    file_max: BTreeMap<u64, u64>,
    hard_state: HardState,
    conf_state: ConfState,
    /// The index of `locs[0]` (of the next entry when there is none).
    first: u64,
    /// The term of entry `first - 1`, when known (always when `locs` is empty).
    prev_term: Option<u64>,
    /// Every entry's location from `first` on.
    locs: VecDeque<Loc>,
    /// The newest entries, a suffix of the log.
    cache: VecDeque<Entry>,
    cache_bytes: usize,
    /// The last durable checkpoint: the snapshot a follower behind `first` is sent.
    checkpoint: Option<Checkpoint>,
    /// A snapshot installed by the last Ready, for the partition to take.
    installed: Option<Checkpoint>,
    /// The first read error, for `run_ready` to report.
    failure: Option<io::Error>,
    /// raft-rs asked for a snapshot the checkpoint cannot be (too old, or from before the
    /// follower joined): the owner should write a new checkpoint soon.
    snapshot_wanted: bool,
}

impl DiskStorage {
    /// A log starting after `checkpoint` (or at entry 1), with the creation-time voters.
    pub fn new(
        dir: PathBuf,
        segments: Option<PathBuf>,
        conf_state: ConfState,
        checkpoint: Option<Checkpoint>,
    ) -> DiskStorage {
        let (first, prev_term, conf_state) = match &checkpoint {
            Some(c) => (c.index + 1, Some(c.term), c.conf.clone()),
            None => (1, Some(0), conf_state),
        };
        DiskStorage {
            inner: RwLock::new(Inner {
                dir,
                segments,
                files: BTreeMap::new(),
                file_max: BTreeMap::new(),
                hard_state: HardState::default(),
                conf_state,
                first,
                prev_term,
                locs: VecDeque::new(),
                cache: VecDeque::new(),
                cache_bytes: 0,
                checkpoint,
                installed: None,
                failure: None,
                snapshot_wanted: false,
            }),
        }
    }

    /// A new file of the log, to read entries from.
    pub fn add_file(&self, number: u64, file: File) {
        self.inner.write().files.insert(number, file);
    }

    /// The last index (0: empty).
    pub fn last(&self) -> u64 {
        self.inner.read().last()
    }

    /// The first index raft-rs may read.
    pub fn first(&self) -> u64 {
        self.inner.read().first
    }

    /// Entries just written at `positions`; an entry at an index the log already has replaces
    /// it and everything after it (a new leader overwriting an uncommitted suffix).
    pub fn append(&self, entries: &[Entry], positions: &[Pos]) {
        self.append_inner(entries, positions, true);
    }

    /// An entry read back at start. A placed one holds no batches, so it is not cached (the
    /// cache must stay a suffix of the log, so it empties).
    pub fn append_replayed(&self, e: &Entry, pos: Pos) {
        let cache = pos.placed_at.is_none();
        self.append_inner(std::slice::from_ref(e), &[pos], cache);
    }

    fn append_inner(&self, entries: &[Entry], positions: &[Pos], cache: bool) {
        let mut s = self.inner.write();
        for (e, &pos) in entries.iter().zip(positions) {
            if e.index < s.first {
                // Only a replay meets this (a retained file rewriting entries before the
                // files that were dropped): start the log over at it.
                s.locs.clear();
                s.first = e.index;
                s.prev_term = None;
            }
            let keep = ((e.index - s.first) as usize).min(s.locs.len());
            s.locs.truncate(keep);
            while s.cache.back().is_some_and(|c| c.index >= e.index) {
                let gone = s.cache.pop_back().expect("checked");
                s.cache_bytes -= gone.data.len();
            }
            s.locs.push_back(Loc { term: e.term, pos });
            let max = s.file_max.entry(pos.file).or_default();
            *max = (*max).max(e.index);
            if !cache {
                s.cache.clear();
                s.cache_bytes = 0;
                continue;
            }
            s.cache_bytes += e.data.len();
            s.cache.push_back(e.clone());
            while s.cache_bytes > CACHE_BYTES && s.cache.len() > 1 {
                let old = s.cache.pop_front().expect("more than one");
                s.cache_bytes -= old.data.len();
            }
        }
    }

    /// Drops the cached entries up to `index`: nobody will ask for them soon.
    pub fn trim_cache(&self, index: u64) {
        if self
            .inner
            .read()
            .cache
            .front()
            .is_none_or(|e| e.index > index)
        {
            return;
        }
        let mut s = self.inner.write();
        while s.cache.front().is_some_and(|e| e.index <= index) {
            let gone = s.cache.pop_front().expect("checked");
            s.cache_bytes -= gone.data.len();
        }
    }

    /// The offset where the batches of the first placed entry at or after `index` start:
    /// where the segment log is cut when those entries are replaced.
    pub fn placed_from(&self, index: u64) -> Option<i64> {
        let s = self.inner.read();
        let skip = index.saturating_sub(s.first) as usize;
        s.locs.iter().skip(skip).find_map(|l| l.pos.placed_at)
    }

    /// Forgets the entries whose batches start below `offset`, and every entry before them:
    /// the segments there were deleted or are about to be rewritten (retention, compaction). A
    /// follower that still needs them is sent a snapshot. Only entries up to the checkpoint
    /// have their batches below its offset, so nothing unapplied is forgotten.
    pub fn forget_below(&self, offset: i64) {
        let mut s = self.inner.write();
        let checkpoint = s.checkpoint.as_ref().map_or(0, |c| c.index);
        let mut last = None;
        for (i, l) in s.locs.iter().enumerate() {
            if s.first + i as u64 > checkpoint {
                break;
            }
            match l.pos.placed_at {
                Some(o) if o < offset => last = Some(i),
                Some(_) => break,
                None => {}
            }
        }
        if let Some(last) = last {
            s.drop_front(last + 1);
        }
    }

    /// The entries after `index`, as recorded (a placed entry without its batches, and where
    /// they are): what a restart checks against the segment log.
    pub fn recorded_after(&self, index: u64) -> io::Result<Vec<(Entry, Option<Placed>)>> {
        let s = self.inner.read();
        let from = (index + 1).max(s.first);
        (from..=s.last()).map(|i| s.read_record(i)).collect()
    }

    /// Drops the entries from `index` on (their batches did not all reach the segment log
    /// before a crash, so they were never acknowledged); the commit index cannot pass what is
    /// left.
    pub fn truncate_from(&self, index: u64) {
        let mut s = self.inner.write();
        let keep = index.saturating_sub(s.first) as usize;
        s.locs.truncate(keep);
        while s.cache.back().is_some_and(|c| c.index >= index) {
            let gone = s.cache.pop_back().expect("checked");
            s.cache_bytes -= gone.data.len();
        }
        let last = s.last();
        let floor = s.checkpoint.as_ref().map_or(0, |c| c.index);
        s.hard_state.commit = s.hard_state.commit.min(last.max(floor));
    }

    pub fn hard_state(&self) -> HardState {
        self.inner.read().hard_state.clone()
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

    pub fn checkpoint(&self) -> Option<Checkpoint> {
        self.inner.read().checkpoint.clone()
    }

    /// The index of the last durable checkpoint (0: none), without copying it.
    pub fn checkpoint_index(&self) -> u64 {
        self.inner.read().checkpoint.as_ref().map_or(0, |c| c.index)
    }

    /// A new durable checkpoint: forgets the entries of every file whose entries were all at
    /// or before it (never the file being appended to, `active`, nor any after a file that
    /// held a later one), and returns those files' numbers for the caller to delete.
    ///
    /// What a file ever held counts, not only the entries still current: entries a new leader
    /// replaced stay on disk, can run on into later files, and a replay reads that run only
    /// from where it starts, before it meets their replacements. (Dropping every file before
    /// the next entry's left such a run without its start, and the replica could not restart:
    /// found by the simulation, docs/simulation.md.)
    pub fn compact(&self, cp: Checkpoint, active: u64) -> Vec<u64> {
        let mut s = self.inner.write();
        let boundary = s
            .files
            .keys()
            .copied()
            .take_while(|&n| n < active)
            .find(|n| s.file_max.get(n).is_some_and(|&m| m > cp.index))
            .unwrap_or(active);
        let before = s.locs.iter().take_while(|l| l.pos.file < boundary).count();
        s.drop_front(before);
        s.checkpoint = Some(cp);
        let dropped: Vec<u64> = s.files.range(..boundary).map(|(&n, _)| n).collect();
        for n in &dropped {
            s.files.remove(n);
            s.file_max.remove(n);
        }
        dropped
    }

    /// A snapshot from the leader, installed: the log restarts after it, from file
    /// `first_file` on.
    pub fn install(&self, cp: Checkpoint) {
        let mut s = self.inner.write();
        s.locs.clear();
        s.cache.clear();
        s.cache_bytes = 0;
        s.first = cp.index + 1;
        s.prev_term = Some(cp.term);
        s.conf_state = cp.conf.clone();
        s.hard_state.commit = s.hard_state.commit.max(cp.index);
        let stale: Vec<u64> = s.files.range(..cp.first_file).map(|(&n, _)| n).collect();
        for n in stale {
            s.files.remove(&n);
            s.file_max.remove(&n);
        }
        s.checkpoint = Some(cp.clone());
        s.installed = Some(cp);
    }

    /// The snapshot installed since the last call, if any.
    pub fn take_installed(&self) -> Option<Checkpoint> {
        self.inner.write().installed.take()
    }

    /// Whether raft-rs asked for a newer snapshot than the checkpoint since the last call.
    pub fn take_snapshot_wanted(&self) -> bool {
        std::mem::take(&mut self.inner.write().snapshot_wanted)
    }

    /// The first read error since the last call, if any.
    pub fn take_failure(&self) -> Option<StoreError> {
        let mut s = self.inner.write();
        let path = s.dir.clone();
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
    fn last(&self) -> u64 {
        self.first + self.locs.len() as u64 - 1
    }

    /// Forgets the first `n` entries (and the cached ones among them).
    fn drop_front(&mut self, n: usize) {
        for _ in 0..n {
            let gone = self.locs.pop_front().expect("counted");
            self.first += 1;
            self.prev_term = Some(gone.term);
        }
        let first = self.first;
        while self.cache.front().is_some_and(|e| e.index < first) {
            let gone = self.cache.pop_front().expect("checked");
            self.cache_bytes -= gone.data.len();
        }
    }

    /// Entry `index` whole: a placed entry gets its batches back from the segment log.
    fn read_entry(&self, index: u64) -> io::Result<Entry> {
        let (mut e, placed) = self.read_record(index)?;
        if let Some(p) = placed {
            let batches = self.read_batches(&p).map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!("entry {index}'s batches at offset {}: {err}", p.offset),
                )
            })?;
            let mut data = e.data.to_vec();
            data.extend_from_slice(&batches);
            e.data = data.into();
        }
        Ok(e)
    }

    /// A placed entry's batches, read from its segment and checked to be what was placed
    /// (the first batch's base offset).
    fn read_batches(&self, p: &Placed) -> io::Result<Vec<u8>> {
        let dir = self.segments.as_ref().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "placed entry without a segment log",
            )
        })?;
        let file = File::open(crate::log::segment::log_path(dir, p.segment))?;
        let mut buf = vec![0u8; p.len as usize];
        file.read_exact_at(&mut buf, p.position)?;
        if buf.len() < 8 || i64::from_be_bytes(buf[..8].try_into().expect("8 bytes")) != p.offset {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the segment holds other batches there",
            ));
        }
        Ok(buf)
    }

    /// Whether a placed entry's batches are all in the segment log (checked at start, after
    /// the segment log cut a torn tail). `open` keeps the last segment opened and its length.
    fn placed_present(&self, p: &Placed, open: &mut Option<(i64, File, u64)>) -> bool {
        let Some(dir) = &self.segments else {
            return false;
        };
        if open.as_ref().is_none_or(|(base, _, _)| *base != p.segment) {
            let Ok(file) = File::open(crate::log::segment::log_path(dir, p.segment)) else {
                return false;
            };
            let Ok(len) = file.metadata().map(|m| m.len()) else {
                return false;
            };
            *open = Some((p.segment, file, len));
        }
        let Some((_, file, len)) = open.as_ref() else {
            return false;
        };
        let mut first = [0u8; 8];
        *len >= p.position + u64::from(p.len)
            && file.read_exact_at(&mut first, p.position).is_ok()
            && i64::from_be_bytes(first) == p.offset
    }

    /// Entry `index` as recorded: a placed one without its batches, and where they are.
    fn read_record(&self, index: u64) -> io::Result<(Entry, Option<Placed>)> {
        let loc = self.locs[(index - self.first) as usize];
        let bad = |why: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "entry {index} in file {} at byte {}: {why}",
                    loc.pos.file, loc.pos.at
                ),
            )
        };
        let file = self
            .files
            .get(&loc.pos.file)
            .ok_or_else(|| bad("file is gone".into()))?;
        let mut head = [0u8; RECORD_HEADER];
        file.read_exact_at(&mut head, loc.pos.at)?;
        let n = u32::from_be_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(head[4..].try_into().expect("4 bytes"));
        let mut payload = vec![0u8; n];
        file.read_exact_at(&mut payload, loc.pos.at + RECORD_HEADER as u64)?;
        if n == 0 || !matches!(payload[0], ENTRY | PLACED) || crc32c::crc32c(&payload) != crc {
            return Err(bad("record damaged".into()));
        }
        let (placed, body) = if payload[0] == PLACED {
            let (p, body) = Placed::decode(&payload[1..]).ok_or_else(|| bad("short".into()))?;
            (Some(p), body)
        } else {
            (None, &payload[1..])
        };
        let e = Entry::parse_from_bytes(body).map_err(|e| bad(e.to_string()))?;
        if e.index != index {
            return Err(bad(format!("holds entry {}", e.index)));
        }
        Ok((e, placed))
    }
}

impl DiskStorage {
    /// After the log was read at start: the first entry after the checkpoint whose batches are
    /// not all in the segment log, if any (a crash cut them before their sync completed, so
    /// they and everything after were never acknowledged). The caller truncates there.
    pub fn first_missing_placed(&self) -> io::Result<Option<u64>> {
        let s = self.inner.read();
        let after = s.checkpoint.as_ref().map_or(0, |c| c.index);
        let from = (after + 1).max(s.first);
        let mut open = None;
        for index in from..=s.last() {
            let loc = s.locs[(index - s.first) as usize];
            if loc.pos.placed_at.is_none() {
                continue;
            }
            let (_, placed) = s.read_record(index)?;
            if !placed.is_some_and(|p| s.placed_present(&p, &mut open)) {
                return Ok(Some(index));
            }
        }
        Ok(None)
    }
}

impl raft::Storage for DiskStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let s = self.inner.read();
        let mut hs = s.hard_state.clone();
        // Everything up to the checkpoint was committed (it was applied), whatever the hard
        // state on disk says.
        if let Some(c) = &s.checkpoint {
            hs.commit = hs.commit.max(c.index);
        }
        Ok(RaftState::new(hs, s.conf_state.clone()))
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
        if low < s.first {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > s.last() + 1 {
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
                        tracing::error!(dir = %w.dir.display(), error = %err, "cannot read the raft log");
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
        if idx + 1 == s.first {
            return s
                .prev_term
                .ok_or(raft::Error::Store(StorageError::Compacted));
        }
        if idx < s.first {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        match s.locs.get((idx - s.first) as usize) {
            Some(l) => Ok(l.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.inner.read().first)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        // The snapshot is the checkpoint: its data is the segment log's offset there, which
        // the follower copies up to from the leader's segments (`partition::snapshot`), and
        // the controller's metadata. A follower refuses one whose configuration does not name
        // it (one added after the checkpoint): raft-rs retries once a newer one is written.
        let mut s = self.inner.write();
        match &s.checkpoint {
            Some(c) if c.index >= request_index && names(&c.conf, to) => {
                Ok(super::snapshot::to_snapshot(c))
            }
            _ => {
                s.snapshot_wanted = true;
                Err(raft::Error::Store(
                    StorageError::SnapshotTemporarilyUnavailable,
                ))
            }
        }
    }
}

/// Whether a configuration has `id` as a voter or learner (either side of a joint one).
fn names(cs: &ConfState, id: u64) -> bool {
    cs.voters
        .iter()
        .chain(&cs.learners)
        .chain(&cs.voters_outgoing)
        .chain(&cs.learners_next)
        .any(|&v| v == id)
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
        let (mut store, s) = RaftStore::open(dir.path(), &[1], None).unwrap();
        // 64 MiB of entries: far more than the cache holds.
        for i in 1..=256u64 {
            let e = entry(i, 1 + i / 100, 256 << 10);
            let pos = store.persist(&s, std::slice::from_ref(&e), None).unwrap();
            s.append(&[e], &pos);
        }
        let (n, bytes) = s.cached();
        assert!(
            bytes <= CACHE_BYTES && n <= CACHE_BYTES / (256 << 10),
            "{n} entries, {bytes} bytes in memory"
        );
        // Entries applied and matched leave the cache; it stays the log's newest.
        s.trim_cache(250);
        assert_eq!(s.cached(), (6, 6 * (256 << 10)));
        s.trim_cache(256);
        assert_eq!(s.cached(), (0, 0));
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
        let pos = store.persist(&s, std::slice::from_ref(&e), None).unwrap();
        s.append(std::slice::from_ref(&e), &pos);
        assert_eq!(s.last_index().unwrap(), 200);
        let ctx = GetEntriesContext::empty(false);
        assert_eq!(s.entries(199, 201, None, ctx).unwrap()[1], e);
        drop((store, s));
        let (_, s) = RaftStore::open(dir.path(), &[1], None).unwrap();
        assert_eq!(s.last_index().unwrap(), 200);
        assert_eq!(s.term(200).unwrap(), 9);
        let ctx = GetEntriesContext::empty(false);
        assert_eq!(s.entries(198, 201, None, ctx).unwrap()[2], e);
        assert!(s.cached().1 <= CACHE_BYTES);
        assert!(s.take_failure().is_none());
    }

    #[test]
    fn a_checkpoint_drops_whole_files_before_it_and_a_restart_starts_after_it() {
        use crate::raft::checkpoint::Checkpoint;
        let dir = tempfile::tempdir().unwrap();
        let (mut store, s) = RaftStore::open(dir.path(), &[1], None).unwrap();
        // 80 MiB of entries: three files of the log.
        for i in 1..=320u64 {
            let e = entry(i, 1, 256 << 10);
            let pos = store.persist(&s, std::slice::from_ref(&e), None).unwrap();
            s.append(&[e], &pos);
        }
        let files = || {
            let mut v: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.starts_with("raft.log"))
                .collect();
            v.sort();
            v
        };
        assert_eq!(files(), ["raft.log", "raft.log.1", "raft.log.2"]);
        let cp = Checkpoint {
            index: 200,
            term: 1,
            conf: ConfState::from((vec![1], vec![2])),
            offset: 4242,
            first_file: 0,
            state: Default::default(),
        };
        // The checkpoint must be durable before anything it covers goes.
        cp.write(dir.path()).unwrap();
        store.compact(&s, cp.clone()).unwrap();
        // Entry 201 is in the second file: only the first goes, and entries from the second
        // file's first one stay readable.
        assert_eq!(files(), ["raft.log.1", "raft.log.2"]);
        let first = s.first_index().unwrap();
        assert!(first > 1 && first <= 201, "first index {first}");
        assert_eq!(s.term(first - 1).unwrap(), 1);
        assert!(matches!(
            s.entries(first - 1, first, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        let got = s.entries(first, first + 1, None, GetEntriesContext::empty(false));
        assert_eq!(got.unwrap()[0], entry(first, 1, 256 << 10));
        // raft-rs sends the checkpoint to a follower behind the first index.
        let snap = raft::Storage::snapshot(&s, 0, 2).unwrap();
        assert_eq!(snap.get_metadata().index, 200);
        assert_eq!(crate::raft::snapshot::offset_of(&snap), Some(4242));
        assert!(!s.take_snapshot_wanted());
        // Not to one it does not name (added later), nor older than raft-rs asks: the owner
        // is told to write a newer one.
        for (index, to) in [(0, 3), (201, 2)] {
            assert!(matches!(
                raft::Storage::snapshot(&s, index, to),
                Err(raft::Error::Store(
                    StorageError::SnapshotTemporarilyUnavailable
                ))
            ));
            assert!(s.take_snapshot_wanted());
        }
        drop((store, s));
        // A restart reads only the files left, and reports the checkpoint.
        let (_, s) = RaftStore::open(dir.path(), &[1], None).unwrap();
        assert_eq!(s.first_index().unwrap(), first);
        assert_eq!(s.last_index().unwrap(), 320);
        assert_eq!(s.checkpoint(), Some(cp));
        assert_eq!(s.initial_state().unwrap().hard_state.commit, 200);
    }

    #[test]
    fn a_damaged_record_is_a_storage_failure_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, s) = RaftStore::open(dir.path(), &[1], None).unwrap();
        for i in 1..=8u64 {
            let e = entry(i, 1, 512 << 10);
            let pos = store.persist(&s, std::slice::from_ref(&e), None).unwrap();
            s.append(&[e], &pos);
        }
        // Entry 2's record is overwritten on disk after it was written (a bad sector).
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("raft.log"))
            .unwrap();
        let pos = s.inner.read().locs[1].pos.at;
        f.write_all_at(&[0xff; 64], pos + 100).unwrap();
        // Nothing in memory (every entry applied and matched): read back from the file.
        s.trim_cache(8);
        let ctx = GetEntriesContext::empty(false);
        let got = s.entries(1, 4, None, ctx).unwrap();
        assert_eq!(got.len(), 1, "entries before the damage only");
        let err = s.take_failure().expect("the read error is kept");
        assert!(err.to_string().contains("entry 2"), "{err}");
    }
}
