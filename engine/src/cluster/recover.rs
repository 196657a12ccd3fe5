//! Controller quorum recovery (`serve --recover-controller`): when a majority of the controller's
//! voters is lost for good, one surviving broker re-forms the group alone from what its own
//! log holds, as etcd's `--force-new-cluster` does. Its checkpoint's metadata plus every entry
//! after it in its log (committed or not: nobody is left to say) become a new checkpoint whose
//! configuration has this broker as the only voter; the old log files go. The other survivors
//! then rejoin with an empty controller directory and this broker as their only seed: they
//! start as learners, receive the metadata as a snapshot, and are promoted to voters up to
//! `--controller-quorum-size` (docs/operations: "Controller quorum loss").
//!
//! With `--restore-metadata <file>` the metadata comes from a backup instead (`icestream
//! cluster backup`, [`Backup`]): for when no survivor's controller log can be trusted or one is
//! left at all.

use std::collections::BTreeSet;
use std::path::Path;

use protobuf::Message as _;
use raft::eraftpb::{ConfChangeType, ConfChangeV2, ConfState, EntryType, HardState};
use raft::{GetEntriesContext, Storage};

use super::metadata_state::MetadataState;
use super::Proposal;
use crate::raft::checkpoint::Checkpoint;
use crate::raft::log_file::{RaftStore, StoreError};

/// A backup of the cluster metadata: what `GET /v1/cluster/metadata` answers and
/// `--restore-metadata` reads.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Backup {
    /// Always [`Backup::FORMAT`]: tells a backup from another JSON file.
    pub format: String,
    pub cluster_id: String,
    /// The controller entry the metadata reflects.
    pub index: u64,
    pub metadata: MetadataState,
}

impl Backup {
    pub const FORMAT: &'static str = "icestream-cluster-metadata/1";

    pub fn new(cluster_id: String, index: u64, metadata: MetadataState) -> Backup {
        Backup {
            format: Self::FORMAT.into(),
            cluster_id,
            index,
            metadata,
        }
    }

    /// Reads a backup file, refusing one of another cluster or that is not a backup.
    pub fn read(path: &Path, cluster_id: &str) -> Result<Backup, RecoverError> {
        let bad = |why: String| RecoverError::Backup(path.display().to_string(), why);
        let body = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let b: Backup = serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
        if b.format != Self::FORMAT {
            return Err(bad(format!("format '{}', not {}", b.format, Self::FORMAT)));
        }
        if b.cluster_id != cluster_id {
            return Err(bad(format!(
                "it is cluster {}'s, this broker belongs to {cluster_id}",
                b.cluster_id
            )));
        }
        Ok(b)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("cannot restore the metadata backup {0}: {1}")]
    Backup(String, String),
    #[error("nothing to recover: {0} holds no controller log")]
    Nothing(String),
    #[error("the controller group was already re-formed and other brokers joined it ({0:?}); start without --recover-controller")]
    AlreadyRejoined(Vec<i32>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Written once a recovery is done (its index): a later start with the flag left on is refused
/// once other brokers have joined.
const MARKER: &str = "recovered";

/// What recovery found and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The last entry of the old log, now the checkpoint's index.
    pub index: u64,
    pub term: u64,
    pub topics: usize,
}

/// Rewrites the controller directory `dir` so that `me` is its group's only voter, keeping the
/// metadata as this broker's log has it, or as `restore` holds it. A restored checkpoint's
/// index is past everything this broker's log and topic table (`table_index`) reflect, so the
/// brokers reconcile to it: topics the backup lacks are deleted, as the metadata says.
pub fn recover(
    dir: &Path,
    me: u64,
    restore: Option<&Backup>,
    table_index: u64,
) -> Result<Recovered, RecoverError> {
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(dir.to_path_buf(), e.to_string());
    if restore.is_none() && !dir.join("voters.json").exists() {
        return Err(RecoverError::Nothing(dir.display().to_string()));
    }
    let (mut store, storage) = RaftStore::open(dir, &[me], None)?;
    let checkpoint = storage.checkpoint();
    let mut state = match checkpoint.as_ref().filter(|c| !c.state.is_empty()) {
        Some(c) => MetadataState::decode(&c.state).map_err(|e| corrupt(&e))?,
        None => MetadataState::default(),
    };
    let initial = storage.initial_state().map_err(|e| corrupt(&e))?;
    let conf = &initial.conf_state;

    let mut group: BTreeSet<i32> = conf
        .voters
        .iter()
        .chain(&conf.learners)
        .filter_map(|&id| i32::try_from(id).ok())
        .collect();
    let (first, last) = (storage.first(), storage.last());
    let mut next = first;
    while next <= last {
        let entries = storage
            .entries(next, last + 1, 16 << 20, GetEntriesContext::empty(false))
            .map_err(|e| corrupt(&e))?;
        let Some(end) = entries.last().map(|e| e.index) else {
            break;
        };
        for e in entries {
            match e.get_entry_type() {
                EntryType::EntryConfChangeV2 => {
                    let mut cc = ConfChangeV2::default();
                    if cc.merge_from_bytes(&e.data).is_ok() {
                        for c in cc.get_changes() {
                            let id = c.node_id as i32;
                            match c.get_change_type() {
                                ConfChangeType::RemoveNode => group.remove(&id),
                                _ => group.insert(id),
                            };
                        }
                    }
                }
                EntryType::EntryNormal if !e.data.is_empty() => {
                    if let Ok(p) = serde_json::from_slice::<Proposal>(&e.data) {
                        // Refused commands are refused here too, as on every broker.
                        let _ = state.apply(p.cmd, e.index, &group);
                    }
                }
                _ => {}
            }
        }
        next = end + 1;
    }
    // Left on by mistake after others rejoined: re-forming again would split the group.
    if dir.join(MARKER).exists() && group.iter().any(|&id| id as u64 != me) {
        return Err(RecoverError::AlreadyRejoined(group.into_iter().collect()));
    }
    let mut index = last.max(storage.checkpoint_index());
    let mut term = storage.term(index).map_err(|e| corrupt(&e))?;
    if let Some(b) = restore {
        index = index.max(b.index).max(table_index) + 1;
        term = term.max(initial.hard_state.term).max(1);
        state = b.metadata.clone();
    }
    // The new file starts with this hard state: the term the log reached, everything committed.
    storage.set_hard_state(HardState {
        term,
        vote: 0,
        commit: index,
        ..Default::default()
    });
    let cp = Checkpoint {
        index,
        term,
        conf: ConfState::from((vec![me], vec![])),
        offset: 0,
        first_file: 0,
        state: state.encode(),
    };
    store.install(&storage, &crate::raft::snapshot::to_snapshot(&cp))?;
    let voters = serde_json::to_vec(&[me]).expect("a list of integers serializes");
    for (name, body) in [
        ("voters.json", voters),
        (MARKER, index.to_string().into_bytes()),
    ] {
        let path = dir.join(name);
        crate::log::files::write_atomic(&path, &body)
            .map_err(|source| StoreError::Io { path, source })?;
    }
    Ok(Recovered {
        index,
        term,
        topics: state.topics.len(),
    })
}
