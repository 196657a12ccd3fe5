//! A Raft group's log on disk (the controller's `<data>/controller/` and each partition
//! replica's under `<data>/raft/`): append-only files of records `u32 length, u32 crc32c, u8
//! type, body` (entries, hard states, and entries whose batches a partition placed in its
//! segments, [`Segments`]), `raft.log` then `raft.log.1`, `raft.log.2`,
//! ... (a new one every [`FILE_BYTES`], starting with the hard state), so that the files
//! wholly before a partition's checkpoint can be deleted ([`super::checkpoint`]); synced
//! before the Ready that produced them is acted on; `voters.json` holds the voter set it was
//! bootstrapped with. On start the files are read once, record by record, into a
//! [`DiskStorage`] that keeps where each entry is rather than the entry; a torn or corrupt
//! record ends the log there (it and everything written after it were never synced, so never
//! acknowledged).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Message};
use raft::RawNode;

use super::checkpoint::Checkpoint;
pub use super::record::Placed;
pub use super::record::StoreError;
use super::record::{record, ENTRY, HARD_STATE, PLACED, RECORD_HEADER};
use super::storage::{DiskStorage, Pos};

/// A new log file is started past this size (by default), so old entries go a file at a time.
pub const FILE_BYTES: u64 = 32 << 20;

/// The most entry bytes raft-rs puts in one append (`max_size_per_msg`).
pub const MAX_SIZE_PER_MSG: u64 = 1 << 20;

/// The raft-rs settings of every group, the controller's and the partitions': elections after
/// 10-20 ticks of [`crate::raft::TICK`], heartbeats every 2, pre-vote and
/// check-quorum so a returning or cut-off node cannot depose a healthy leader.
pub fn raft_config(id: u64) -> raft::Config {
    raft::Config {
        id,
        election_tick: crate::raft::ELECTION_TICKS as usize,
        heartbeat_tick: 2,
        check_quorum: true,
        pre_vote: true,
        max_size_per_msg: MAX_SIZE_PER_MSG,
        max_inflight_msgs: 256,
        // Committed entries are handed over (and read from disk) in slices of this size, so a
        // replica re-applying a long log at start never holds it all in memory.
        max_committed_size_per_ready: 16 << 20,
        ..Default::default()
    }
}

/// raft-rs logs through slog; its chatter is dropped (leadership changes are logged by us).
pub fn discard_logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// The partition's segment log, as the Ready cycle places entries' batches in it (one log).
pub trait Segments {
    /// Appends the batches of entry `e` to the segment log if it carries assigned batches that
    /// continue it; returns where they went (`None`: the entry is written whole to the Raft
    /// log, and its batches are appended when it is applied).
    fn place(&mut self, e: &Entry) -> std::io::Result<Option<Placed>>;
    /// The entries whose batches start at `offset` and after are being replaced (a new leader
    /// overwriting an uncommitted suffix): their batches go.
    fn cut(&mut self, offset: i64) -> std::io::Result<()>;
    /// Syncs what was placed, on this thread (the rare synced Ready: a snapshot's).
    fn sync(&mut self) -> std::io::Result<()>;
}

/// No segment log (the controller's groups): every entry is written whole.
pub struct NoSegments;

impl Segments for NoSegments {
    fn place(&mut self, _: &Entry) -> std::io::Result<Option<Placed>> {
        Ok(None)
    }
    fn cut(&mut self, _: i64) -> std::io::Result<()> {
        Ok(())
    }
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The writing end of a Raft log.
pub struct RaftStore {
    dir: PathBuf,
    /// The file appended to, and its number.
    file: Arc<File>,
    number: u64,
    /// Its length: where the next record goes.
    len: u64,
    /// Bytes of batches its placed entries hold in the segment log: counted towards
    /// [`Self::file_bytes`], so that a file never covers much more of the segment log than
    /// the files of unplaced entries do (retention keeps what the Raft log may still read).
    covered: u64,
    /// Files written since the last [`Self::take_dirty`] (a new file leaves the old one dirty).
    dirty: Vec<Arc<File>>,
    /// A new file is started past this size.
    file_bytes: u64,
    checkpoints: super::checkpoint::Writer,
}

/// The name of log file `n`.
fn file_name(n: u64) -> String {
    if n == 0 {
        "raft.log".to_string()
    } else {
        format!("raft.log.{n}")
    }
}

/// The log files in `dir`, by number.
fn list_files(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == "raft.log" {
            out.push(0);
        } else if let Some(n) = name.strip_prefix("raft.log.").and_then(|n| n.parse().ok()) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

impl RaftStore {
    /// Opens (or creates) the store; returns the storage raft-rs reads, rebuilt from it.
    /// `voters` bootstraps a new store and is ignored for an existing one.
    /// `segments` is the partition's segment log, where placed entries' batches are.
    pub fn open(
        dir: &Path,
        voters: &[u64],
        segments: Option<&Path>,
    ) -> Result<(RaftStore, DiskStorage), StoreError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        crate::log::power::create_dir_all(dir).map_err(io(dir))?;
        let vpath = dir.join("voters.json");
        let voters: Vec<u64> = match std::fs::read(&vpath) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| StoreError::Corrupt(vpath.clone(), e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let b = serde_json::to_vec(voters).expect("a list of integers serializes");
                crate::log::files::write_atomic(&vpath, &b).map_err(io(&vpath))?;
                voters.to_vec()
            }
            Err(e) => return Err(io(&vpath)(e)),
        };
        let checkpoint = Checkpoint::read(dir)?;
        let first_file = checkpoint.as_ref().map_or(0, |c| c.first_file);
        let storage = DiskStorage::new(
            dir.to_path_buf(),
            segments.map(Path::to_path_buf),
            ConfState::from((voters, vec![])),
            checkpoint,
        );
        let mut numbers = list_files(dir).map_err(io(dir))?;
        // Files a snapshot replaced: a crash came between the checkpoint and their deletion.
        for &n in numbers.iter().filter(|&&n| n < first_file) {
            remove_file(dir, n)?;
        }
        numbers.retain(|&n| n >= first_file);
        if numbers.is_empty() {
            numbers.push(first_file);
        }
        let mut open = None;
        for (i, &n) in numbers.iter().enumerate() {
            let path = dir.join(file_name(n));
            let file = open_file(&storage, dir, n, false)?;
            let len = file.metadata().map_err(io(&path))?.len();
            let good = replay(&file, n, len, &storage, &path)?;
            if good < len {
                tracing::warn!(path = %path.display(), cut = len - good, "cut a torn raft log tail");
                file.set_len(good).map_err(io(&path))?;
                crate::log::power::truncated(&path, good);
                crate::log::power::sync_file(&file, true).map_err(io(&path))?;
                // Nothing after a torn record was ever synced: later files go too.
                for &later in &numbers[i + 1..] {
                    remove_file(dir, later)?;
                }
                open = Some((n, file, good));
                break;
            }
            open = Some((n, file, good));
        }
        let (number, file, len) = open.expect("at least one file");
        if let Some(index) = storage.first_missing_placed().map_err(io(dir))? {
            tracing::warn!(dir = %dir.display(), index, "raft entries whose batches a crash cut from the segment log dropped (never acknowledged)");
            storage.truncate_from(index);
        }
        // A new log's directory entry must be durable before its first entry is.
        crate::log::files::sync_dir(dir).map_err(io(dir))?;
        Ok((
            RaftStore {
                dir: dir.to_path_buf(),
                file: Arc::new(file),
                number,
                len,
                covered: 0,
                dirty: Vec::new(),
                file_bytes: FILE_BYTES,
                checkpoints: super::checkpoint::Writer::new(dir, storage.checkpoint_index()),
            },
            storage,
        ))
    }

    /// What writes this log's checkpoints.
    pub fn checkpoints(&self) -> super::checkpoint::Writer {
        self.checkpoints.clone()
    }

    pub fn set_file_bytes(&mut self, n: u64) {
        self.file_bytes = n.max(4096);
    }

    /// Appends entries and the hard state, then syncs. Returns where each entry's record is.
    pub fn persist(
        &mut self,
        storage: &DiskStorage,
        entries: &[Entry],
        hs: Option<&HardState>,
    ) -> Result<Vec<Pos>, StoreError> {
        let positions = self.write(storage, entries, hs, &[])?;
        self.sync()?;
        Ok(positions)
    }

    /// Syncs every file written since the last sync, on this thread.
    fn sync(&mut self) -> Result<(), StoreError> {
        let files = self.take_dirty();
        if crate::log::power::skip_fsync() {
            // UNSAFE, tests only (`--unsafe-skip-fsync-for-tests`): Raft acts on unsynced entries.
            return Ok(());
        }
        for f in files {
            crate::log::power::sync_file(&f, false).map_err(|source| StoreError::Io {
                path: self.path(),
                source,
            })?;
        }
        Ok(())
    }

    /// The files written since the last call, for a sync the caller runs off the shard thread
    /// ([`run_ready_unsynced`]).
    pub fn take_dirty(&mut self) -> Vec<Arc<File>> {
        std::mem::take(&mut self.dirty)
    }

    /// The file being appended to.
    pub fn path(&self) -> PathBuf {
        self.dir.join(file_name(self.number))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends entries and the hard state without syncing; returns where each entry's record
    /// is. An entry with a `placed` location (same position) is written without its batches.
    pub fn write(
        &mut self,
        storage: &DiskStorage,
        entries: &[Entry],
        hs: Option<&HardState>,
        placed: &[Option<Placed>],
    ) -> Result<Vec<Pos>, StoreError> {
        if self.len + self.covered >= self.file_bytes && !entries.is_empty() {
            self.next_file(storage)?;
        }
        let mut buf = Vec::new();
        let mut positions = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let p = placed.get(i).copied().flatten();
            positions.push(Pos {
                file: self.number,
                at: self.len + buf.len() as u64,
                placed_at: p.map(|p| p.offset),
            });
            match p {
                Some(p) if (p.len as usize) <= e.data.len() => {
                    let mut head = e.clone();
                    head.data = e.data.slice(..e.data.len() - p.len as usize);
                    let mut body = Vec::with_capacity(64 + head.data.len());
                    p.encode(&mut body);
                    body.extend_from_slice(&head.write_to_bytes().map_err(|e| self.corrupt(e))?);
                    record(&mut buf, PLACED, &body);
                    self.covered += u64::from(p.len);
                }
                _ => record(
                    &mut buf,
                    ENTRY,
                    &e.write_to_bytes().map_err(|e| self.corrupt(e))?,
                ),
            }
        }
        if let Some(hs) = hs {
            record(
                &mut buf,
                HARD_STATE,
                &hs.write_to_bytes().map_err(|e| self.corrupt(e))?,
            );
        }
        self.append(&buf)?;
        Ok(positions)
    }

    fn append(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        if buf.is_empty() {
            return Ok(());
        }
        let io = |source| StoreError::Io {
            path: self.path(),
            source,
        };
        // A failed write may have left part of the buffer in the file: the replica stops (the
        // caller fails closed) and the next start cuts the torn record.
        (&*self.file).write_all(buf).map_err(io)?;
        self.len += buf.len() as u64;
        if !self.dirty.iter().any(|f| Arc::ptr_eq(f, &self.file)) {
            self.dirty.push(self.file.clone());
        }
        Ok(())
    }

    /// Starts the next file, with the current hard state first so that the files before it
    /// can go. The old file stays dirty until the next sync; were it torn by a crash, the
    /// replay drops the new file too.
    fn next_file(&mut self, storage: &DiskStorage) -> Result<(), StoreError> {
        let number = self.number + 1;
        let path = self.dir.join(file_name(number));
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        // Nothing of a file past the last one replayed was ever synced.
        remove_file(&self.dir, number)?;
        let file = open_file(storage, &self.dir, number, true)?;
        crate::log::files::sync_dir(&self.dir).map_err(io)?;
        self.file = Arc::new(file);
        self.number = number;
        self.len = 0;
        self.covered = 0;
        let mut buf = Vec::new();
        let hs = storage.hard_state();
        record(
            &mut buf,
            HARD_STATE,
            &hs.write_to_bytes().map_err(|e| self.corrupt(e))?,
        );
        self.append(&buf)
    }

    /// A durable checkpoint: the files wholly before it are deleted.
    pub fn compact(&mut self, storage: &DiskStorage, cp: Checkpoint) -> Result<(), StoreError> {
        for n in storage.compact(cp, self.number) {
            remove_file(&self.dir, n)?;
        }
        Ok(())
    }

    /// Installs a snapshot from the leader (the caller copied its segments and synced them):
    /// a new file with the hard state, then the checkpoint naming it as the first file, then
    /// the old files go. A crash in between leaves either the old log and checkpoint, or the
    /// new checkpoint with stale files it tells the next start to delete.
    pub fn install(
        &mut self,
        storage: &DiskStorage,
        snapshot: &raft::eraftpb::Snapshot,
    ) -> Result<(), StoreError> {
        let cp = super::snapshot::checkpoint_of(snapshot, self.number + 1).ok_or_else(|| {
            StoreError::Corrupt(self.dir.clone(), "a snapshot without an offset".into())
        })?;
        // The new file starts with the hard state as it is: a commit index past the old files'
        // last entry must not be on disk before the checkpoint that covers it (a start in
        // between would find the commit beyond the log). Once the checkpoint is, the storage
        // counts everything up to it as committed.
        self.next_file(storage)?;
        self.sync()?;
        if !self.checkpoints.write(&cp)? {
            return Err(StoreError::Corrupt(
                self.dir.clone(),
                format!("a snapshot at {} is not past the checkpoint", cp.index),
            ));
        }
        storage.install(cp.clone());
        for n in list_files(&self.dir).map_err(|source| StoreError::Io {
            path: self.dir.clone(),
            source,
        })? {
            if n < cp.first_file {
                remove_file(&self.dir, n)?;
            }
        }
        Ok(())
    }

    fn corrupt(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt(self.path(), e.to_string())
    }
}

/// Opens log file `n` for appending (creating it, `fresh` for the power-cut ledger) and hands
/// a read handle on it to the storage.
fn open_file(storage: &DiskStorage, dir: &Path, n: u64, fresh: bool) -> Result<File, StoreError> {
    let path = dir.join(file_name(n));
    let io = |source| StoreError::Io {
        path: path.clone(),
        source,
    };
    crate::log::power::before_open_write(&path, fresh);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    storage.add_file(n, File::open(&path).map_err(io)?);
    Ok(file)
}

fn remove_file(dir: &Path, n: u64) -> Result<(), StoreError> {
    let path = dir.join(file_name(n));
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StoreError::Io { path, source }),
    }
}

/// Reads the file's records into `storage`, one at a time (the log is never all in memory);
/// returns the length of the valid prefix.
fn replay(
    file: &File,
    number: u64,
    len: u64,
    storage: &DiskStorage,
    path: &Path,
) -> Result<u64, StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let corrupt = |e: String| StoreError::Corrupt(path.to_path_buf(), e);
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut pos = 0u64;
    let mut payload = Vec::new();
    while len - pos >= RECORD_HEADER as u64 {
        let mut head = [0u8; RECORD_HEADER];
        r.read_exact(&mut head).map_err(io)?;
        let n = u32::from_be_bytes(head[..4].try_into().expect("4 bytes")) as u64;
        let crc = u32::from_be_bytes(head[4..].try_into().expect("4 bytes"));
        // A length past the end is a torn (or damaged) tail, not an allocation to make.
        if n == 0 || n > len - pos - RECORD_HEADER as u64 {
            break;
        }
        payload.resize(n as usize, 0);
        r.read_exact(&mut payload).map_err(io)?;
        if crc32c::crc32c(&payload) != crc {
            break;
        }
        match payload[0] {
            ENTRY | PLACED => {
                let (placed_at, body) = if payload[0] == PLACED {
                    let (placed, body) = super::record::Placed::decode(&payload[1..])
                        .ok_or_else(|| corrupt("short placed entry record".into()))?;
                    (Some(placed.offset), body)
                } else {
                    (None, &payload[1..])
                };
                let mut e = Entry::default();
                e.merge_from_bytes(body)
                    .map_err(|e| corrupt(e.to_string()))?;
                let last = storage.last();
                // The log has no gaps; anything else means the file is damaged.
                if e.index < 1 || e.index > last + 1 {
                    return Err(corrupt(format!(
                        "entry {} does not follow [{}, {last}]",
                        e.index,
                        storage.first()
                    )));
                }
                let at = Pos {
                    file: number,
                    at: pos,
                    placed_at,
                };
                storage.append_replayed(&e, at);
            }
            HARD_STATE => {
                let mut hs = HardState::default();
                hs.merge_from_bytes(&payload[1..])
                    .map_err(|e| corrupt(e.to_string()))?;
                storage.set_hard_state(hs);
            }
            k => return Err(corrupt(format!("unknown record type {k}"))),
        }
        pos += RECORD_HEADER as u64 + n;
    }
    Ok(pos)
}

/// One raft-rs Ready cycle, in the order raft-rs requires: messages out, new entries and the
/// hard state persisted (and mirrored into the in-memory storage) before the messages that
/// depend on them, then the commit index. Returns the committed entries, oldest first, for
/// the caller to apply. Shared by the controller and the partition groups.
pub fn run_ready(
    node: &mut RawNode<DiskStorage>,
    store: &mut RaftStore,
    mut send: impl FnMut(Vec<Message>),
) -> Result<Vec<Entry>, StoreError> {
    if !node.has_ready() {
        return Ok(Vec::new());
    }
    let ready = node.ready();
    run_synced(node, store, ready, &mut NoSegments, &mut send)
}

/// [`run_ready`] for a Ready the caller took (the controller looks at its snapshot first),
/// placing entries' batches in `segments` as [`run_ready_unsynced`] does.
pub fn run_synced(
    node: &mut RawNode<DiskStorage>,
    store: &mut RaftStore,
    mut ready: raft::Ready,
    segments: &mut dyn Segments,
    send: &mut impl FnMut(Vec<Message>),
) -> Result<Vec<Entry>, StoreError> {
    send(ready.take_messages());
    if !ready.snapshot().is_empty() {
        // A snapshot from the leader, its segments already copied (`partition::snapshot`).
        store.install(node.store(), ready.snapshot())?;
    }
    let mut committed = ready.take_committed_entries();
    if !ready.entries().is_empty() {
        let placed = place(node, store, ready.entries(), segments)?;
        let positions = store.write(node.store(), ready.entries(), None, &placed)?;
        segments.sync().map_err(|source| StoreError::Io {
            path: store.dir().to_path_buf(),
            source,
        })?;
        store.sync()?;
        node.store().append(ready.entries(), &positions);
    }
    if let Some(hs) = ready.hs() {
        store.persist(node.store(), &[], Some(hs))?;
        node.store().set_hard_state(hs.clone());
    }
    send(ready.take_persisted_messages());
    let mut light = node.advance(ready);
    if let Some(commit) = light.commit_index() {
        let hs = node.store().set_commit(commit);
        store.persist(node.store(), &[], Some(&hs))?;
    }
    send(light.take_messages());
    committed.extend(light.take_committed_entries());
    node.advance_apply();
    // raft-rs cannot be told that a read failed: the storage hands it fewer entries and keeps
    // the error, which stops the group here.
    if let Some(e) = node.store().take_failure() {
        return Err(e);
    }
    Ok(committed)
}

/// Places new entries' batches in the segment log, where they continue it; a new leader's
/// entries that replace this replica's uncommitted suffix first cut the batches placed for it,
/// so that the new ones continue the segment log.
fn place(
    node: &RawNode<DiskStorage>,
    store: &RaftStore,
    entries: &[Entry],
    segments: &mut dyn Segments,
) -> Result<Vec<Option<Placed>>, StoreError> {
    let seg_err = |source| StoreError::Io {
        path: store.dir().to_path_buf(),
        source,
    };
    if let Some(first) = entries.first() {
        if first.index <= node.store().last() {
            if let Some(offset) = node.store().placed_from(first.index) {
                segments.cut(offset).map_err(seg_err)?;
            }
        }
    }
    entries
        .iter()
        .map(|e| segments.place(e).map_err(seg_err))
        .collect()
}

/// What a Ready written but not yet synced still owes: the messages that may only leave once
/// the log file is synced (votes, append acknowledgements), and the Ready's number for
/// raft-rs's `on_persist_ready`.
pub struct Unsynced {
    pub number: u64,
    pub messages: Vec<Message>,
}

/// One raft-rs Ready cycle with the sync left to the caller, so that it never blocks the shard
/// thread (the partition groups; the controller, which writes little, keeps [`run_ready`]).
/// Entries and the hard state are written and made readable to raft-rs, the messages that may
/// leave before the sync (a leader's appends) are sent, and the committed entries returned;
/// what must wait for the sync comes back as [`Unsynced`]. The caller syncs the file, then
/// sends those messages and calls `on_persist_ready` in Ready order; until then raft-rs counts
/// none of this Ready's entries as persisted here, so no commit depends on them.
pub fn run_ready_unsynced(
    node: &mut RawNode<DiskStorage>,
    store: &mut RaftStore,
    segments: &mut dyn Segments,
    mut send: impl FnMut(Vec<Message>),
) -> Result<(Vec<Entry>, Option<Unsynced>), StoreError> {
    if !node.has_ready() {
        return Ok((Vec::new(), None));
    }
    let mut ready = node.ready();
    if !ready.snapshot().is_empty() {
        // Installing a snapshot is rare and synced where it happens: the log restarts after it.
        return Ok((run_synced(node, store, ready, segments, &mut send)?, None));
    }
    send(ready.take_messages());
    let committed = ready.take_committed_entries();
    if !ready.entries().is_empty() {
        let placed = place(node, store, ready.entries(), segments)?;
        let positions = store.write(node.store(), ready.entries(), None, &placed)?;
        node.store().append(ready.entries(), &positions);
    }
    if let Some(hs) = ready.hs() {
        store.write(node.store(), &[], Some(hs), &[])?;
        node.store().set_hard_state(hs.clone());
    }
    let unsynced = Unsynced {
        number: ready.number(),
        messages: ready.take_persisted_messages(),
    };
    node.advance_append_async(ready);
    if let Some(last) = committed.last() {
        node.advance_apply_to(last.index);
    }
    if let Some(e) = node.store().take_failure() {
        return Err(e);
    }
    Ok((committed, Some(unsynced)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    #[test]
    fn entries_and_hard_state_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, st) = RaftStore::open(dir.path(), &[1, 2, 3], None).unwrap();
        let ents: Vec<Entry> = (1..=3)
            .map(|i| Entry {
                index: i,
                term: 1,
                data: vec![i as u8].into(),
                ..Default::default()
            })
            .collect();
        let hs = HardState {
            term: 1,
            commit: 2,
            ..Default::default()
        };
        s.persist(&st, &ents, Some(&hs)).unwrap();
        // A conflicting entry 3 of term 2 replaces the old one on replay.
        let mut e3 = ents[2].clone();
        e3.term = 2;
        s.persist(&st, &[e3], None).unwrap();
        drop(s);
        let path = dir.path().join("raft.log");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0, 0, 0, 50, 1, 2]).unwrap();
        drop(f);
        let (_, mem) = RaftStore::open(dir.path(), &[9], None).unwrap();
        assert_eq!(mem.last_index().unwrap(), 3);
        assert_eq!(mem.term(3).unwrap(), 2);
        let st = mem.initial_state().unwrap();
        assert_eq!(st.hard_state.commit, 2);
        assert_eq!(
            st.conf_state.voters,
            vec![1, 2, 3],
            "the first voter set is kept"
        );
    }

    #[test]
    fn a_checkpoint_keeps_the_start_of_replaced_entries_that_run_into_later_files() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, st) = RaftStore::open(dir.path(), &[1, 2, 3], None).unwrap();
        s.set_file_bytes(4096);
        let entry = |index, term| Entry {
            index,
            term,
            data: vec![index as u8; 600].into(),
            ..Default::default()
        };
        // Term 1 writes 1..=20 over several files; a new leader (term 2) replaces 5 on, and
        // its entries follow the old ones in the last file.
        let persist = |s: &mut RaftStore, ents: &[Entry]| {
            let at = s.persist(&st, ents, None).unwrap();
            st.append(ents, &at);
        };
        for i in 1..=20 {
            persist(&mut s, &[entry(i, 1)]);
        }
        assert!(s.number > 1, "the entries span several files");
        persist(&mut s, &[entry(5, 2), entry(6, 2), entry(7, 2)]);
        let cp = Checkpoint {
            index: 6,
            term: 2,
            conf: ConfState::from((vec![1, 2, 3], vec![])),
            offset: 0,
            first_file: 0,
            state: Default::default(),
        };
        assert!(s.checkpoints().write(&cp).unwrap());
        s.compact(&st, cp).unwrap();
        drop(s);
        // The replaced run 5..=20 starts in the first file: without it the replay met 8 (or
        // whichever entry the kept files started with) after the checkpoint at 6.
        let (_, mem) = RaftStore::open(dir.path(), &[1, 2, 3], None).unwrap();
        assert_eq!(mem.last_index().unwrap(), 7);
        assert_eq!(mem.term(7).unwrap(), 2);
    }
}
