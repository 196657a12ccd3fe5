//! Installing a snapshot from the leader, and serving one.
//!
//! A follower behind the leader's first Raft index gets the leader's checkpoint as a snapshot
//! (`raft::snapshot`): an index and the segment log's offset there. Its own segment log is a
//! prefix of the leader's (every replica applies the same committed entries the same way), so
//! it copies only the batches from its own log end up to that offset, a chunk at a time, each
//! asked for once the previous one is written (flow control by pulling, and no frame larger
//! than a chunk). If the leader no longer holds what follows this log's end (retention, or
//! local retention on a tiered topic, whose older data stays in object storage), the log
//! restarts at the leader's first local offset. Once the copy is synced, raft-rs takes the
//! snapshot and the Raft log restarts after it (`raft::log_file::RaftStore::install`).

use std::future::Future;
use std::io;
use std::pin::Pin;

use raft::eraftpb::Message;

use super::{Actor, Reply};
use crate::raft::snapshot::{offset_of, Chunk, ChunkRequest};

/// Bytes asked for per chunk.
const CHUNK_BYTES: u32 = 4 << 20;
/// The most a leader sends per chunk, whatever was asked.
pub const MAX_CHUNK_BYTES: u32 = 16 << 20;

/// A snapshot being installed.
pub(super) struct Install {
    /// The snapshot message, stepped into raft-rs once the copy is synced.
    msg: Message,
    /// The segment log offset the copy goes up to.
    upto: i64,
    /// The log's end when the copy began: what raft-rs's applied index stands for, and where
    /// the log is cut back to if the snapshot is not installed after all.
    from: i64,
    /// Copied and synced: stepped once no checkpoint write is in flight (it would overwrite
    /// the snapshot's checkpoint with an older one).
    copied: bool,
    /// How long to wait before asking for the next chunk (the reassignment throttle).
    pace: std::time::Duration,
}

pub(super) enum Step {
    Chunk(Result<Chunk, String>),
    Synced(io::Result<()>),
}

pub(super) type InstallIo = Pin<Box<dyn Future<Output = Step>>>;

impl Actor {
    /// A snapshot the Raft group can take only once the leader's segments are copied.
    pub(super) fn begin_install(&mut self, m: Message) {
        let Some(upto) = offset_of(m.get_snapshot()) else {
            return;
        };
        if self.install.is_none() && self.log.next_offset() > self.applied_end {
            // Batches placed for uncommitted entries: the snapshot replaces them.
            if let Err(e) = self.cut_log(self.applied_end) {
                self.fail_storage("cutting uncommitted batches for a snapshot", &e);
                return;
            }
            self.flushed = self.flushed.min(self.log.next_offset());
        }
        let end = self.log.next_offset();
        if let Some(i) = &mut self.install {
            // A newer snapshot (the leader gave up on the last one, or a new leader sent its
            // own) replaces it if the copy has not gone past its offset.
            if upto >= end && !i.copied {
                i.msg = m;
                i.upto = upto;
            }
            return;
        }
        if end > upto {
            tracing::warn!(dir = %self.log.dir().display(), end, upto, "a snapshot behind this replica's log ignored");
            return;
        }
        // The copy continues this log from its end, which must be where everything raft-rs
        // has committed is applied: with entries still to apply it waits until they are.
        if self.raft.as_ref().is_some_and(|r| r.has_unapplied()) {
            self.deferred_snapshot = Some(m);
            return;
        }
        tracing::info!(dir = %self.log.dir().display(), from = end, upto, "installing a snapshot from the leader");
        self.install = Some(Install {
            msg: m,
            upto,
            from: end,
            copied: false,
            pace: std::time::Duration::ZERO,
        });
        self.install_next = self.next_install_io();
    }

    /// The next chunk to ask for, or the sync that ends the copy.
    fn next_install_io(&mut self) -> Option<InstallIo> {
        let i = self.install.as_mut()?;
        let pace = std::mem::take(&mut i.pace);
        let i = self.install.as_ref()?;
        let end = self.log.next_offset();
        if end >= i.upto {
            let files = match self.log.take_dirty() {
                Ok(f) => f,
                Err(e) => return Some(Box::pin(async move { Step::Synced(Err(e)) })),
            };
            let flusher = self.flusher.clone();
            return Some(Box::pin(async move {
                Step::Synced(flusher.sync_all(files).await)
            }));
        }
        let r = self.raft.as_ref()?;
        let req = ChunkRequest {
            requester: r.id(),
            from: end,
            upto: i.upto,
            max_bytes: CHUNK_BYTES,
        };
        let (chunks, from) = (r.chunk_fn(), i.msg.from);
        Some(Box::pin(async move {
            if !pace.is_zero() {
                tokio::time::sleep(pace).await;
            }
            let rx = chunks(from, req);
            Step::Chunk(rx.await.unwrap_or_else(|_| Err("rpc stopped".into())))
        }))
    }

    /// A snapshot that waited for committed entries to be applied, once they are.
    pub(super) fn resume_deferred_snapshot(&mut self) {
        if self.raft.as_ref().is_some_and(|r| r.has_unapplied()) {
            return;
        }
        if let Some(m) = self.deferred_snapshot.take() {
            self.begin_install(m);
        }
    }

    /// A chunk arrived, or the copy was synced.
    pub(super) fn install_step(&mut self, step: Step) {
        if self.failed.is_some() || self.install.is_none() {
            return;
        }
        match step {
            Step::Chunk(Ok(c)) => {
                // A learner (a replica a reassignment adds) takes chunks in at the follower
                // throttle's pace.
                let pace = match &self.raft {
                    Some(r) if r.is_adding() => {
                        r.throttles().follower.reserve(c.records.len() as u64)
                    }
                    _ => std::time::Duration::ZERO,
                };
                if let Some(i) = &mut self.install {
                    i.pace = pace;
                }
                if let Err(e) = self.write_chunk(c) {
                    match e {
                        ChunkError::Storage(e) => self.fail_storage("snapshot install", &e),
                        ChunkError::Invalid(why) => self.abandon_install(&why),
                    }
                    return;
                }
                self.install_next = self.next_install_io();
            }
            Step::Chunk(Err(e)) => self.abandon_install(&e),
            Step::Synced(Err(e)) => self.fail_storage("snapshot install fdatasync", &e),
            Step::Synced(Ok(())) => {
                self.flushed = self.flushed.max(self.log.next_offset());
                if let Some(i) = &mut self.install {
                    i.copied = true;
                }
                self.finish_install();
            }
        }
    }

    /// Hands a copied snapshot to raft-rs, unless a checkpoint write is in flight.
    pub(super) fn finish_install(&mut self) {
        if self.checkpointing || !self.install.as_ref().is_some_and(|i| i.copied) {
            return;
        }
        let Some(i) = &self.install else { return };
        let (msg, upto) = (i.msg.clone(), i.upto);
        if self.raft.as_mut().is_some_and(|r| r.step_copied(msg)) {
            self.install = None;
            // Everything copied is committed: it becomes visible.
            self.applied_end = self.log.next_offset();
            self.publish();
            self.metrics.raft_snapshots_installed.inc();
            tracing::info!(dir = %self.log.dir().display(), upto, "snapshot installed");
        } else {
            // raft-rs refused it (a new term, or its log caught up meanwhile).
            self.abandon_install("raft refused the snapshot");
        }
    }

    /// Gives up on the snapshot being copied: what was copied goes, so that the log ends again
    /// where raft-rs's applied index says (the leader sends a new snapshot once this one
    /// stalls). A log restarted at the leader's first offset is cut to an empty one there, as
    /// a restart would.
    pub(super) fn abandon_install(&mut self, why: &str) {
        let Some(i) = self.install.take() else { return };
        tracing::warn!(dir = %self.log.dir().display(), error = why, "snapshot install abandoned");
        if let Err(e) = self.cut_log(i.from) {
            self.fail_storage("cutting back a snapshot copy", &e);
            return;
        }
        self.flushed = self.flushed.min(self.log.next_offset());
        self.publish();
    }

    /// Removes every batch from `offset` on and reopens the log.
    fn cut_log(&mut self, offset: i64) -> io::Result<()> {
        super::placement::cut_log(&mut self.log, offset, self.clock.now_ms())
    }

    fn write_chunk(&mut self, c: Chunk) -> Result<(), ChunkError> {
        let upto = self.install.as_ref().map_or(0, |i| i.upto);
        let end = self.log.next_offset();
        let now = self.clock.now_ms();
        if end < c.local_start {
            // The leader no longer holds what follows this log: start over where it does.
            let next = c.local_start.min(upto);
            tracing::info!(dir = %self.log.dir().display(), end, next, "snapshot restarts the log at the leader's first local offset");
            self.log.reset(c.log_start, next, now)?;
            self.flushed = next;
            return Ok(());
        }
        if c.records.is_empty() {
            // Nothing left below `upto` (compaction removed the last batches).
            self.log.skip_to(upto, now)?;
            return Ok(());
        }
        let batches = crate::log::batch::split_batches(&c.records)
            .map_err(|e| ChunkError::Invalid(e.to_string()))?;
        for (h, b) in batches {
            if h.next_offset() > upto {
                return Err(ChunkError::Invalid(format!(
                    "batch at {} ends past the snapshot's offset {upto}",
                    h.base_offset
                )));
            }
            crate::log::batch::validate(&b).map_err(|e| ChunkError::Invalid(e.to_string()))?;
            self.log.append_copy(&h, &b, now).map_err(|e| {
                if e.kind() == io::ErrorKind::InvalidData {
                    ChunkError::Invalid(e.to_string())
                } else {
                    ChunkError::Storage(e)
                }
            })?;
        }
        if self.log.next_offset() == end {
            return Err(ChunkError::Invalid("a chunk that adds nothing".into()));
        }
        self.publish();
        Ok(())
    }

    /// A replica installing a snapshot asks this one for a chunk of its log.
    pub(super) fn serve_chunk(&mut self, req: ChunkRequest, reply: Reply<Chunk>) {
        if let Some(r) = &mut self.raft {
            r.snapshot_progress(req.requester);
        }
        let max = req.max_bytes.clamp(1, MAX_CHUNK_BYTES) as usize;
        // Only what is applied and synced here: the snapshot's offset always is.
        let limit = req.upto.min(self.flushed);
        let records = match self.log.read(req.from, max, limit) {
            Ok(r) => r.unwrap_or_default(),
            Err(e) => {
                let _ = reply.send(Err(e.into()));
                return;
            }
        };
        let marks = *self.marks.borrow();
        let chunk = Chunk {
            log_start: marks.log_start,
            local_start: self.log.local_start_offset(),
            records,
        };
        // Served to a replica a reassignment adds at the leader throttle's pace.
        let pace = match &self.raft {
            Some(r) if r.is_learner_id(req.requester) => {
                r.throttles().leader.reserve(chunk.records.len() as u64)
            }
            _ => std::time::Duration::ZERO,
        };
        if pace.is_zero() {
            let _ = reply.send(Ok(chunk));
        } else {
            tokio::task::spawn_local(async move {
                tokio::time::sleep(pace).await;
                let _ = reply.send(Ok(chunk));
            });
        }
    }
}

enum ChunkError {
    Storage(io::Error),
    Invalid(String),
}

impl From<io::Error> for ChunkError {
    fn from(e: io::Error) -> Self {
        ChunkError::Storage(e)
    }
}
