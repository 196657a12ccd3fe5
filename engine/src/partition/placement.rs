//! One log: an entry whose batches the leader assigned ([`super::assign`]) is appended to the
//! partition's segments when Raft hands it over to persist, before it commits, as a Kafka
//! follower appends what it fetched; the Raft log records only the entry's header and where
//! its batches are (`raft::record::Placed`). Each record is written and synced once per
//! replica: the segment file and the Raft log file go into the same sync, and only after it
//! does the replica acknowledge the entry (its Raft messages wait for it, `raft_sync`).
//!
//! The segments may therefore hold batches that are not committed yet. Nothing reads past the
//! high watermark, which is what was applied ([`super::Actor::applied_end`]); tiering uploads
//! stop there, retention and compaction at the Raft checkpoint (raft-rs forgets the entries
//! placed in what they remove, `raft::PartitionRaft::forget_below`); a new leader that
//! replaces this replica's uncommitted entries cuts their batches first ([`Placer::cut`]).
//!
//! An entry is placed only when its batches continue the segments exactly. They do not while
//! entries proposed as the client sent them (before assigned entries, or from a leader of the
//! previous release) wait to be applied: those get their offsets only then. Such entries, and
//! the assigned ones behind them, are written whole to the Raft log and appended when applied,
//! as before. Nothing is placed until the checkpoint has passed the last entry proposed as
//! sent, so that a restart never finds a placed entry behind one whose offsets it cannot know
//! without applying it.

use std::fs::File;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use raft::eraftpb::Entry;

use crate::log::PartitionLog;
use crate::raft::log_file::{Placed, Segments};

/// The segment log as one Ready cycle places entries in it.
pub(super) struct Placer<'a> {
    pub log: &'a mut PartitionLog,
    pub now: i64,
    /// The Raft checkpoint's index: entries not placed at or before it no longer matter.
    pub checkpoint: u64,
    /// The last index of a produce entry proposed as the client sent it (its offsets are
    /// decided only when it is applied).
    pub unplaced: &'a mut u64,
    /// Segment files written, to sync with the Raft log.
    pub files: &'a mut Vec<Arc<File>>,
    /// Set when uncommitted batches were cut.
    pub cut_to: &'a mut Option<i64>,
}

impl Segments for Placer<'_> {
    fn place(&mut self, e: &Entry) -> io::Result<Option<Placed>> {
        let Some(body) = crate::raft::assigned_batches(e) else {
            if crate::raft::is_produce(e) {
                *self.unplaced = (*self.unplaced).max(e.index);
            }
            return Ok(None);
        };
        // An assigned entry left whole needs no wait: its offsets are known, so a restart can
        // tell whether its batches are in the segments (they are if a placed one follows).
        if *self.unplaced <= self.checkpoint {
            self.try_place(body)
        } else {
            Ok(None)
        }
    }

    fn cut(&mut self, offset: i64) -> io::Result<()> {
        if offset >= self.log.next_offset() {
            return Ok(());
        }
        cut_log(self.log, offset, self.now)?;
        *self.cut_to = Some(self.cut_to.map_or(offset, |c| c.min(offset)));
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        for f in self.files.drain(..) {
            crate::log::power::sync_file(&f, false)?;
        }
        Ok(())
    }
}

impl Placer<'_> {
    /// Appends the batches if they continue the log; `None` leaves the entry whole.
    fn try_place(&mut self, body: Bytes) -> io::Result<Option<Placed>> {
        // Checked as any batch from the network (CRC, lengths); a bad one is left to apply,
        // which stops the replica with the reason.
        let Ok(batches) = crate::log::batch::split_batches(&body) else {
            return Ok(None);
        };
        let (Some((first, _)), Some((last, _))) = (batches.first(), batches.last()) else {
            return Ok(None);
        };
        if first.base_offset != self.log.next_offset() {
            return Ok(None);
        }
        let (offset, next) = (first.base_offset, last.next_offset());
        let (segment, position) = self.log.append_placed(&batches, self.now)?;
        let file = self.log.active_file();
        if !self.files.iter().any(|f| Arc::ptr_eq(f, &file)) {
            self.files.push(file);
        }
        Ok(Some(Placed {
            segment,
            position,
            len: body.len() as u32,
            offset,
            next,
        }))
    }
}

/// Removes every batch from `offset` on and reopens the log (producer state, epochs and
/// indexes are rebuilt from what remains).
pub(super) fn cut_log(log: &mut PartitionLog, offset: i64, now: i64) -> io::Result<()> {
    if offset >= log.next_offset() {
        return Ok(());
    }
    // What the reopened log will not know to sync, synced now (a rare path: blocking).
    for f in log.take_dirty()? {
        crate::log::power::sync_file(&f, false)?;
    }
    let dir = log.dir().to_path_buf();
    let config = log.config().clone();
    crate::log::cut::cut_at(&dir, offset, now)?;
    *log = PartitionLog::open(&dir, config, now)?;
    Ok(())
}
