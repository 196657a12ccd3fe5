//! A Raft group's log on disk (the controller's `<data>/controller/raft.log` and each
//! partition replica's under `<data>/raft/`): an append-only file of records `u32 length, u32
//! crc32c, u8 type, protobuf body` (entries and hard states), synced before the Ready that
//! produced them is acted on; `voters.json` holds the voter set it was bootstrapped with. On
//! start the file is read once, record by record, into a [`DiskStorage`] that keeps where each
//! entry is rather than the entry; a torn or corrupt tail record is cut off (it was never
//! synced, so never acknowledged).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Message};
use raft::RawNode;

use super::storage::DiskStorage;

pub(super) const ENTRY: u8 = 1;
pub(super) const HARD_STATE: u8 = 2;
/// A record's header: `u32 length, u32 crc32c` (big-endian).
pub(super) const RECORD_HEADER: usize = 8;

/// The raft-rs settings of every group, the controller's and the partitions': elections after
/// 10-20 ticks of [`crate::raft::TICK`], heartbeats every 2, pre-vote and
/// check-quorum so a returning or cut-off node cannot depose a healthy leader.
pub fn raft_config(id: u64) -> raft::Config {
    raft::Config {
        id,
        election_tick: 10,
        heartbeat_tick: 2,
        check_quorum: true,
        pre_vote: true,
        max_size_per_msg: 1 << 20,
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

/// The writing end of a Raft log file.
pub struct RaftStore {
    path: PathBuf,
    file: Arc<File>,
    /// The file's length: where the next record goes.
    len: u64,
}

impl RaftStore {
    /// Opens (or creates) the store; returns the storage raft-rs reads, rebuilt from it.
    /// `voters` bootstraps a new store and is ignored for an existing one.
    pub fn open(dir: &Path, voters: &[u64]) -> Result<(RaftStore, DiskStorage), StoreError> {
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
        let path = dir.join("raft.log");
        crate::log::power::before_open_write(&path, false);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let reader = File::open(&path).map_err(io(&path))?;
        let storage = DiskStorage::new(path.clone(), reader, ConfState::from((voters, vec![])));
        let len = file.metadata().map_err(io(&path))?.len();
        let good = replay(&file, len, &storage, &path)?;
        if good < len {
            tracing::warn!(path = %path.display(), cut = len - good, "cut a torn raft log tail");
            file.set_len(good).map_err(io(&path))?;
            crate::log::power::truncated(&path, good);
            crate::log::power::sync_file(&file, true).map_err(io(&path))?;
        }
        // A new log's directory entry must be durable before its first entry is.
        crate::log::files::sync_dir(dir).map_err(io(dir))?;
        Ok((
            RaftStore {
                path,
                file: Arc::new(file),
                len: good,
            },
            storage,
        ))
    }

    /// Appends entries and the hard state, then syncs. Returns where each entry's record
    /// starts in the file.
    pub fn persist(
        &mut self,
        entries: &[Entry],
        hs: Option<&HardState>,
    ) -> Result<Vec<u64>, StoreError> {
        let positions = self.write(entries, hs)?;
        if crate::log::power::skip_fsync() {
            // UNSAFE, tests only (`--unsafe-skip-fsync-for-tests`): Raft acts on unsynced entries.
            return Ok(positions);
        }
        crate::log::power::sync_file(&self.file, false).map_err(|source| StoreError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(positions)
    }

    /// The file, for a sync the caller runs off the shard thread ([`run_ready_unsynced`]).
    pub fn file(&self) -> Arc<File> {
        self.file.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends entries and the hard state without syncing; returns where each entry's record
    /// starts in the file.
    pub fn write(
        &mut self,
        entries: &[Entry],
        hs: Option<&HardState>,
    ) -> Result<Vec<u64>, StoreError> {
        let mut buf = Vec::new();
        let mut positions = Vec::with_capacity(entries.len());
        for e in entries {
            positions.push(self.len + buf.len() as u64);
            record(
                &mut buf,
                ENTRY,
                &e.write_to_bytes().map_err(|e| self.corrupt(e))?,
            );
        }
        if let Some(hs) = hs {
            record(
                &mut buf,
                HARD_STATE,
                &hs.write_to_bytes().map_err(|e| self.corrupt(e))?,
            );
        }
        if buf.is_empty() {
            return Ok(positions);
        }
        let io = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        // A failed write may have left part of the buffer in the file: the replica stops (the
        // caller fails closed) and the next start cuts the torn record.
        (&*self.file).write_all(&buf).map_err(io)?;
        self.len += buf.len() as u64;
        Ok(positions)
    }

    fn corrupt(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt(self.path.clone(), e.to_string())
    }
}

fn record(buf: &mut Vec<u8>, kind: u8, body: &[u8]) {
    let mut payload = Vec::with_capacity(body.len() + 1);
    payload.push(kind);
    payload.extend_from_slice(body);
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    buf.extend_from_slice(&payload);
}

/// Reads the file's records into `storage`, one at a time (the log is never all in memory);
/// returns the length of the valid prefix.
fn replay(file: &File, len: u64, storage: &DiskStorage, path: &Path) -> Result<u64, StoreError> {
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
            ENTRY => {
                let mut e = Entry::default();
                e.merge_from_bytes(&payload[1..])
                    .map_err(|e| corrupt(e.to_string()))?;
                let last = storage.last();
                // The log has no gaps and starts at index 1; anything else means the file is
                // damaged.
                if e.index < 1 || e.index > last + 1 {
                    return Err(corrupt(format!(
                        "entry {} does not follow [1, {last}]",
                        e.index
                    )));
                }
                storage.append(std::slice::from_ref(&e), &[pos]);
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
    let mut ready = node.ready();
    send(ready.take_messages());
    let mut committed = ready.take_committed_entries();
    if !ready.entries().is_empty() {
        let positions = store.persist(ready.entries(), None)?;
        node.store().append(ready.entries(), &positions);
    }
    if let Some(hs) = ready.hs() {
        store.persist(&[], Some(hs))?;
        node.store().set_hard_state(hs.clone());
    }
    send(ready.take_persisted_messages());
    let mut light = node.advance(ready);
    if let Some(commit) = light.commit_index() {
        let hs = node.store().set_commit(commit);
        store.persist(&[], Some(&hs))?;
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
    mut send: impl FnMut(Vec<Message>),
) -> Result<(Vec<Entry>, Option<Unsynced>), StoreError> {
    if !node.has_ready() {
        return Ok((Vec::new(), None));
    }
    let mut ready = node.ready();
    send(ready.take_messages());
    let committed = ready.take_committed_entries();
    if !ready.entries().is_empty() {
        let positions = store.write(ready.entries(), None)?;
        node.store().append(ready.entries(), &positions);
    }
    if let Some(hs) = ready.hs() {
        store.write(&[], Some(hs))?;
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
        let (mut s, _) = RaftStore::open(dir.path(), &[1, 2, 3]).unwrap();
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
        s.persist(&ents, Some(&hs)).unwrap();
        // A conflicting entry 3 of term 2 replaces the old one on replay.
        let mut e3 = ents[2].clone();
        e3.term = 2;
        s.persist(&[e3], None).unwrap();
        drop(s);
        let path = dir.path().join("raft.log");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0, 0, 0, 50, 1, 2]).unwrap();
        drop(f);
        let (_, mem) = RaftStore::open(dir.path(), &[9]).unwrap();
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
}
