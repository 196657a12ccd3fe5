//! Sealing a partition for an unmount in a cluster.
//!
//! The leader proposes a Seal entry to the partition's Raft group; every replica applies it in
//! commit order: it rolls the active segment (so the tier can take everything) and appends no
//! produce that comes after it in the log, answering those with UNKNOWN_TOPIC_OR_PARTITION. So
//! every replica, and any later leader, agrees on where the topic ends, whatever raced the
//! topic being hidden. The leader refuses new produces from the moment it proposes the Seal,
//! which keeps acks=1 answers (given before the apply) consistent with it. No checkpoint
//! passes the Seal: a restart applies it again from the Raft log.

use super::{Actor, PartitionError, Reply};
use crate::raft::ProposalId;

impl Actor {
    /// Seals the partition (answered with `(log start, log end)` once applied here): on a
    /// single node at once, in a cluster through the Raft group, from its leader.
    pub(super) fn seal(&mut self, reply: Reply<(i64, i64)>) {
        if self.sealed.is_some() || self.raft.is_none() {
            let res = self.roll_active();
            let _ = reply.send(res.map(|()| self.sealed_range()));
            return;
        }
        let now = self.clock.now_ms();
        let Some(r) = self.raft.as_mut().filter(|r| r.is_leader()) else {
            let _ = reply.send(Err(PartitionError::NotLeader));
            return;
        };
        match r.propose_seal(now) {
            Some(id) => {
                self.sealing = true;
                self.seals.insert(id, reply);
            }
            None => {
                let _ = reply.send(Err(PartitionError::NotLeader));
            }
        }
    }

    /// Applies a committed Seal (entry `id`).
    pub(super) fn apply_seal(&mut self, id: ProposalId) {
        if self.sealed.is_none() {
            // Everything before the Seal is applied: that is the last state a checkpoint may
            // hold.
            let end = self.log.next_offset();
            if let Some(r) = &mut self.raft {
                r.note_applied_through(id.index.saturating_sub(1), end);
            }
            self.sealed = Some(id.index);
            tracing::info!(dir = %self.log.dir().display(), end, "partition sealed for unmount");
        }
        let res = self.roll_active();
        if let Err(e) = &res {
            self.fail_storage("segment roll", e);
        }
        if let Some(reply) = self.seals.remove(&id) {
            let _ = reply.send(res.map(|()| self.sealed_range()));
        }
    }

    /// Whether produces are refused: sealed, or a Seal proposed by this leader.
    pub(super) fn refuses_produce(&self) -> bool {
        self.sealed.is_some() || self.sealing
    }

    /// A deposed leader's Seal may never commit: whoever asked asks the next leader.
    pub(super) fn drop_seals(&mut self) {
        self.sealing = false;
        for (_, reply) in self.seals.drain() {
            let _ = reply.send(Err(PartitionError::NotLeader));
        }
    }

    /// Rolls the active segment if it holds anything, and offers what is sealed to the tier.
    pub(super) fn roll_active(&mut self) -> Result<(), PartitionError> {
        if self.log.next_offset() > self.log.sealed_end() {
            self.log.roll(self.clock.now_ms())?;
        }
        if let Some(t) = &mut self.tiered {
            t.offer_sealed(&self.log);
        }
        Ok(())
    }

    fn sealed_range(&self) -> (i64, i64) {
        (self.marks.borrow().log_start, self.log.next_offset())
    }
}
