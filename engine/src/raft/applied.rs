//! What a partition's segment log has applied, and what follows from it: checkpoints (the Raft
//! log before one is dropped a file at a time), restarts that re-apply only what came after the
//! last one, and snapshots for followers behind the leader's first index.
//!
//! The partition reports the segment log's next offset after each batch of committed entries it
//! applied ([`PartitionRaft::note_applied`]); once its segments are synced past such a mark, the
//! mark may become the checkpoint ([`PartitionRaft::checkpoint_due`]), which the partition
//! writes off the shard thread and reports back ([`PartitionRaft::checkpoint_written`]).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use raft::eraftpb::{Message, MessageType};
use raft::{SnapshotStatus, Storage as _};

use super::checkpoint::Checkpoint;
use super::PartitionRaft;

/// At most one checkpoint per partition this often: each costs a few small synced writes.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// A follower installing a snapshot that asked for no chunk this long is given up on: the
/// leader sends it a new snapshot (raft-rs would wait for it forever).
pub const SNAPSHOT_STALL: Duration = Duration::from_secs(15);

/// The segment log's next offset once entries up to `index` were applied.
#[derive(Debug, Clone)]
pub(super) struct Mark {
    index: u64,
    offset: i64,
    conf: raft::eraftpb::ConfState,
}

#[derive(Default)]
pub(super) struct Applied {
    /// The last entry handed to the partition to apply.
    pub(super) index: u64,
    pub(super) marks: VecDeque<Mark>,
    pub(super) last_checkpoint: Option<Instant>,
    /// While leading: followers being sent a snapshot, and when they last asked for a chunk.
    pub(super) snapshots: std::collections::HashMap<u64, Instant>,
}

impl PartitionRaft {
    /// The offset the segment log must be cut back to at start (`None`: no checkpoint yet,
    /// so the Raft log holds every entry from the first and the segments are rebuilt from it).
    pub fn checkpoint_offset(&self) -> Option<i64> {
        self.node.store().checkpoint().map(|c| c.offset)
    }

    /// The segment log's next offset now that everything handed over so far is applied.
    pub fn note_applied(&mut self, offset: i64) {
        self.note_applied_through(self.applied.index, offset);
    }

    /// The segment log's next offset once entries up to `index` (at most the last handed
    /// over) are applied: a sealed partition notes the entry before its Seal and nothing
    /// after, so that no checkpoint passes the Seal and a restart applies it again.
    pub fn note_applied_through(&mut self, index: u64, offset: i64) {
        let index = index.min(self.applied.index);
        if self.applied.marks.back().is_some_and(|m| m.index >= index) {
            return;
        }
        if self.node.store().checkpoint_index() >= index {
            return;
        }
        self.applied.marks.push_back(Mark {
            index,
            offset,
            conf: self.conf_state(),
        });
    }

    /// A new checkpoint to write, if the segments are synced (`flushed`) past a newer mark and
    /// the last one was written long enough ago.
    pub fn checkpoint_due(&mut self, flushed: i64) -> Option<Checkpoint> {
        if self
            .applied
            .last_checkpoint
            .is_some_and(|t| t.elapsed() < CHECKPOINT_EVERY)
        {
            return None;
        }
        let mut best = None;
        while self
            .applied
            .marks
            .front()
            .is_some_and(|m| m.offset <= flushed)
        {
            best = self.applied.marks.pop_front();
        }
        let m = best?;
        let term = self.node.store().term(m.index).ok()?;
        self.applied.last_checkpoint = Some(Instant::now());
        let first_file = self.node.store().checkpoint().map_or(0, |c| c.first_file);
        Some(Checkpoint {
            index: m.index,
            term,
            conf: m.conf,
            offset: m.offset,
            first_file,
            state: Default::default(),
        })
    }

    /// The Raft log's directory, where the checkpoint goes.
    pub fn dir(&self) -> std::path::PathBuf {
        self.store.dir().to_path_buf()
    }

    /// What writes the checkpoints, never an older one over a newer.
    pub fn checkpoint_writer(&self) -> super::checkpoint::Writer {
        self.store.checkpoints()
    }

    /// A checkpoint is durable: the log files wholly before it go.
    pub fn checkpoint_written(&mut self, cp: Checkpoint) -> Result<(), super::StoreError> {
        if self.node.store().checkpoint_index() >= cp.index {
            return Ok(());
        }
        self.store.compact(self.node.store(), cp)
    }

    /// After a Ready: a snapshot raft-rs just installed resets what is applied.
    pub(super) fn after_install(&mut self) {
        if let Some(cp) = self.node.store().take_installed() {
            self.applied.index = cp.index;
            self.applied.marks.clear();
        }
    }

    /// A snapshot that needs the leader's segments copied before raft-rs may take it; any other
    /// snapshot (one this replica's log already covers) is stepped at once.
    pub(super) fn needs_copy(&self, m: &Message) -> bool {
        let meta = m.get_snapshot().get_metadata();
        let log = &self.node.raft.raft_log;
        meta.index > log.committed && !log.match_term(meta.index, meta.term)
    }

    /// Steps a snapshot whose segments were copied (see [`Self::step`]); whether raft-rs
    /// took it (it installs with the next Ready).
    pub fn step_copied(&mut self, m: Message) -> bool {
        let index = m.get_snapshot().get_metadata().index;
        if let Err(e) = self.node.step(m) {
            tracing::debug!(error = %e, "partition raft ignored a snapshot");
        }
        self.node
            .raft
            .raft_log
            .unstable_snapshot()
            .as_ref()
            .is_some_and(|s| s.get_metadata().index == index)
    }

    /// Whether committed entries are still to be handed over for applying.
    pub fn has_unapplied(&self) -> bool {
        self.node.raft.raft_log.committed > self.applied.index
    }

    /// The leader served a chunk of a snapshot to `node`.
    pub fn snapshot_progress(&mut self, node: u64) {
        if let Some(t) = self.applied.snapshots.get_mut(&node) {
            *t = Instant::now();
        }
    }

    /// At every tick while leading: a follower whose snapshot stalled gets a new one.
    pub(super) fn check_snapshots(&mut self) {
        if !self.is_leader() {
            self.applied.snapshots.clear();
            return;
        }
        let sending: Vec<u64> = self
            .node
            .raft
            .prs()
            .iter()
            .filter(|(_, p)| p.state == raft::ProgressState::Snapshot)
            .map(|(&id, _)| id)
            .collect();
        self.applied.snapshots.retain(|id, _| sending.contains(id));
        for id in sending {
            let since = *self
                .applied
                .snapshots
                .entry(id)
                .or_insert_with(Instant::now);
            if since.elapsed() > SNAPSHOT_STALL {
                tracing::warn!(follower = id, "a snapshot stalled; sending a new one");
                self.node.report_snapshot(id, SnapshotStatus::Failure);
                self.applied.snapshots.remove(&id);
            }
        }
    }
}

/// Whether a message is a snapshot.
pub fn is_snapshot(m: &Message) -> bool {
    m.get_msg_type() == MessageType::MsgSnapshot
}
