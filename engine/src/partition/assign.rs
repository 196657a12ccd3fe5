//! The leader decides, replicas copy: in a cluster a partition leader assigns a produce's
//! offsets, leader epoch (its Raft term) and LogAppendTime, and checks its idempotent
//! producers' sequences, when it proposes it; every replica appends the committed entry's
//! batches as they are, as a Kafka follower appends what it fetched. A retried batch is
//! answered from the leader's state and never crosses the log.
//!
//! The leader decides against its log's end: what it applied plus every batch it proposed
//! since ([`Assigner`]). Raft's log matching makes that safe without rollback: an entry commits
//! only with the prefix the leader had when it appended it, so the offsets it assigned are the
//! ones the entry keeps; a deposed leader's entries that never commit are cut with their
//! offsets, and their producers retry. A new leader starts deciding once everything its log
//! held when it was elected is applied (its predecessors' entries and its term's first), so
//! its state starts from what the log holds; produces that arrive before wait for it.
//!
//! Entries whose batches are assigned are proposed only once every broker reads them
//! (`raft::PartitionRaft::assigns`); the entries proposed before are applied the old way
//! ([`super::replicated`]).

use std::io;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{Actor, PartitionError, ProduceOk, Reply};
use crate::log::batch::{self, Assign, BatchHeader};
use crate::log::producer_state::{Check, ProducerStates};

/// A leader's view of its log's end: the applied log plus what it proposed since.
pub(super) struct Assigner {
    /// The term it leads in.
    term: u64,
    /// The offset the next batch gets.
    next: i64,
    /// Producer state after every batch proposed.
    producers: ProducerStates,
}

impl Assigner {
    pub(super) fn producers(&self) -> &ProducerStates {
        &self.producers
    }
    pub(super) fn producers_mut(&mut self) -> &mut ProducerStates {
        &mut self.producers
    }
}

/// A produce that arrived before the leader could decide (see the module docs).
pub(super) struct Queued {
    batches: Vec<(BatchHeader, Bytes)>,
    reply: Reply<ProduceOk>,
    acks_all: bool,
}

/// What a proposed produce's answer waits for: `(reply, answer, offset)`, the answer given
/// once the partition is durable up to `offset` after the entry is applied (acks=all).
pub(super) type AssignedWaiter = (Reply<ProduceOk>, ProduceOk, i64);

impl Actor {
    /// Proposes a produce with its batches assigned, or queues it until this leader can.
    pub(super) fn propose_or_queue(
        &mut self,
        batches: Vec<(BatchHeader, Bytes)>,
        reply: Reply<ProduceOk>,
        acks_all: bool,
    ) {
        if !self.queued.is_empty() || !self.assigner_ready() {
            self.queued.push(Queued {
                batches,
                reply,
                acks_all,
            });
            return;
        }
        self.propose_assigned(batches, reply, acks_all);
    }

    /// Proposes the produces that waited, once this leader can decide; refuses them if it no
    /// longer leads.
    pub(super) fn propose_queued(&mut self) {
        if self.queued.is_empty() {
            return;
        }
        if !self.raft.as_ref().is_some_and(|r| r.is_leader()) {
            for q in self.queued.drain(..) {
                let _ = q.reply.send(Err(PartitionError::NotLeader));
            }
            return;
        }
        if !self.assigner_ready() {
            return;
        }
        for q in std::mem::take(&mut self.queued) {
            // Checks again what may have changed meanwhile (a Seal, the ISR).
            self.propose(q.batches, q.reply, q.acks_all);
        }
    }

    /// Whether this leader can decide now, making its [`Assigner`] when a leadership starts.
    fn assigner_ready(&mut self) -> bool {
        let Some(r) = &self.raft else { return false };
        if !r.is_leader() {
            self.assigner = None;
            return false;
        }
        let term = r.term();
        if self.assigner.as_ref().is_some_and(|a| a.term == term) {
            return true;
        }
        self.assigner = None;
        if r.applied_index() < r.last_index() {
            return false;
        }
        self.assigner = Some(Assigner {
            term,
            next: self.log.next_offset(),
            producers: self.log.producers().clone(),
        });
        true
    }

    /// Assigns the batches and proposes them. Retries of batches the log (or an entry in
    /// flight) holds are answered with their first offsets, once those are durable.
    fn propose_assigned(
        &mut self,
        batches: Vec<(BatchHeader, Bytes)>,
        reply: Reply<ProduceOk>,
        acks_all: bool,
    ) {
        let max = self.config.max_message_bytes;
        if let Some((_, b)) = batches.iter().find(|(_, b)| b.len() > max) {
            let _ = reply.send(Err(PartitionError::MessageTooLarge { size: b.len(), max }));
            return;
        }
        let now = self.clock.now_ms();
        let lat = self.log.config().log_append_time.then_some(now);
        let log_start_offset = self.log.log_start_offset();
        let (Some(r), Some(a)) = (self.raft.as_mut(), self.assigner.as_mut()) else {
            let _ = reply.send(Err(PartitionError::NotLeader));
            return;
        };
        let epoch = r.term().min(i32::MAX as u64) as i32;
        let mut entry = r.produce_entry(true, now, batches.iter().map(|(_, b)| b.len()).sum());
        let mut first: Option<ProduceOk> = None;
        let mut needed = 0;
        let mut refused = None;
        for (h, bytes) in &batches {
            let (base, last, time) = match a.producers.check(h) {
                Err(e) => {
                    // As on a single broker: the batches before it go in, the produce fails.
                    refused = Some(e);
                    break;
                }
                Ok(Check::Duplicate(m)) => (m.base_offset, m.last_offset, -1),
                Ok(Check::Append) => {
                    let base = a.next;
                    let assign = Assign {
                        base_offset: base,
                        leader_epoch: epoch,
                        log_append_time: lat,
                    };
                    entry.push(&batch::assign_header(bytes, assign));
                    entry.push(&bytes[batch::HEADER_LEN..]);
                    let mut assigned = *h;
                    assigned.base_offset = base;
                    assigned.partition_leader_epoch = epoch;
                    a.producers.record(
                        &assigned,
                        crate::log::control::end_marker(&assigned, bytes),
                        now,
                    );
                    a.next = assigned.next_offset();
                    (base, assigned.last_offset(), lat.unwrap_or(-1))
                }
            };
            needed = needed.max(last + 1);
            first.get_or_insert(ProduceOk {
                base_offset: base,
                log_append_time: time,
                log_start_offset,
            });
        }
        let proposal = if entry.is_empty() {
            None
        } else {
            match r.propose_produce(entry) {
                Some(id) => Some(id),
                None => {
                    // Not in the log after all: the assigner counted it, so it starts over.
                    self.assigner = None;
                    let _ = reply.send(Err(PartitionError::NotLeader));
                    return;
                }
            }
        };
        if let Some(e) = refused {
            let _ = reply.send(Err(PartitionError::Sequence(e)));
            return;
        }
        let Some(ok) = first else { return };
        match proposal {
            // Only retries: answered once what they retry is durable. If this leadership ends
            // first, the answer is refused (`fail_speculative_waiters`).
            None => self.waiters.push(super::Waiter { needed, reply, ok }),
            Some(id) if acks_all => {
                self.proposals
                    .insert(id, super::Proposal::Assigned((reply, ok, needed)));
            }
            // acks=1 (and 0): once the leader's own log holds the entry.
            Some(id) => {
                if self.config.write_caching {
                    self.local_acks.answer_now(id.index, reply, ok);
                } else {
                    self.local_acks.answer_when_synced(id.index, reply, ok);
                }
                self.metrics.produce_answered_at_local_append.inc();
            }
        }
    }

    /// Applies a committed Append entry (at Raft index `index`), answering whoever waits.
    pub(super) fn apply_append(
        &mut self,
        records: &Bytes,
        waiter: Option<super::Proposal>,
        index: u64,
        now: i64,
    ) {
        let waiter = match waiter {
            Some(super::Proposal::Assigned(w)) => Some(w),
            // Never: an Append entry is proposed only with assigned batches.
            Some(p @ super::Proposal::AsSent(..)) => {
                p.refuse(PartitionError::NotLeader);
                None
            }
            None => None,
        };
        if self.sealed.is_some() {
            // After the Seal: refused on every replica alike (see `seal`).
            if let Some((reply, ..)) = waiter {
                let _ = reply.send(Err(PartitionError::Sealed));
            }
        } else {
            self.append_assigned(records, waiter, now);
        }
        self.local_acks.settled(index);
    }

    /// Appends a committed entry's assigned batches as they are. Each must continue the log
    /// exactly; anything else means the replicas' logs differ, and this one stops.
    fn append_assigned(&mut self, records: &Bytes, waiter: Option<AssignedWaiter>, now: i64) {
        // Placed batches were checked when placed: only their headers are read again.
        let split = if self.already_held(records) {
            batch::split_headers(records)
        } else {
            batch::split_batches(records)
        };
        let batches = match split {
            Ok(b) => b,
            Err(e) => {
                self.fail_storage("a replicated entry's batches", &e);
                return;
            }
        };
        let mut appended_bytes = 0u64;
        let mut placed = true;
        for (h, bytes) in &batches {
            let end = self.log.next_offset();
            if h.base_offset < end && h.next_offset() <= end {
                // Placed in the segments when it was persisted ([`super::placement`]).
                self.metrics.produced_bytes.inc_by(bytes.len() as u64);
                self.metrics
                    .produced_records
                    .inc_by(h.records_count.max(0) as u64);
                continue;
            }
            placed = false;
            if h.base_offset != end {
                let e = io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "batch at offset {} does not continue the log at {}",
                        h.base_offset,
                        self.log.next_offset()
                    ),
                );
                self.fail_storage("a replicated entry", &e);
                return;
            }
            if let Err(e) = self.log.append_copy(h, bytes, now) {
                self.fail_storage("append", &e);
                return;
            }
            appended_bytes += bytes.len() as u64;
            self.metrics.produced_bytes.inc_by(bytes.len() as u64);
            self.metrics
                .produced_records
                .inc_by(h.records_count.max(0) as u64);
        }
        if let Some((last, _)) = batches.last() {
            self.applied_end = self.applied_end.max(last.next_offset());
            if placed {
                // Synced with the Raft log before Raft let this replica apply it.
                self.flushed = self.flushed.max(self.applied_end);
            }
            self.publish();
        }
        let (reply, ok, needed) = match waiter {
            Some(w) => w,
            None => {
                let end = self.log.next_offset();
                let ok = ProduceOk {
                    base_offset: end,
                    log_append_time: -1,
                    log_start_offset: self.log.log_start_offset(),
                };
                (oneshot::channel().0, ok, end)
            }
        };
        self.appended(reply, ok, needed, appended_bytes);
    }

    /// Whether the segments hold an entry's batches already (it was placed).
    fn already_held(&self, records: &Bytes) -> bool {
        let end = self.log.next_offset();
        batch::BatchHeader::parse(records).is_ok_and(|h| h.base_offset < end)
    }

    /// The leadership ended: its decisions go, and answers that relied on entries it proposed
    /// that were not applied are refused (the producer retries with the next leader).
    pub(super) fn stop_assigning(&mut self) {
        self.assigner = None;
        for q in self.queued.drain(..) {
            let _ = q.reply.send(Err(PartitionError::NotLeader));
        }
        let end = self.log.next_offset();
        if self.waiters.iter().all(|w| w.needed <= end) {
            return;
        }
        let (unsure, sure): (Vec<_>, Vec<_>) = self.waiters.drain(..).partition(|w| w.needed > end);
        self.waiters = sure;
        for w in unsure {
            let _ = w.reply.send(Err(PartitionError::NotLeader));
        }
    }

    /// Idle producers expire from the leader's decisions as from the log.
    pub(super) fn expire_assigned_producers(&mut self, now: i64) {
        if let Some(a) = &mut self.assigner {
            a.producers.expire(now, self.config.producer_expiry_ms);
        }
    }

    /// A storage failure: produces that waited are refused with it.
    pub(super) fn fail_queued(&mut self, err: &impl Fn() -> PartitionError) {
        self.assigner = None;
        for q in self.queued.drain(..) {
            let _ = q.reply.send(Err(err()));
        }
    }
}
