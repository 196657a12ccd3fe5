//! The controller's Raft log on disk: `<data>/controller/raft.log`, an append-only file of
//! records `u32 length, u32 crc32c, u8 type, protobuf body` (entries and hard states), synced
//! before the Ready that produced them is acted on; `voters.json` holds the voter set it was
//! bootstrapped with. On start the records are replayed into raft-rs's `MemStorage`; a torn
//! or corrupt tail record is cut off (it was never synced, so never acknowledged).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Message};
use raft::storage::MemStorage;
use raft::{RawNode, Storage as _};

const ENTRY: u8 = 1;
const HARD_STATE: u8 = 2;

/// The raft-rs settings of every group, the controller's and the partitions': elections after
/// 10-20 ticks of [`crate::cluster::controller::TICK`], heartbeats every 2, pre-vote and
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
        ..Default::default()
    }
}

/// raft-rs logs through slog; its chatter is dropped (leadership changes are logged by us).
pub fn discard_logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("controller log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("controller log {0}: {1}")]
    Corrupt(PathBuf, String),
}

pub struct RaftStore {
    path: PathBuf,
    file: File,
}

impl RaftStore {
    /// Opens (or creates) the store; returns the in-memory storage rebuilt from it. `voters`
    /// bootstraps a new store and is ignored for an existing one.
    pub fn open(dir: &Path, voters: &[u64]) -> Result<(RaftStore, MemStorage), StoreError> {
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
        let storage = MemStorage::new_with_conf_state(ConfState::from((voters, vec![])));
        let path = dir.join("raft.log");
        crate::log::power::before_open_write(&path, false);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(&path))?;
        let good = replay(&bytes, &storage, &path)?;
        if good < bytes.len() {
            tracing::warn!(path = %path.display(), cut = bytes.len() - good, "cut a torn controller log tail");
            file.set_len(good as u64).map_err(io(&path))?;
            crate::log::power::truncated(&path, good as u64);
            crate::log::power::sync_file(&file, true).map_err(io(&path))?;
        }
        // A new log's directory entry must be durable before its first entry is.
        crate::log::files::sync_dir(dir).map_err(io(dir))?;
        Ok((RaftStore { path, file }, storage))
    }

    /// Appends entries and the hard state, then syncs.
    pub fn persist(&mut self, entries: &[Entry], hs: Option<&HardState>) -> Result<(), StoreError> {
        let mut buf = Vec::new();
        for e in entries {
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
            return Ok(());
        }
        let io = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&buf).map_err(io)?;
        if crate::log::power::skip_fsync() {
            // UNSAFE, tests only (`--unsafe-skip-fsync-for-tests`): Raft acts on unsynced entries.
            return Ok(());
        }
        crate::log::power::sync_file(&self.file, false).map_err(io)
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

/// Replays records into `storage`; returns the length of the valid prefix.
fn replay(bytes: &[u8], storage: &MemStorage, path: &Path) -> Result<usize, StoreError> {
    let mut pos = 0;
    while bytes.len() - pos >= 8 {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(bytes[pos + 4..pos + 8].try_into().expect("4 bytes"));
        let Some(payload) = bytes.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if len == 0 || crc32c::crc32c(payload) != crc {
            break;
        }
        let corrupt = |e: String| StoreError::Corrupt(path.to_path_buf(), e);
        match payload[0] {
            ENTRY => {
                let mut e = Entry::default();
                e.merge_from_bytes(&payload[1..])
                    .map_err(|e| corrupt(e.to_string()))?;
                let (first, last) = match (storage.first_index(), storage.last_index()) {
                    (Ok(f), Ok(l)) => (f, l),
                    _ => return Err(corrupt("unreadable storage bounds".into())),
                };
                // MemStorage panics on a gap or on compacted indexes; a log written by this
                // module has neither, so either means the file is damaged.
                if e.index < first || e.index > last + 1 {
                    return Err(corrupt(format!(
                        "entry {} does not follow [{first}, {last}]",
                        e.index
                    )));
                }
                storage
                    .wl()
                    .append(&[e])
                    .map_err(|e| corrupt(e.to_string()))?;
            }
            HARD_STATE => {
                let mut hs = HardState::default();
                hs.merge_from_bytes(&payload[1..])
                    .map_err(|e| corrupt(e.to_string()))?;
                storage.wl().set_hardstate(hs);
            }
            k => return Err(corrupt(format!("unknown record type {k}"))),
        }
        pos += 8 + len;
    }
    Ok(pos)
}

/// One raft-rs Ready cycle, in the order raft-rs requires: messages out, new entries and the
/// hard state persisted (and mirrored into the in-memory storage) before the messages that
/// depend on them, then the commit index. Returns the committed entries, oldest first, for
/// the caller to apply. Shared by the controller and the partition groups.
pub fn run_ready(
    node: &mut RawNode<MemStorage>,
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
        store.persist(ready.entries(), None)?;
        let _ = node.store().wl().append(ready.entries());
    }
    if let Some(hs) = ready.hs() {
        store.persist(&[], Some(hs))?;
        node.store().wl().set_hardstate(hs.clone());
    }
    send(ready.take_persisted_messages());
    let mut light = node.advance(ready);
    if let Some(commit) = light.commit_index() {
        node.store().wl().mut_hard_state().set_commit(commit);
        let hs = node.store().rl().hard_state().clone();
        store.persist(&[], Some(&hs))?;
    }
    send(light.take_messages());
    committed.extend(light.take_committed_entries());
    node.advance_apply();
    Ok(committed)
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
