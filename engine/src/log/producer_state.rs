//! Idempotent and transactional producers: per producer id, the epoch and the last five
//! batches' sequence ranges and offsets, so a retried batch is recognised and answered with its
//! original offset instead of being written twice; the first offset of its ongoing transaction,
//! which holds back the last stable offset (LSO); and the partition's aborted transactions,
//! which read_committed fetches return so that clients skip their records.
//!
//! The state is rebuilt on start from a snapshot taken when a segment rolls
//! (`<offset>.snapshot`: the state as of that offset) plus the batch headers after it, so
//! deduplication and transactions survive restarts without rereading the whole log. The
//! aborted transactions ride in the same snapshots (Kafka keeps a `.txnindex` per segment):
//! they are few, and pruned with the log start.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};

use super::batch::BatchHeader;
use super::control::{ControlType, EndMarker};

/// Batches remembered per producer, as Kafka does (`max.in.flight.requests.per.connection` <= 5).
pub const REMEMBERED_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMeta>,
    /// Wall-clock ms of the last append, for expiry.
    pub last_append_ms: i64,
    /// The first offset of the producer's ongoing transaction.
    #[serde(default)]
    pub txn_first_offset: Option<i64>,
    /// The coordinator epoch of the last marker written for the producer (-1: none).
    #[serde(default = "no_coordinator_epoch")]
    pub coordinator_epoch: i32,
}

fn no_coordinator_epoch() -> i32 {
    -1
}

/// An aborted transaction: readers skip the producer's records from `first_offset` to
/// `last_offset` (its abort marker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// A transaction a producer has open in this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OngoingTxn {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub first_offset: i64,
    pub last_append_ms: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SequenceError {
    #[error("producer {pid} epoch {got} is older than the current epoch {current}: fenced")]
    Fenced { pid: i64, got: i16, current: i16 },
    #[error("producer {pid} sent sequence {got}, expected {expected}")]
    OutOfOrder { pid: i64, got: i32, expected: i32 },
    #[error("a marker for producer {pid} from coordinator epoch {got}, older than {current}")]
    StaleCoordinator { pid: i64, got: i32, current: i32 },
}

/// The outcome of checking a batch against its producer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Not idempotent, or the next batch in sequence: append it.
    Append,
    /// A retry of a batch already in the log at these offsets.
    Duplicate(BatchMeta),
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
    /// Ongoing transactions by first offset (derived from `producers`): the first is the LSO.
    ongoing: BTreeMap<i64, i64>,
    /// Aborted transactions, in the order of their markers (so by `last_offset`).
    aborted: Vec<AbortedTxn>,
}

/// What a snapshot file holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct Snapshot {
    producers: Vec<(i64, ProducerEntry)>,
    aborted: Vec<AbortedTxn>,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerStates {
    /// Decides what to do with a batch before it is appended.
    pub fn check(&self, h: &BatchHeader) -> Result<Check, SequenceError> {
        if h.producer_id < 0 {
            return Ok(Check::Append);
        }
        let pid = h.producer_id;
        let Some(e) = self.producers.get(&pid) else {
            // Unknown producer (new, or its state expired): accept, as Kafka does since KIP-360.
            return Ok(Check::Append);
        };
        if h.producer_epoch < e.epoch {
            return Err(SequenceError::Fenced {
                pid,
                got: h.producer_epoch,
                current: e.epoch,
            });
        }
        if h.is_control() || h.base_sequence < 0 {
            // Markers and the broker's own transactional writes (offsets) carry no sequence.
            return Ok(Check::Append);
        }
        if h.producer_epoch > e.epoch {
            // A bumped epoch restarts the sequence at 0.
            if h.base_sequence != 0 {
                return Err(SequenceError::OutOfOrder {
                    pid,
                    got: h.base_sequence,
                    expected: 0,
                });
            }
            return Ok(Check::Append);
        }
        let last_seq = h.base_sequence.wrapping_add(h.last_offset_delta);
        if let Some(b) = e
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
        {
            return Ok(Check::Duplicate(*b));
        }
        let expected = e
            .batches
            .back()
            .map_or(h.base_sequence, |b| next_seq(b.last_seq));
        if h.base_sequence != expected {
            return Err(SequenceError::OutOfOrder {
                pid,
                got: h.base_sequence,
                expected,
            });
        }
        Ok(Check::Append)
    }

    /// Records an appended batch (also used when replaying the log on start); `marker` is
    /// the type of a control batch's marker.
    pub fn record(&mut self, h: &BatchHeader, marker: Option<EndMarker>, now_ms: i64) {
        if h.producer_id < 0 {
            return;
        }
        let e = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
                last_append_ms: now_ms,
                txn_first_offset: None,
                coordinator_epoch: -1,
            });
        if h.producer_epoch > e.epoch || (h.producer_epoch != e.epoch && !h.is_control()) {
            e.epoch = h.producer_epoch;
            e.batches.clear();
        }
        e.last_append_ms = e.last_append_ms.max(now_ms);
        if h.is_control() {
            if let Some(m) = marker {
                e.coordinator_epoch = e.coordinator_epoch.max(m.coordinator_epoch);
            }
            // A marker ends the producer's transaction here, whatever it held.
            if let Some(first) = e.txn_first_offset.take() {
                self.ongoing.remove(&first);
                if marker.is_some_and(|m| m.control == ControlType::Abort) {
                    self.aborted.push(AbortedTxn {
                        producer_id: h.producer_id,
                        first_offset: first,
                        last_offset: h.base_offset,
                    });
                }
            }
            return;
        }
        if h.is_transactional() && e.txn_first_offset.is_none() {
            e.txn_first_offset = Some(h.base_offset);
            self.ongoing.insert(h.base_offset, h.producer_id);
        }
        if h.base_sequence < 0 {
            return;
        }
        e.batches.push_back(BatchMeta {
            first_seq: h.base_sequence,
            last_seq: h.base_sequence.wrapping_add(h.last_offset_delta),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
        });
        while e.batches.len() > REMEMBERED_BATCHES {
            e.batches.pop_front();
        }
    }

    /// Records the coordinator epoch of a marker written for a producer.
    pub fn note_coordinator_epoch(&mut self, producer_id: i64, epoch: i32) {
        if let Some(e) = self.producers.get_mut(&producer_id) {
            e.coordinator_epoch = e.coordinator_epoch.max(epoch);
        }
    }

    /// Whether a marker for `producer_id` at `producer_epoch` from a coordinator at
    /// `coordinator_epoch` may be written: not from an older producer epoch, nor from a
    /// coordinator older than one that already wrote a marker for it (a zombie coordinator).
    pub fn check_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<(), SequenceError> {
        match self.producers.get(&producer_id) {
            Some(e) if producer_epoch < e.epoch => Err(SequenceError::Fenced {
                pid: producer_id,
                got: producer_epoch,
                current: e.epoch,
            }),
            Some(e) if coordinator_epoch < e.coordinator_epoch => {
                Err(SequenceError::StaleCoordinator {
                    pid: producer_id,
                    got: coordinator_epoch,
                    current: e.coordinator_epoch,
                })
            }
            _ => Ok(()),
        }
    }

    /// Forgets producers idle for longer than `expiry_ms` (never one with a transaction
    /// open: its marker is still to come); returns how many.
    pub fn expire(&mut self, now_ms: i64, expiry_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| e.txn_first_offset.is_some() || now_ms - e.last_append_ms <= expiry_ms);
        before - self.producers.len()
    }

    /// The first offset of the oldest ongoing transaction: the last stable offset, unless the
    /// high watermark is lower.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// The ongoing transactions, oldest first.
    pub fn ongoing(&self) -> Vec<OngoingTxn> {
        self.ongoing
            .iter()
            .filter_map(|(&first, pid)| {
                let e = self.producers.get(pid)?;
                Some(OngoingTxn {
                    producer_id: *pid,
                    producer_epoch: e.epoch,
                    first_offset: first,
                    last_append_ms: e.last_append_ms,
                })
            })
            .collect()
    }

    /// One producer's state.
    pub fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Every producer's state (DescribeProducers).
    pub fn entries(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(&pid, e)| (pid, e))
    }

    /// The aborted transactions a read of `[from, to)` must report: those whose range
    /// overlaps it.
    pub fn aborted_overlapping(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted[start..]
            .iter()
            .filter(|a| a.first_offset < to)
            .copied()
            .collect()
    }

    /// Every aborted transaction still in the log (compaction removes their records).
    pub fn aborted(&self) -> &[AbortedTxn] {
        &self.aborted
    }

    /// Forgets aborted transactions that end below the log start.
    pub fn prune_aborted(&mut self, log_start: i64) {
        let gone = self.aborted.partition_point(|a| a.last_offset < log_start);
        self.aborted.drain(..gone);
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Writes the state as of `offset` beside the segments.
    pub fn snapshot(&self, dir: &Path, offset: i64) -> io::Result<()> {
        let snap = Snapshot {
            producers: self
                .producers
                .iter()
                .map(|(&p, e)| (p, e.clone()))
                .collect(),
            aborted: self.aborted.clone(),
        };
        let bytes = serde_json::to_vec(&snap).map_err(io::Error::other)?;
        super::files::write_atomic(&snapshot_path(dir, offset), &bytes)
    }

    /// The state a snapshot file's bytes hold; `None` if they are not a snapshot. Releases
    /// before transactions wrote only the producers.
    pub fn decode_snapshot(bytes: &[u8]) -> Option<Self> {
        let snap = serde_json::from_slice::<Snapshot>(bytes).ok().or_else(|| {
            serde_json::from_slice::<Vec<(i64, ProducerEntry)>>(bytes)
                .ok()
                .map(|producers| Snapshot {
                    producers,
                    aborted: Vec::new(),
                })
        })?;
        let producers: HashMap<i64, ProducerEntry> = snap.producers.into_iter().collect();
        let ongoing = producers
            .iter()
            .filter_map(|(&p, e)| Some((e.txn_first_offset?, p)))
            .collect();
        Some(ProducerStates {
            producers,
            ongoing,
            aborted: snap.aborted,
        })
    }

    /// Loads the newest snapshot at or below `max_offset`; returns it with its offset.
    pub fn load_latest(dir: &Path, max_offset: i64) -> io::Result<Option<(Self, i64)>> {
        let mut offsets = snapshot_offsets(dir)?;
        offsets.retain(|&o| o <= max_offset);
        while let Some(o) = offsets.pop() {
            let Ok(bytes) = std::fs::read(snapshot_path(dir, o)) else {
                continue;
            };
            // A damaged snapshot is skipped: an older one plus more replay gives the same state.
            if let Some(states) = Self::decode_snapshot(&bytes) {
                return Ok(Some((states, o)));
            }
        }
        Ok(None)
    }

    /// Removes snapshots for offsets below `keep_from`, keeping the newest one below it.
    pub fn prune_snapshots(dir: &Path, keep_from: i64) -> io::Result<()> {
        let offsets = snapshot_offsets(dir)?;
        let below: Vec<i64> = offsets.iter().copied().filter(|&o| o < keep_from).collect();
        for &o in below.iter().rev().skip(1) {
            let _ = super::power::remove_file(&snapshot_path(dir, o));
        }
        Ok(())
    }
}

/// Removes every snapshot after `offset` (all of them with `i64::MIN`).
pub fn remove_snapshots_after(dir: &Path, offset: i64) -> io::Result<()> {
    for o in snapshot_offsets(dir)? {
        if o > offset {
            super::power::remove_file(&snapshot_path(dir, o))?;
        }
    }
    Ok(())
}

pub fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.snapshot"))
}

fn snapshot_offsets(dir: &Path) -> io::Result<Vec<i64>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name();
        if let Some(stem) = name.to_string_lossy().strip_suffix(".snapshot") {
            if let Ok(o) = stem.parse() {
                v.push(o);
            }
        }
    }
    v.sort_unstable();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pid: i64, epoch: i16, seq: i32, n: i32, base: i64) -> BatchHeader {
        BatchHeader {
            base_offset: base,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: n - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: n,
        }
    }

    impl ProducerStates {
        fn record_data(&mut self, h: &BatchHeader, now_ms: i64) {
            self.record(h, None, now_ms)
        }
    }

    fn txn(pid: i64, epoch: i16, seq: i32, n: i32, base: i64) -> BatchHeader {
        let mut b = h(pid, epoch, seq, n, base);
        b.attributes = 0x10;
        b
    }

    fn end(control: ControlType) -> Option<EndMarker> {
        Some(EndMarker {
            control,
            coordinator_epoch: 0,
        })
    }

    fn marker(pid: i64, epoch: i16, base: i64) -> BatchHeader {
        let mut b = h(pid, epoch, -1, 1, base);
        b.attributes = 0x30;
        b
    }

    #[test]
    fn transactions_hold_the_lso_and_aborts_are_indexed() {
        let mut s = ProducerStates::default();
        s.record(&txn(1, 0, 0, 2, 10), None, 0);
        s.record(&txn(2, 0, 0, 1, 12), None, 0);
        s.record(&txn(1, 0, 2, 1, 13), None, 0);
        assert_eq!(s.first_unstable_offset(), Some(10));
        assert_eq!(s.ongoing().len(), 2);
        // Producer 1 aborts at 14: 12 (producer 2) is now the first unstable offset.
        s.record(&marker(1, 0, 14), end(ControlType::Abort), 0);
        assert_eq!(s.first_unstable_offset(), Some(12));
        s.record(&marker(2, 0, 15), end(ControlType::Commit), 0);
        assert_eq!(s.first_unstable_offset(), None);
        let a = AbortedTxn {
            producer_id: 1,
            first_offset: 10,
            last_offset: 14,
        };
        assert_eq!(s.aborted_overlapping(0, 10), vec![]);
        assert_eq!(s.aborted_overlapping(0, 11), vec![a]);
        assert_eq!(s.aborted_overlapping(14, 20), vec![a]);
        assert_eq!(s.aborted_overlapping(15, 20), vec![]);
        // The sequence continues across the marker; the next transaction starts anew.
        assert_eq!(s.check(&txn(1, 0, 3, 1, 0)), Ok(Check::Append));
        s.record(&txn(1, 0, 3, 1, 16), None, 0);
        assert_eq!(s.first_unstable_offset(), Some(16));
        // Markers from an older producer epoch or coordinator are refused.
        s.note_coordinator_epoch(1, 4);
        assert!(s.check_marker(1, 0, 3).is_err());
        assert!(s.check_marker(1, 0, 4).is_ok());
        s.record(&txn(1, 1, 0, 1, 17), None, 0);
        assert!(matches!(
            s.check_marker(1, 0, 5),
            Err(SequenceError::Fenced { .. })
        ));
        // A producer with a transaction open never expires.
        assert_eq!(s.expire(1_000_000, 10), 1);
        assert_eq!(s.first_unstable_offset(), Some(16));
        // Snapshots keep both.
        let dir = tempfile::tempdir().unwrap();
        s.snapshot(dir.path(), 18).unwrap();
        let (back, _) = ProducerStates::load_latest(dir.path(), 18)
            .unwrap()
            .unwrap();
        assert_eq!(back, s);
        s.prune_aborted(15);
        assert!(s.aborted().is_empty());
        // Broker-written transactional batches (base sequence -1) skip sequence checks.
        assert_eq!(s.check(&txn(1, 1, -1, 3, 0)), Ok(Check::Append));
    }

    #[test]
    fn duplicates_gaps_and_fencing() {
        let mut s = ProducerStates::default();
        assert_eq!(s.check(&h(7, 0, 0, 3, 0)), Ok(Check::Append));
        s.record_data(&h(7, 0, 0, 3, 10), 0);
        assert_eq!(s.check(&h(7, 0, 3, 2, 0)), Ok(Check::Append));
        s.record_data(&h(7, 0, 3, 2, 13), 0);
        // A retry of either batch is a duplicate with its original offsets.
        assert_eq!(
            s.check(&h(7, 0, 0, 3, 0)),
            Ok(Check::Duplicate(BatchMeta {
                first_seq: 0,
                last_seq: 2,
                base_offset: 10,
                last_offset: 12
            }))
        );
        assert!(matches!(
            s.check(&h(7, 0, 3, 2, 0)),
            Ok(Check::Duplicate(_))
        ));
        // A gap is out of order.
        assert_eq!(
            s.check(&h(7, 0, 9, 1, 0)),
            Err(SequenceError::OutOfOrder {
                pid: 7,
                got: 9,
                expected: 5
            })
        );
        // A new epoch starts at 0; the old epoch is then fenced.
        assert_eq!(s.check(&h(7, 1, 0, 1, 0)), Ok(Check::Append));
        s.record_data(&h(7, 1, 0, 1, 15), 0);
        assert!(matches!(
            s.check(&h(7, 0, 5, 1, 0)),
            Err(SequenceError::Fenced { .. })
        ));
        assert!(matches!(
            s.check(&h(7, 2, 4, 1, 0)),
            Err(SequenceError::OutOfOrder { .. })
        ));
        // Non-idempotent batches are never checked.
        assert_eq!(s.check(&h(-1, -1, -1, 1, 0)), Ok(Check::Append));
    }

    #[test]
    fn only_five_batches_are_remembered_and_idle_producers_expire() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            s.record_data(&h(1, 0, i, 1, i as i64), 1000);
        }
        assert!(matches!(
            s.check(&h(1, 0, 6, 1, 0)),
            Ok(Check::Duplicate(_))
        ));
        assert!(matches!(
            s.check(&h(1, 0, 2, 1, 0)),
            Ok(Check::Duplicate(_))
        ));
        assert!(matches!(
            s.check(&h(1, 0, 1, 1, 0)),
            Err(SequenceError::OutOfOrder { .. })
        ));
        assert_eq!(s.expire(5000, 10_000), 0);
        assert_eq!(s.expire(20_000, 10_000), 1);
        assert!(s.is_empty());
    }

    #[test]
    fn snapshots_round_trip_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ProducerStates::default();
        s.record_data(&h(3, 2, 0, 4, 0), 5);
        s.snapshot(dir.path(), 4).unwrap();
        s.record_data(&h(3, 2, 4, 1, 4), 6);
        s.snapshot(dir.path(), 5).unwrap();
        let (back, at) = ProducerStates::load_latest(dir.path(), 4).unwrap().unwrap();
        assert_eq!(at, 4);
        assert!(matches!(
            back.check(&h(3, 2, 0, 4, 0)),
            Ok(Check::Duplicate(_))
        ));
        ProducerStates::prune_snapshots(dir.path(), 100).unwrap();
        assert_eq!(ProducerStates::load_latest(dir.path(), 4).unwrap(), None);
        assert!(ProducerStates::load_latest(dir.path(), 5)
            .unwrap()
            .is_some());
    }
}
