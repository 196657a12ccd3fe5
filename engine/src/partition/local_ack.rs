//! acks=1 in a cluster, as Kafka defines it: the leader answers once its own log holds the
//! produce (its Raft log, synced; with `write.caching`, written), without waiting for the
//! group to commit it.
//!
//! The leader assigns an entry's offsets when it proposes it ([`super::assign`]), so its answer
//! names them. Entries proposed as the client sent them (before the cluster finalized assigned
//! entries) get their offsets when applied, after commit, by every replica alike; for those
//! the leader can name them sooner when every produce entry in its log between what it applied and
//! the new one takes a known number of offsets: a batch without a producer id is always
//! appended whole (`last_offset_delta + 1` offsets), while an idempotent batch may turn out a
//! duplicate (none) or be refused. So a produce is answered at its local append when its own
//! batches and every entry before it are known, and at commit otherwise: behind an idempotent
//! producer's entry, and until the entries a new leader inherited (its predecessors', and its
//! term's first) are applied. acks=1 producers are never idempotent (clients ask acks=all for
//! that), so a partition written by acks=1 producers alone answers every one early.
//!
//! As in Kafka, a record answered this way is lost if the leader fails before a quorum has it.
//! Each early answer is checked against the offset the entry gets when applied.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::{PartitionError, ProduceOk, Reply};
use crate::log::batch::BatchHeader;

#[derive(Default)]
pub(super) struct LocalAcks {
    /// Produce entries of this leadership not yet applied, oldest first: the entry's index and
    /// the offsets it takes (`None`: unknown until applied).
    pending: VecDeque<(u64, Option<i64>)>,
    /// The sum of the known counts in `pending`, and how many are unknown.
    known: i64,
    unknown: usize,
    /// Entries up to this index predate this leadership: no prediction until they are applied.
    barrier: u64,
    /// The term this leadership is in (0: not leading).
    term: u64,
    /// Answers to give once the leader's log is synced up to their entry, by index.
    waiting: BTreeMap<u64, (Reply<ProduceOk>, ProduceOk)>,
    /// Base offsets answered, by index, checked when the entry is applied.
    answered: BTreeMap<u64, i64>,
}

/// The offsets a produce's batches take when applied, if that is certain.
pub(super) fn offsets_taken(batches: &[(BatchHeader, Bytes)], max_bytes: usize) -> Option<i64> {
    batches
        .iter()
        .map(|(h, b)| {
            (h.producer_id < 0 && b.len() <= max_bytes).then_some(h.last_offset_delta as i64 + 1)
        })
        .sum()
}

impl LocalAcks {
    /// Called before each proposal: a new term (or a first) starts a new leadership whose log
    /// already holds entries up to `last_index`.
    pub(super) fn lead(&mut self, term: u64, last_index: u64) {
        if self.term != term {
            self.stop(|| PartitionError::NotLeader);
            self.term = term;
            self.barrier = last_index;
        }
    }

    /// The base offset a produce proposed now gets, if certain: the log's end after what was
    /// applied (`applied`, `log_end`) plus what the pending entries take.
    pub(super) fn predict(&self, applied: u64, log_end: i64) -> Option<i64> {
        (self.term != 0 && self.unknown == 0 && applied >= self.barrier)
            .then_some(log_end + self.known)
    }

    /// A produce entry was appended to the leader's log at `index`.
    pub(super) fn proposed(&mut self, index: u64, taken: Option<i64>) {
        match taken {
            Some(n) => self.known += n,
            None => self.unknown += 1,
        }
        self.pending.push_back((index, taken));
    }

    /// Answers `ok` once the leader's log is synced up to `index`.
    pub(super) fn answer_when_synced(
        &mut self,
        index: u64,
        reply: Reply<ProduceOk>,
        ok: ProduceOk,
    ) {
        self.waiting.insert(index, (reply, ok));
    }

    /// Answers at once (write caching: acknowledged from memory, as on a single broker).
    pub(super) fn answer_now(&mut self, index: u64, reply: Reply<ProduceOk>, ok: ProduceOk) {
        self.answered.insert(index, ok.base_offset);
        let _ = reply.send(Ok(ok));
    }

    /// The leader's log is synced up to `persisted`: the produces it holds are answered.
    pub(super) fn synced(&mut self, persisted: u64) {
        let later = self.waiting.split_off(&(persisted + 1));
        for (index, (reply, ok)) in std::mem::replace(&mut self.waiting, later) {
            self.answered.insert(index, ok.base_offset);
            let _ = reply.send(Ok(ok));
        }
    }

    /// Entry `index` was applied; a produce appended from `base` (`None`: nothing appended).
    /// Returns the offset answered early if the entry got another one (a bug, reported).
    pub(super) fn applied(&mut self, index: u64, base: Option<i64>) -> Option<i64> {
        while let Some(&(i, taken)) = self.pending.front() {
            if i > index {
                break;
            }
            self.pending.pop_front();
            match taken {
                Some(n) => self.known -= n,
                None => self.unknown -= 1,
            }
        }
        let mut wrong = None;
        if let Some(answered) = self.answered.remove(&index) {
            if base != Some(answered) {
                wrong = Some(answered);
            }
        }
        // Answers for entries that never reached this replica's apply (overwritten) go too.
        self.answered = self.answered.split_off(&(index + 1));
        wrong
    }

    /// Entry `index`, whose batches the leader assigned, was applied: its answer (if any) was
    /// given with the offsets the entry carries, so there is nothing to check.
    pub(super) fn settled(&mut self, index: u64) {
        self.answered = self.answered.split_off(&(index + 1));
    }

    /// No longer leading (or the replica failed): produces still waiting get `err`.
    pub(super) fn stop(&mut self, err: impl Fn() -> PartitionError) {
        for (_, (reply, _)) in std::mem::take(&mut self.waiting) {
            let _ = reply.send(Err(err()));
        }
        self.pending.clear();
        self.known = 0;
        self.unknown = 0;
        self.term = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn batch(producer_id: i64, records: i32) -> (BatchHeader, Bytes) {
        let h = BatchHeader {
            base_offset: 0,
            batch_length: 88,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: 0,
            base_sequence: 0,
            records_count: records,
        };
        (h, Bytes::from_static(&[0; 100]))
    }

    fn ok(base: i64) -> ProduceOk {
        ProduceOk {
            base_offset: base,
            log_append_time: -1,
            log_start_offset: 0,
        }
    }

    #[test]
    fn plain_batches_are_predicted_and_answered_once_synced() {
        assert_eq!(offsets_taken(&[batch(-1, 3), batch(-1, 2)], 1000), Some(5));
        assert_eq!(offsets_taken(&[batch(-1, 3), batch(7, 2)], 1000), None);
        assert_eq!(offsets_taken(&[batch(-1, 3)], 10), None);

        let mut a = LocalAcks::default();
        // Nothing before leading; a new leader at index 10 waits for what it inherited.
        assert_eq!(a.predict(10, 100), None);
        a.lead(2, 10);
        assert_eq!(a.predict(9, 100), None);
        assert_eq!(a.predict(10, 100), Some(100));
        a.proposed(11, Some(3));
        let (tx, mut rx) = oneshot::channel();
        a.answer_when_synced(11, tx, ok(100));
        assert_eq!(a.predict(10, 100), Some(103));
        a.proposed(12, Some(2));
        let (tx2, mut rx2) = oneshot::channel();
        a.answer_when_synced(12, tx2, ok(103));
        a.synced(11);
        assert_eq!(rx.try_recv().unwrap().unwrap().base_offset, 100);
        assert!(rx2.try_recv().is_err());
        a.synced(12);
        assert_eq!(rx2.try_recv().unwrap().unwrap().base_offset, 103);
        // Applied where predicted: nothing to report, and the sums follow.
        assert_eq!(a.applied(11, Some(100)), None);
        assert_eq!(a.predict(11, 103), Some(105));
        // An idempotent entry makes the next ones unknown until it is applied.
        a.proposed(13, None);
        assert_eq!(a.predict(11, 103), None);
        // An entry applied elsewhere than answered is reported.
        assert_eq!(a.applied(12, Some(104)), Some(103));
        assert_eq!(a.applied(13, None), None);
        assert_eq!(a.predict(13, 105), Some(105));
    }

    #[test]
    fn losing_the_lead_fails_what_waits() {
        let mut a = LocalAcks::default();
        a.lead(3, 0);
        a.proposed(1, Some(1));
        let (tx, mut rx) = oneshot::channel();
        a.answer_when_synced(1, tx, ok(0));
        a.stop(|| PartitionError::NotLeader);
        assert!(matches!(
            rx.try_recv().unwrap(),
            Err(PartitionError::NotLeader)
        ));
        assert_eq!(a.predict(0, 0), None);
        // A later leadership starts over after what its log holds.
        a.lead(5, 4);
        assert_eq!(a.predict(3, 1), None);
        assert_eq!(a.predict(4, 1), Some(1));
    }
}
