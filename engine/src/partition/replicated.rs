//! The replicated path of a partition in a cluster: a produce is proposed to the partition's
//! Raft group, and what the group commits is applied by every replica, leader included, in
//! commit order (batches the leader assigned as they are, [`super::assign`]; DeleteRecords
//! through [`super::delete_records`]). acks=all is answered once applied; acks=1 once the
//! leader's own log holds it ([`super::local_ack`]).
//!
//! Until the cluster finalized assigned entries, a produce is proposed as the client sent it
//! and applied through the single-node path; acks=1 is then answered at the local append only
//! where the offsets can be predicted, else once applied.

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{local_ack, Actor, PartitionError, ProduceOk, Proposal, Reply};
use crate::log::batch::BatchHeader;

impl Actor {
    /// Tells the log what it may remove or rewrite: segments up to the Raft checkpoint
    /// (applied and synced; what raft-rs still reads of them it forgets first,
    /// [`Self::forget_removed`]), and what is committed, past which tiering uploads nothing
    /// ([`super::placement`]). Without a checkpoint nothing is removed.
    pub(super) fn set_raft_bounds(&mut self) {
        if let Some(r) = &self.raft {
            let keep_from = r.checkpoint_offset().unwrap_or(i64::MIN);
            self.log.set_raft_bounds(keep_from, self.applied_end);
        }
    }

    /// Segments below `offset` were removed or are about to be rewritten: raft-rs must not
    /// read the entries placed there.
    pub(super) fn forget_removed(&mut self, offset: i64) {
        if let Some(r) = &self.raft {
            r.forget_below(offset);
        }
    }

    /// Proposes a produce to the Raft group; it is appended once committed.
    pub(super) fn propose(
        &mut self,
        batches: Vec<(BatchHeader, Bytes)>,
        reply: Reply<ProduceOk>,
        acks_all: bool,
    ) {
        if self.refuses_produce() {
            let _ = reply.send(Err(PartitionError::Sealed));
            return;
        }
        let Some(r) = &mut self.raft else { return };
        if !r.is_leader() {
            let _ = reply.send(Err(PartitionError::NotLeader));
            return;
        }
        let min = r.min_insync;
        let active = r.active_voters();
        if acks_all && active < min {
            let _ = reply.send(Err(PartitionError::NotEnoughReplicas { active, min }));
            return;
        }
        if r.assigns() {
            self.propose_or_queue(batches, reply, acks_all);
            return;
        }
        let now = self.clock.now_ms();
        let mut entry = r.produce_entry(false, now, batches.iter().map(|(_, b)| b.len()).sum());
        for (_, b) in &batches {
            entry.push(b);
        }
        let taken = local_ack::offsets_taken(&batches, self.config.max_message_bytes);
        self.local_acks.lead(r.term(), r.last_index());
        let early = taken.filter(|_| !acks_all).and_then(|_| {
            self.local_acks
                .predict(r.applied_index(), self.log.next_offset())
        });
        match r.propose_produce(entry) {
            Some(id) => {
                self.local_acks.proposed(id.index, taken);
                match early {
                    Some(base_offset) => {
                        let ok = ProduceOk {
                            base_offset,
                            log_append_time: if self.log.config().log_append_time {
                                now
                            } else {
                                -1
                            },
                            log_start_offset: self.log.log_start_offset(),
                        };
                        if self.config.write_caching {
                            self.local_acks.answer_now(id.index, reply, ok);
                        } else {
                            self.local_acks.answer_when_synced(id.index, reply, ok);
                        }
                        self.metrics.produce_answered_at_local_append.inc();
                    }
                    None => {
                        self.proposals
                            .insert(id, super::Proposal::AsSent(reply, acks_all));
                    }
                }
            }
            None => {
                let _ = reply.send(Err(PartitionError::NotLeader));
            }
        }
    }

    /// Runs the Raft group: persists and sends what it asks, appends what it committed.
    pub(super) fn drive_raft(&mut self) {
        // raft-rs hands committed entries over in slices (`max_committed_size_per_ready`):
        // take a few per turn, so a replica re-applying its log at start gets through it
        // quickly and still answers other commands in between.
        for _ in 0..16 {
            self.drive_raft_once();
            if self.failed.is_some() || !self.raft.as_ref().is_some_and(|r| r.has_ready()) {
                break;
            }
        }
        if self.deferred_snapshot.is_some() {
            self.resume_deferred_snapshot();
        }
        if self.failed.is_none() {
            self.propose_queued();
        }
    }

    fn drive_raft_once(&mut self) {
        if self.failed.is_some() {
            return;
        }
        let Some(r) = &mut self.raft else { return };
        let mut cut_to = None;
        let mut placer = super::placement::Placer {
            log: &mut self.log,
            now: self.clock.now_ms(),
            checkpoint: r.checkpoint_index(),
            unplaced: &mut self.unplaced,
            files: &mut self.placed_files,
            cut_to: &mut cut_to,
        };
        let driven = r.drive_unsynced(&mut placer);
        if let Some(offset) = cut_to {
            // A new leader replaced uncommitted entries: their batches are gone.
            self.flushed = self.flushed.min(offset);
            self.marks.send_modify(|m| m.log_end = offset);
        }
        let Some(r) = &mut self.raft else { return };
        let committed = match driven {
            Ok((c, unsynced)) => {
                self.raft_unsynced.extend(unsynced);
                c
            }
            Err(e) => {
                self.fail_storage("raft log", &e);
                return;
            }
        };
        let leader = r.is_leader();
        if let Some(t) = &mut self.tiered {
            let epoch = r.term().min(i32::MAX as u64) as i32;
            t.set_role(if leader {
                crate::remote::TierRole::Leader { epoch }
            } else {
                crate::remote::TierRole::Follower
            });
        }
        if !committed.is_empty() && self.install.is_some() {
            // Entries arrived from a leader that has them: the snapshot is not needed, and what
            // was copied of it must go before they are applied.
            self.abandon_install("entries arrived while copying a snapshot");
            if self.failed.is_some() {
                return;
            }
        }
        for c in committed {
            let waiter = self.proposals.remove(&c.proposal);
            let records = match c.command {
                crate::raft::Command::Produce(records) => records,
                crate::raft::Command::Append(records) => {
                    self.apply_append(&records, waiter, c.proposal.index, c.now);
                    if self.failed.is_some() {
                        return;
                    }
                    continue;
                }
                crate::raft::Command::DeleteRecords(offset) => {
                    self.apply_delete_records(c.proposal, offset);
                    continue;
                }
                crate::raft::Command::Seal => {
                    self.apply_seal(c.proposal);
                    continue;
                }
            };
            let (reply, acks_all) = match waiter {
                Some(Proposal::AsSent(reply, acks_all)) => (reply, acks_all),
                // Never: an assigned proposal's entry is an Append.
                Some(Proposal::Assigned((reply, ..))) => (reply, true),
                // Another replica's proposal (or one whose producer gave up): nobody waits.
                None => (oneshot::channel().0, false),
            };
            if self.sealed.is_some() {
                // After the Seal: refused on every replica alike (see `seal`).
                let _ = reply.send(Err(PartitionError::Sealed));
                self.local_acks.applied(c.proposal.index, None);
                continue;
            }
            // Nothing is placed behind an entry like this one (see `placement`): everything
            // before it is applied, so the log ends where it was applied.
            if self.log.next_offset() != self.applied_end {
                let e = std::io::Error::other(format!(
                    "the segments end at {} but entries were applied up to {}",
                    self.log.next_offset(),
                    self.applied_end
                ));
                self.fail_storage("applying a produce entry", &e);
                return;
            }
            let base = match crate::log::batch::split_batches(&records) {
                Ok(batches) => self.produce(batches, reply, acks_all, c.epoch, c.now),
                Err(e) => {
                    tracing::error!(dir = %self.log.dir().display(), error = %e, "undecodable raft entry skipped");
                    None
                }
            };
            self.applied_end = self.log.next_offset();
            if let Some(answered) = self.local_acks.applied(c.proposal.index, base) {
                tracing::error!(dir = %self.log.dir().display(), index = c.proposal.index, answered, applied = ?base, "an acks=1 produce was answered with another offset than it got");
            }
        }
        let end = self.applied_end;
        if let Some(r) = self.raft.as_mut().filter(|_| self.sealed.is_none()) {
            r.note_applied(end);
        }
        self.set_raft_bounds();
        if !leader {
            // Proposals of a deposed leader may never commit; their producers retry.
            self.local_acks.stop(|| PartitionError::NotLeader);
            for (_, p) in self.proposals.drain() {
                p.refuse(PartitionError::NotLeader);
            }
            self.stop_assigning();
            for (_, reply) in self.deletions.drain() {
                let _ = reply.send(Err(PartitionError::NotLeader));
            }
            self.drop_seals();
        }
    }
}
