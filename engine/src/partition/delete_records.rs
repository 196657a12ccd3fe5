//! DeleteRecords: moving a partition's log start offset.
//!
//! A single broker applies it at once. In a cluster it is a command in the partition's Raft log
//! like a produce, applied by every replica in commit order (so it also survives restarts,
//! which re-apply the log, and leader changes); the leader resolves -1 to its high watermark
//! before proposing, so every replica moves to the same offset.

use super::{Actor, PartitionError, Reply};
use crate::raft::ProposalId;

impl Actor {
    /// Proposes a DeleteRecords to the Raft group; answered once applied here.
    pub(super) fn propose_delete_records(&mut self, before: i64, reply: Reply<i64>) {
        // A follower's high watermark may lag: the client is sent to the leader, not told its
        // offset is out of range.
        if !self.raft.as_ref().is_some_and(|r| r.is_leader()) {
            let _ = reply.send(Err(PartitionError::NotLeader));
            return;
        }
        let target = match self.deletion_target(before) {
            Ok(t) => t,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let Some(r) = &mut self.raft else { return };
        match r.propose_delete_records(target, self.clock.now_ms()) {
            Some(id) => {
                self.deletions.insert(id, reply);
            }
            None => {
                let _ = reply.send(Err(PartitionError::NotLeader));
            }
        }
    }

    /// Applies a committed DeleteRecords. A replica holds every entry before it (commit
    /// order), so the offset is never past its log end; it is checked anyway.
    pub(super) fn apply_delete_records(&mut self, id: ProposalId, offset: i64) {
        let target = offset.clamp(0, self.log.next_offset());
        let res = self.delete_records_before(target);
        if let Err(e) = &res {
            tracing::error!(dir = %self.log.dir().display(), error = %e, offset, "cannot apply DeleteRecords");
        }
        if let Some(reply) = self.deletions.remove(&id) {
            let _ = reply.send(res);
        }
    }

    /// The offset a DeleteRecords for `before` moves the log start to (-1: the high
    /// watermark), checked against what consumers can see.
    pub(super) fn deletion_target(&self, before: i64) -> Result<i64, PartitionError> {
        let high = self.marks.borrow().high;
        let target = if before == -1 { high } else { before };
        if target < 0 || target > high {
            let m = *self.marks.borrow();
            return Err(PartitionError::OffsetOutOfRange {
                offset: before,
                start: m.log_start,
                end: high,
            });
        }
        Ok(target)
    }

    pub(super) fn delete_records(&mut self, before: i64) -> Result<i64, PartitionError> {
        let target = self.deletion_target(before)?;
        self.delete_records_before(target)
    }

    pub(super) fn delete_records_before(&mut self, target: i64) -> Result<i64, PartitionError> {
        self.log.delete_records_before(target)?;
        self.forget_removed(self.log.local_start_offset());
        if let Some(t) = &self.tiered {
            t.delete_remote_before(target);
        }
        self.publish();
        Ok(self.marks.borrow().log_start)
    }
}
