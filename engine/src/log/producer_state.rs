//! Idempotent producers: per producer id, the epoch and the last five batches' sequence ranges
//! and offsets, so a retried batch is recognised and answered with its original offset instead
//! of being written twice.
//!
//! The state is rebuilt on start from a snapshot taken when a segment rolls
//! (`<offset>.snapshot`: the state as of that offset) plus the batch headers after it, so
//! deduplication survives restarts without rereading the whole log.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};

use super::batch::BatchHeader;

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
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SequenceError {
    #[error("producer {pid} epoch {got} is older than the current epoch {current}: fenced")]
    Fenced { pid: i64, got: i16, current: i16 },
    #[error("producer {pid} sent sequence {got}, expected {expected}")]
    OutOfOrder { pid: i64, got: i32, expected: i32 },
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

    /// Records an appended batch (also used when replaying the log on start).
    pub fn record(&mut self, h: &BatchHeader, now_ms: i64) {
        if h.producer_id < 0 {
            return;
        }
        let meta = BatchMeta {
            first_seq: h.base_sequence,
            last_seq: h.base_sequence.wrapping_add(h.last_offset_delta),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
        };
        let e = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
                last_append_ms: now_ms,
            });
        if h.producer_epoch != e.epoch {
            e.epoch = h.producer_epoch;
            e.batches.clear();
        }
        e.batches.push_back(meta);
        while e.batches.len() > REMEMBERED_BATCHES {
            e.batches.pop_front();
        }
        e.last_append_ms = e.last_append_ms.max(now_ms);
    }

    /// Forgets producers idle for longer than `expiry_ms`; returns how many.
    pub fn expire(&mut self, now_ms: i64, expiry_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| now_ms - e.last_append_ms <= expiry_ms);
        before - self.producers.len()
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Writes the state as of `offset` beside the segments.
    pub fn snapshot(&self, dir: &Path, offset: i64) -> io::Result<()> {
        let entries: Vec<(&i64, &ProducerEntry)> = self.producers.iter().collect();
        let bytes = serde_json::to_vec(&entries).map_err(io::Error::other)?;
        super::files::write_atomic(&snapshot_path(dir, offset), &bytes)
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
            if let Ok(entries) = serde_json::from_slice::<Vec<(i64, ProducerEntry)>>(&bytes) {
                return Ok(Some((
                    ProducerStates {
                        producers: entries.into_iter().collect(),
                    },
                    o,
                )));
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

    #[test]
    fn duplicates_gaps_and_fencing() {
        let mut s = ProducerStates::default();
        assert_eq!(s.check(&h(7, 0, 0, 3, 0)), Ok(Check::Append));
        s.record(&h(7, 0, 0, 3, 10), 0);
        assert_eq!(s.check(&h(7, 0, 3, 2, 0)), Ok(Check::Append));
        s.record(&h(7, 0, 3, 2, 13), 0);
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
        s.record(&h(7, 1, 0, 1, 15), 0);
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
            s.record(&h(1, 0, i, 1, i as i64), 1000);
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
        s.record(&h(3, 2, 0, 4, 0), 5);
        s.snapshot(dir.path(), 4).unwrap();
        s.record(&h(3, 2, 4, 1, 4), 6);
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
