//! The log of one partition: a directory of segments, rolled by size and age, trimmed by
//! retention and DeleteRecords.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::batch::{self, Assign, BatchHeader};
use super::compaction;
use super::file_slice::FileSlice;
use super::files::{sync_dir, write_atomic};
use super::power;
use super::producer_state::{Check, ProducerStates, SequenceError};
use super::segment::{self, Segment};

/// The topic settings the log itself obeys.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub index_interval_bytes: u64,
    pub log_append_time: bool,
    /// Sealed segments are uploaded to the remote tier (`remote.storage.enable`).
    pub remote_storage: bool,
    /// With remote storage: how long and how much of the uploaded log stays on local disk.
    pub local_retention_ms: i64,
    pub local_retention_bytes: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 128 << 20,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            log_append_time: false,
            remote_storage: false,
            local_retention_ms: 7 * 24 * 3600 * 1000,
            local_retention_bytes: -1,
        }
    }
}

/// A sealed segment's extent, size and age, for compaction scheduling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedSummary {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size: u64,
    pub max_timestamp: i64,
    /// Wall-clock ms of the segment's first append.
    pub created_ms: i64,
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker's timestamp for LogAppendTime topics, else -1.
    pub log_append_time: i64,
}

pub struct PartitionLog {
    dir: PathBuf,
    segments: BTreeMap<i64, Segment>,
    config: LogConfig,
    log_start_offset: i64,
    /// `(epoch, first offset of that epoch)`, ascending: answers OffsetForLeaderEpoch.
    epochs: Vec<(i32, i64)>,
    /// Files written since the last flush that must be synced for durability.
    dirty: Vec<Arc<File>>,
    /// Idempotent producers' sequence state.
    producers: ProducerStates,
    pub recovered_bytes_truncated: u64,
    /// In a cluster: the Raft checkpoint's offset; no segment ending past it is deleted or
    /// compacted (what comes after may be re-applied or still uncommitted).
    keep_from: i64,
    /// In a cluster: the offset after what is committed and applied; segments ending past it
    /// are not offered to the remote tier.
    stable_end: i64,
}

pub(crate) const LOG_START_FILE: &str = "log-start-offset";
const EPOCH_FILE: &str = "leader-epoch-checkpoint";

impl PartitionLog {
    /// Opens (or creates) the log in `dir`, recovering a torn tail of the active segment.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> io::Result<Self> {
        power::create_dir_all(dir)?;
        // Finish a compaction swap a crash interrupted (its replacement files are complete).
        for base in compaction::pending_swaps(dir)? {
            compaction::install(dir, base)?;
        }
        let bases = segment::list_bases(dir)?;
        let mut segments = BTreeMap::new();
        let mut truncated = 0;
        for (i, &base) in bases.iter().enumerate() {
            let active = i + 1 == bases.len();
            let (seg, rec) = Segment::open(dir, base, active, config.index_interval_bytes, now_ms)?;
            truncated += rec.truncated_bytes;
            segments.insert(base, seg);
        }
        if segments.is_empty() {
            segments.insert(0, Segment::create(dir, 0, now_ms)?);
            // The first segment's directory entry must be durable before anything appended to
            // it is acknowledged (the group commit syncs only the file's data).
            sync_dir(dir)?;
        }
        let first_base = *segments.keys().next().unwrap_or(&0);
        let persisted = read_i64(&dir.join(LOG_START_FILE))?;
        // With remote storage the log may start below the first local segment: the remote
        // tier holds the rest (the partition actor checks that it does).
        let log_start_offset = match persisted {
            Some(p) if config.remote_storage => p,
            Some(p) => p.max(first_base),
            // Every move of the start is persisted, so a tiered log without one starts at 0
            // (the tier holds what is not local; the actor checks that it does).
            None if config.remote_storage => 0,
            None => first_base,
        };
        let epochs = read_epochs(&dir.join(EPOCH_FILE))?;
        let mut log = PartitionLog {
            dir: dir.to_path_buf(),
            segments,
            config,
            log_start_offset,
            epochs,
            dirty: Vec::new(),
            producers: ProducerStates::default(),
            recovered_bytes_truncated: truncated,
            keep_from: i64::MAX,
            stable_end: i64::MAX,
        };
        // Epoch entries past a truncated tail no longer describe the log.
        let end = log.next_offset();
        log.epochs.retain(|&(_, start)| start <= end);
        log.rebuild_producers(now_ms)?;
        Ok(log)
    }

    /// Loads the newest producer-state snapshot and replays the batch headers after it.
    fn rebuild_producers(&mut self, now_ms: i64) -> io::Result<()> {
        let end = self.next_offset();
        let (mut states, from) = match ProducerStates::load_latest(&self.dir, end)? {
            Some((s, at)) => (s, at),
            None => (ProducerStates::default(), i64::MIN),
        };
        for seg in self.segments.values().filter(|s| s.next_offset > from) {
            for (h, marker) in seg.headers_from(from.max(seg.base_offset))? {
                if h.base_offset >= from {
                    states.record(&h, marker, now_ms);
                }
            }
        }
        self.producers = states;
        Ok(())
    }

    /// Prepares an empty partition directory whose log starts at `start` and whose next
    /// record gets offset `end`: a topic mounted back from the remote tier.
    pub fn init_at(dir: &Path, start: i64, end: i64, now_ms: i64) -> io::Result<()> {
        power::create_dir_all(dir)?;
        drop(Segment::create(dir, end, now_ms)?);
        write_i64(&dir.join(LOG_START_FILE), start)?;
        sync_dir(dir)
    }

    /// The first offset held on local disk. Only a tiered log starts below it; elsewhere a
    /// first segment that starts later (compaction emptied the ones before) is no gap, and
    /// reads from the log start simply continue at the next batch there is.
    pub fn local_start_offset(&self) -> i64 {
        if !self.config.remote_storage {
            return self.log_start_offset;
        }
        let first = self.segments.keys().next().copied().unwrap_or(0);
        self.log_start_offset.max(first)
    }

    /// In a cluster: the Raft checkpoint's offset (`keep_from`) and what is committed
    /// (`stable_end`); see the fields.
    pub fn set_raft_bounds(&mut self, keep_from: i64, stable_end: i64) {
        self.keep_from = keep_from;
        self.stable_end = stable_end;
    }

    /// Segments ending past this may be neither deleted nor rewritten.
    fn removable_end(&self) -> i64 {
        self.keep_from.min(self.stable_end)
    }

    /// The sealed segments ending after `from`, as the remote tier takes them.
    pub fn sealed_segments_from(&self, from: i64) -> Vec<crate::remote::SealedSegment> {
        let n = self.segments.len().saturating_sub(1);
        self.segments
            .values()
            .take(n)
            .filter(|s| s.next_offset > from && s.size > 0 && s.next_offset <= self.stable_end)
            .map(|s| {
                let snapshot = super::producer_state::snapshot_path(&self.dir, s.next_offset);
                crate::remote::SealedSegment {
                    base_offset: s.base_offset,
                    next_offset: s.next_offset,
                    size: s.size,
                    max_timestamp: s.max_timestamp,
                    log: segment::log_path(&self.dir, s.base_offset),
                    index: segment::index_path(&self.dir, s.base_offset),
                    time_index: segment::time_index_path(&self.dir, s.base_offset),
                    producer_snapshot: snapshot.exists().then_some(snapshot),
                }
            })
            .collect()
    }

    /// The sealed local segments, for retention across tiers.
    pub fn local_segments(&self) -> Vec<crate::remote::RemoteSegment> {
        let n = self.segments.len().saturating_sub(1);
        self.segments
            .values()
            .take(n)
            .map(|s| crate::remote::RemoteSegment {
                base_offset: s.base_offset,
                next_offset: s.next_offset,
                size: s.size,
                max_timestamp: s.max_timestamp,
            })
            .collect()
    }

    /// Local retention of a tiered log: removes the oldest sealed segments that are uploaded
    /// (end at or below `uploaded_end`) and older than `local.retention.ms` or beyond
    /// `local.retention.bytes`. The log start does not move: those offsets are remote now.
    pub fn apply_local_retention(&mut self, now_ms: i64, uploaded_end: i64) -> io::Result<u64> {
        let mut freed = 0;
        let mut total = self.size_bytes() as i64;
        while self.segments.len() >= 2 {
            let Some(oldest) = self.segments.values().next() else {
                break;
            };
            if oldest.next_offset > uploaded_end || oldest.next_offset > self.removable_end() {
                break;
            }
            let expired = self.config.local_retention_ms >= 0
                && oldest.max_timestamp >= 0
                && now_ms - oldest.max_timestamp > self.config.local_retention_ms;
            let over = self.config.local_retention_bytes >= 0
                && total - oldest.size as i64 >= self.config.local_retention_bytes;
            if !(expired || over || oldest.size == 0) {
                break;
            }
            let base = oldest.base_offset;
            if let Some(seg) = self.segments.remove(&base) {
                total -= seg.size as i64;
                freed += seg.size;
                seg.delete()?;
            }
        }
        if freed > 0 {
            ProducerStates::prune_snapshots(&self.dir, self.local_start_offset())?;
        }
        Ok(freed)
    }

    /// Base offsets of the sealed segments (all but the active one), ascending.
    pub fn sealed_bases(&self) -> Vec<i64> {
        let n = self.segments.len().saturating_sub(1);
        self.segments.keys().take(n).copied().collect()
    }

    /// The sealed segments as compaction schedules them, ascending.
    pub fn sealed_summaries(&self) -> Vec<SealedSummary> {
        let n = self.segments.len().saturating_sub(1);
        let end = self.removable_end();
        self.segments
            .values()
            .take(n)
            .take_while(|s| s.next_offset <= end)
            .map(|s| SealedSummary {
                base_offset: s.base_offset,
                next_offset: s.next_offset,
                size: s.size,
                max_timestamp: s.max_timestamp,
                created_ms: s.created_ms,
            })
            .collect()
    }

    /// The offset after the last sealed segment (the active segment's base).
    pub fn sealed_end(&self) -> i64 {
        self.active().base_offset
    }

    /// Installs compacted replacements of sealed segments (see `compaction`). A segment that
    /// retention removed meanwhile just loses its replacement.
    pub fn install_cleaned(&mut self, bases: &[i64], now_ms: i64) -> io::Result<()> {
        for &base in bases {
            if self.segments.remove(&base).is_none() {
                let _ = power::remove_file(&compaction::swap_path(&self.dir, base));
                continue;
            }
            compaction::install(&self.dir, base)?;
            let (seg, _) = Segment::open(
                &self.dir,
                base,
                false,
                self.config.index_interval_bytes,
                now_ms,
            )?;
            self.segments.insert(base, seg);
        }
        Ok(())
    }

    /// Checks an idempotent producer's batch against its sequence state.
    pub fn check_producer(&self, h: &BatchHeader) -> Result<Check, SequenceError> {
        self.producers.check(h)
    }

    /// Idempotent producers' sequence state and transactions, as of the log's end.
    pub fn producers(&self) -> &ProducerStates {
        &self.producers
    }

    /// Producer state to update beside an append (a marker's coordinator epoch).
    pub fn producers_mut(&mut self) -> &mut ProducerStates {
        &mut self.producers
    }

    /// The last stable offset given the high watermark: no read_committed consumer reads at or
    /// past the first record of a transaction still open. In a cluster the producer state also
    /// holds batches placed past the high watermark, not committed yet; a marker among them
    /// ends its transaction early in this view. That is safe: a coordinator writes markers only
    /// after it has written its decision, so readers see the outcome the transaction will have
    /// (a marker cut with its entry is written again, the same).
    pub fn last_stable_offset(&self, high: i64) -> i64 {
        self.producers
            .first_unstable_offset()
            .map_or(high, |first| first.min(high))
    }

    /// Forgets producers idle for longer than `expiry_ms`.
    pub fn expire_producers(&mut self, now_ms: i64, expiry_ms: i64) -> usize {
        self.producers.expire(now_ms, expiry_ms)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config(&self) -> &LogConfig {
        &self.config
    }
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }
    /// The log end offset: the offset the next record will get.
    pub fn next_offset(&self) -> i64 {
        self.active().next_offset
    }
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size).sum()
    }
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }
    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    /// Assigns offsets to a validated batch and appends it (to the page cache).
    pub fn append(
        &mut self,
        h: &BatchHeader,
        bytes: &Bytes,
        leader_epoch: i32,
        now_ms: i64,
    ) -> io::Result<Appended> {
        self.maybe_roll(bytes.len() as u64, now_ms)?;
        let base = self.next_offset();
        if self.epochs.last().is_none_or(|&(e, _)| e < leader_epoch) {
            self.epochs.push((leader_epoch, base));
            write_epochs(&self.dir.join(EPOCH_FILE), &self.epochs)?;
        }
        let lat = self.config.log_append_time.then_some(now_ms);
        let header = batch::assign_header(
            bytes,
            Assign {
                base_offset: base,
                leader_epoch,
                log_append_time: lat,
            },
        );
        let mut ph = *h;
        ph.base_offset = base;
        ph.partition_leader_epoch = leader_epoch;
        if let Some(ts) = lat {
            ph.max_timestamp = ts;
        }
        let interval = self.config.index_interval_bytes;
        let active = self.active_mut();
        if active.size == 0 {
            active.created_ms = now_ms;
        }
        active.append(&header, &bytes[batch::HEADER_LEN..], &ph, interval)?;
        let handle = active.sync_handle();
        self.producers
            .record(&ph, super::control::end_marker(&ph, bytes), now_ms);
        if !self.dirty.iter().any(|f| Arc::ptr_eq(f, &handle)) {
            self.dirty.push(handle);
        }
        Ok(Appended {
            base_offset: base,
            last_offset: ph.last_offset(),
            log_append_time: lat.unwrap_or(-1),
        })
    }

    /// Appends a batch copied from another replica's log, offsets and all (a snapshot being
    /// installed). Batches this log already holds are skipped; a gap (the other log was
    /// compacted) is kept.
    pub fn append_copy(&mut self, h: &BatchHeader, bytes: &Bytes, now_ms: i64) -> io::Result<()> {
        if h.last_offset() < self.next_offset() {
            return Ok(());
        }
        if h.base_offset < self.next_offset() || bytes.len() < batch::HEADER_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "copied batch at {} overlaps the log end {}",
                    h.base_offset,
                    self.next_offset()
                ),
            ));
        }
        self.maybe_roll(bytes.len() as u64, now_ms)?;
        self.append_in_active(h, bytes, now_ms)
    }

    /// Appends an entry's batches, each continuing the log, to one segment (rolling first if
    /// they do not fit the active one): returns the segment's base offset and the position of
    /// the first batch in its file, where the Raft log records them (one log).
    pub fn append_placed(
        &mut self,
        batches: &[(BatchHeader, Bytes)],
        now_ms: i64,
    ) -> io::Result<(i64, u64)> {
        let total: u64 = batches.iter().map(|(_, b)| b.len() as u64).sum();
        self.maybe_roll(total, now_ms)?;
        let segment = self.active().base_offset;
        let position = self.active().size;
        for (h, b) in batches {
            if h.base_offset != self.next_offset() || b.len() < batch::HEADER_LEN {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "batch at {} does not continue the log at {}",
                        h.base_offset,
                        self.next_offset()
                    ),
                ));
            }
            self.append_in_active(h, b, now_ms)?;
        }
        Ok((segment, position))
    }

    /// Appends a batch, offsets and all, to the active segment.
    fn append_in_active(&mut self, h: &BatchHeader, bytes: &Bytes, now_ms: i64) -> io::Result<()> {
        let epoch = h.partition_leader_epoch;
        if self.epochs.last().is_none_or(|&(e, _)| e < epoch) {
            self.epochs.push((epoch, h.base_offset));
            write_epochs(&self.dir.join(EPOCH_FILE), &self.epochs)?;
        }
        let interval = self.config.index_interval_bytes;
        let active = self.active_mut();
        if active.size == 0 {
            active.created_ms = now_ms;
        }
        let (header, records) = bytes.split_at(batch::HEADER_LEN);
        active.append(header, records, h, interval)?;
        let handle = active.sync_handle();
        self.producers
            .record(h, super::control::end_marker(h, bytes), now_ms);
        if !self.dirty.iter().any(|f| Arc::ptr_eq(f, &handle)) {
            self.dirty.push(handle);
        }
        Ok(())
    }

    /// The active segment's file, to sync with the Raft log that records what was placed.
    pub fn active_file(&self) -> Arc<File> {
        self.active().sync_handle()
    }

    /// Moves the next offset up to `offset` with no records in between (a snapshot whose last
    /// batches the other replica's compaction removed): a new segment starts there.
    pub fn skip_to(&mut self, offset: i64, now_ms: i64) -> io::Result<()> {
        if offset <= self.next_offset() {
            return Ok(());
        }
        self.active_mut().seal()?;
        self.segments
            .insert(offset, Segment::create(&self.dir, offset, now_ms)?);
        sync_dir(&self.dir)
    }

    /// Empties the log so that it starts at `start` and its next offset is `next` (a snapshot
    /// from a replica that no longer holds what comes after this log's end).
    pub fn reset(&mut self, start: i64, next: i64, now_ms: i64) -> io::Result<()> {
        for (_, seg) in std::mem::take(&mut self.segments) {
            seg.delete()?;
        }
        super::producer_state::remove_snapshots_after(&self.dir, i64::MIN)?;
        self.segments
            .insert(next, Segment::create(&self.dir, next, now_ms)?);
        self.log_start_offset = start.min(next);
        write_i64(&self.dir.join(LOG_START_FILE), self.log_start_offset)?;
        self.epochs.clear();
        write_epochs(&self.dir.join(EPOCH_FILE), &self.epochs)?;
        self.producers = ProducerStates::default();
        self.dirty.clear();
        sync_dir(&self.dir)
    }

    fn maybe_roll(&mut self, incoming: u64, now_ms: i64) -> io::Result<()> {
        let cfg = self.config.clone();
        let active = self.active();
        let full = active.size > 0 && active.size + incoming > cfg.segment_bytes;
        let old = active.size > 0 && now_ms - active.created_ms >= cfg.segment_ms;
        // Positions in the index are u32, so a segment never passes 4 GiB whatever the config.
        let too_big = active.size + incoming > u32::MAX as u64;
        if full || old || too_big {
            self.roll(now_ms)?;
        }
        Ok(())
    }

    /// Seals the active segment (syncing it and its indexes) and starts a new one.
    pub fn roll(&mut self, now_ms: i64) -> io::Result<()> {
        let next = self.next_offset();
        self.active_mut().seal()?;
        self.producers.snapshot(&self.dir, next)?;
        let seg = Segment::create(&self.dir, next, now_ms)?;
        self.segments.insert(next, seg);
        sync_dir(&self.dir)?;
        Ok(())
    }

    /// Takes the files that must be fdatasync'ed to make every append so far durable, after
    /// writing buffered index entries.
    pub fn take_dirty(&mut self) -> io::Result<Vec<Arc<File>>> {
        self.active_mut().write_indexes()?;
        Ok(std::mem::take(&mut self.dirty))
    }

    /// Reads batches from `offset`, up to `max_bytes`, never past `limit`.
    pub fn read(&self, offset: i64, max_bytes: usize, limit: i64) -> io::Result<Option<Bytes>> {
        self.locate_range(offset, max_bytes, limit)?
            .map(|s| s.read())
            .transpose()
    }

    /// Where the batches [`PartitionLog::read`] would return lie, without reading them.
    pub fn locate_range(
        &self,
        offset: i64,
        max_bytes: usize,
        limit: i64,
    ) -> io::Result<Option<FileSlice>> {
        if offset < self.local_start_offset() {
            return Ok(None);
        }
        // The segment holding `offset`, or a later one if it was emptied by retention.
        for seg in self
            .segments
            .range(..=offset)
            .next_back()
            .into_iter()
            .map(|(_, s)| s)
            .chain(self.segments.range(offset + 1..).map(|(_, s)| s))
        {
            if let Some(s) = seg.locate_range(offset, max_bytes, limit)? {
                return Ok(Some(s));
            }
        }
        Ok(None)
    }

    /// The first offset whose timestamp is at or after `ts`, with that timestamp.
    pub fn offset_for_timestamp(&self, ts: i64) -> io::Result<Option<(i64, i64)>> {
        for seg in self.segments.values() {
            if let Some((off, t)) = seg.offset_for_timestamp(ts)? {
                if off >= self.log_start_offset {
                    return Ok(Some((off, t)));
                }
            }
        }
        Ok(None)
    }

    /// The largest timestamp in the log and the offset of the batch holding it.
    pub fn max_timestamp(&self) -> Option<i64> {
        self.segments
            .values()
            .map(|s| s.max_timestamp)
            .max()
            .filter(|&t| t >= 0)
    }

    /// OffsetForLeaderEpoch: the largest epoch <= `epoch` and the offset where it ended.
    pub fn epoch_end_offset(&self, epoch: i32) -> Option<(i32, i64)> {
        let i = self.epochs.partition_point(|&(e, _)| e <= epoch);
        if i == 0 {
            return None;
        }
        let found = self.epochs[i - 1].0;
        let end = self
            .epochs
            .get(i)
            .map_or(self.next_offset(), |&(_, start)| start);
        Some((found, end))
    }

    pub fn latest_epoch(&self) -> i32 {
        self.epochs.last().map_or(0, |e| e.0)
    }

    /// DeleteRecords: moves the log start offset forward and drops segments wholly below it.
    pub fn delete_records_before(&mut self, offset: i64) -> io::Result<i64> {
        let target = offset.min(self.next_offset());
        if target > self.log_start_offset {
            self.log_start_offset = target;
            write_i64(&self.dir.join(LOG_START_FILE), target)?;
            self.drop_segments_below(target)?;
            self.producers.prune_aborted(target);
        }
        Ok(self.log_start_offset)
    }

    fn drop_segments_below(&mut self, offset: i64) -> io::Result<()> {
        let doomed: Vec<i64> = self
            .segments
            .values()
            .rev()
            .skip(1)
            .filter(|s| s.next_offset <= offset.min(self.removable_end()))
            .map(|s| s.base_offset)
            .collect();
        for base in doomed {
            if let Some(seg) = self.segments.remove(&base) {
                seg.delete()?;
            }
        }
        Ok(())
    }

    /// Applies `retention.ms` and `retention.bytes` to sealed segments; returns bytes freed.
    pub fn apply_retention(&mut self, now_ms: i64) -> io::Result<u64> {
        let freed = self.apply_retention_inner(now_ms)?;
        if freed > 0 {
            self.producers.prune_aborted(self.log_start_offset);
            ProducerStates::prune_snapshots(&self.dir, self.log_start_offset)?;
        }
        Ok(freed)
    }

    fn apply_retention_inner(&mut self, now_ms: i64) -> io::Result<u64> {
        let mut freed = 0;
        let mut total = self.size_bytes() as i64;
        loop {
            if self.segments.len() < 2 {
                break;
            }
            let Some(oldest) = self.segments.values().next() else {
                break;
            };
            if oldest.next_offset > self.removable_end() {
                break;
            }
            let expired = self.config.retention_ms >= 0
                && oldest.max_timestamp >= 0
                && now_ms - oldest.max_timestamp > self.config.retention_ms;
            let over = self.config.retention_bytes >= 0
                && total - oldest.size as i64 >= self.config.retention_bytes;
            let empty_below_start = oldest.next_offset <= self.log_start_offset;
            if !(expired || over || empty_below_start) {
                break;
            }
            let base = oldest.base_offset;
            let next = oldest.next_offset;
            if let Some(seg) = self.segments.remove(&base) {
                total -= seg.size as i64;
                freed += seg.size;
                seg.delete()?;
            }
            if next > self.log_start_offset {
                self.log_start_offset = next;
                write_i64(&self.dir.join(LOG_START_FILE), next)?;
            }
        }
        Ok(freed)
    }
}

pub(crate) fn read_i64(path: &Path) -> io::Result<Option<i64>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(s.trim().parse().ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn write_i64(path: &Path, v: i64) -> io::Result<()> {
    write_atomic(path, v.to_string().as_bytes())
}

fn read_epochs(path: &Path) -> io::Result<Vec<(i32, i64)>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(s
            .lines()
            .filter_map(|l| {
                let (e, o) = l.split_once(' ')?;
                Some((e.parse().ok()?, o.parse().ok()?))
            })
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn write_epochs(path: &Path, epochs: &[(i32, i64)]) -> io::Result<()> {
    let s: String = epochs.iter().map(|(e, o)| format!("{e} {o}\n")).collect();
    write_atomic(path, s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::tests::make_batch;
    use crate::log::batch::NewRecord;
    use kafka_protocol::records::Compression;

    fn append_n(log: &mut PartitionLog, batches: usize, per: usize) {
        for _ in 0..batches {
            let b = make_batch(per, 100, Compression::None);
            let h = batch::validate(&b).unwrap();
            log.append(&h, &b, 0, 1_700_000_000_000).unwrap();
        }
    }

    /// A clean restart rewrites no index file: each rewrite truncates, which ext4 writes back
    /// synchronously on close, and 10,000 partitions made that seconds of start-up.
    #[test]
    fn reopening_a_clean_log_leaves_its_index_files_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            segment_bytes: 4096,
            index_interval_bytes: 1 << 20,
            ..Default::default()
        };
        let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
        append_n(&mut log, 30, 5);
        log.take_dirty().unwrap();
        drop(log);
        // Every index file with its modification time and bytes.
        let indexes = || {
            let mut v: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    p.extension()
                        .is_some_and(|x| x == "index" || x == "timeindex")
                })
                .map(|p| {
                    let modified = std::fs::metadata(&p).unwrap().modified().unwrap();
                    let bytes = std::fs::read(&p).unwrap();
                    (p, modified, bytes)
                })
                .collect();
            v.sort();
            v
        };
        let before = indexes();
        assert!(before.len() >= 4, "several segments, two index files each");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
        assert_eq!(log.next_offset(), 150);
        assert_eq!(indexes(), before);
        assert_eq!(
            batch::validate(&log.read(149, 1, i64::MAX).unwrap().unwrap())
                .unwrap()
                .last_offset(),
            149
        );
    }

    #[test]
    fn append_read_roll_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            segment_bytes: 4096,
            index_interval_bytes: 512,
            ..Default::default()
        };
        let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
        append_n(&mut log, 100, 5);
        assert_eq!(log.next_offset(), 500);
        assert!(log.segment_count() > 5);
        for f in log.take_dirty().unwrap() {
            f.sync_data().unwrap();
        }
        let b = log.read(237, 1, i64::MAX).unwrap().unwrap();
        let h = batch::validate(&b).unwrap();
        assert!(h.base_offset <= 237 && h.last_offset() >= 237);
        assert!(log.read(500, 1 << 20, i64::MAX).unwrap().is_none());
        // Bytes up to the limit only.
        let upto = log.read(0, 1 << 20, 10).unwrap().unwrap();
        let parts = batch::split_batches(&upto).unwrap();
        assert_eq!(parts.last().unwrap().0.last_offset(), 9);
        drop(log);
        let log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
        assert_eq!(log.next_offset(), 500);
        assert_eq!(log.recovered_bytes_truncated, 0);
        let b = log.read(499, 1 << 20, i64::MAX).unwrap().unwrap();
        assert_eq!(batch::validate(&b).unwrap().last_offset(), 499);
    }

    #[test]
    fn torn_tail_is_truncated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
        append_n(&mut log, 10, 3);
        let path = segment::log_path(dir.path(), 0);
        drop(log);
        let len = fs::metadata(&path).unwrap().len();
        let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 7).unwrap();
        let log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(log.next_offset(), 27);
        assert!(log.recovered_bytes_truncated > 0);
        assert!(log.read(26, 1 << 20, i64::MAX).unwrap().is_some());
    }

    #[test]
    fn delete_records_and_retention() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            segment_bytes: 2048,
            retention_bytes: 4096,
            ..Default::default()
        };
        let mut log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
        append_n(&mut log, 60, 2);
        assert_eq!(log.delete_records_before(10).unwrap(), 10);
        assert!(log.read(5, 100, i64::MAX).unwrap().is_none());
        let freed = log.apply_retention(1_700_000_000_000).unwrap();
        assert!(freed > 0);
        assert!(log.size_bytes() <= 4096 + 2048);
        assert!(log.log_start_offset() > 10);
        assert_eq!(log.next_offset(), 120);
    }

    #[test]
    fn producer_state_survives_reopen_and_rolls() {
        use crate::log::producer_state::Check;
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            segment_bytes: 2048,
            ..Default::default()
        };
        let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
        let mut headers = Vec::new();
        for i in 0..40 {
            let b = make_batch(2, 100, Compression::None);
            let mut m = bytes::BytesMut::from(&b[..]);
            m[43..51].copy_from_slice(&9i64.to_be_bytes()); // producer id
            m[51..53].copy_from_slice(&0i16.to_be_bytes()); // epoch
            m[53..57].copy_from_slice(&(i * 2i32).to_be_bytes()); // base sequence
            let crc = batch::compute_crc(&m);
            m[17..21].copy_from_slice(&crc.to_be_bytes());
            let b = m.freeze();
            let h = batch::validate(&b).unwrap();
            assert_eq!(log.check_producer(&h), Ok(Check::Append));
            log.append(&h, &b, 0, 0).unwrap();
            headers.push(h);
        }
        assert!(log.segment_count() > 3);
        drop(log);
        let log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
        // The last batch is a duplicate with its original offsets; the next sequence appends.
        match log.check_producer(headers.last().unwrap()) {
            Ok(Check::Duplicate(m)) => assert_eq!((m.base_offset, m.last_offset), (78, 79)),
            other => panic!("{other:?}"),
        }
        let mut next = *headers.last().unwrap();
        next.base_sequence = 80;
        assert_eq!(log.check_producer(&next), Ok(Check::Append));
    }

    /// A tiered log whose segments local retention removed keeps the aborted transactions of
    /// the (now remote) offsets: the newest snapshot stays, and a reopened log loads it.
    #[test]
    fn aborted_transactions_outlive_local_retention_and_reopen() {
        use crate::log::control::{encode_marker, encode_transactional, ControlType};
        use crate::log::producer_state::AbortedTxn;
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            remote_storage: true,
            local_retention_bytes: 0,
            ..Default::default()
        };
        let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
        let rec = batch::NewRecord {
            key: None,
            value: Some(bytes::Bytes::from_static(b"v")),
            timestamp: 0,
            headers: Vec::new(),
        };
        let append = |log: &mut PartitionLog, b: bytes::Bytes| {
            let h = batch::validate(&b).unwrap();
            log.append(&h, &b, 0, 0).unwrap();
        };
        // Producer 4 aborts 0-1 (marker 2), then commits 3 (marker 4), a segment each.
        append(
            &mut log,
            encode_transactional(&[rec.clone(), rec.clone()], 4, 0).unwrap(),
        );
        append(&mut log, encode_marker(4, 0, ControlType::Abort, 0, 0));
        log.roll(0).unwrap();
        append(
            &mut log,
            encode_transactional(std::slice::from_ref(&rec), 4, 0).unwrap(),
        );
        append(&mut log, encode_marker(4, 0, ControlType::Commit, 0, 0));
        log.roll(0).unwrap();
        let aborted = vec![AbortedTxn {
            producer_id: 4,
            first_offset: 0,
            last_offset: 2,
        }];
        assert_eq!(log.producers().aborted(), &aborted[..]);
        // Everything sealed is uploaded: local retention removes it; the log start stays.
        assert!(log.apply_local_retention(0, log.sealed_end()).unwrap() > 0);
        assert_eq!(log.segment_count(), 1);
        assert_eq!((log.log_start_offset(), log.local_start_offset()), (0, 5));
        assert!(crate::log::producer_state::snapshot_path(dir.path(), 5).exists());
        assert_eq!(log.producers().aborted_overlapping(0, 5), aborted);
        drop(log);
        let log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
        assert_eq!(log.producers().aborted_overlapping(0, 5), aborted);
        assert!(log.producers().entry(4).is_some());
    }

    /// Every record in the log, in offset order: (offset, key, value).
    fn all_records(log: &PartitionLog) -> Vec<(i64, Option<bytes::Bytes>, Option<bytes::Bytes>)> {
        let mut out = Vec::new();
        let mut offset = log.log_start_offset();
        while let Some(b) = log.read(offset, 1 << 20, i64::MAX).unwrap() {
            for (h, bytes) in batch::split_batches(&b).unwrap() {
                let mut bb = bytes.clone();
                for r in kafka_protocol::records::RecordBatchDecoder::decode(&mut bb)
                    .unwrap()
                    .records
                {
                    if r.offset >= offset {
                        out.push((r.offset, r.key, r.value));
                    }
                }
                offset = h.last_offset() + 1;
            }
        }
        out
    }

    #[test]
    fn compaction_keeps_the_newest_record_per_key_at_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            segment_bytes: 2048,
            ..Default::default()
        };
        let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
        append_n(&mut log, 30, 5); // keys key-0..key-4 rewritten by every batch
        let before = all_records(&log);
        let sealed_end = log.sealed_end();
        let bases = log.sealed_bases();
        let c = compaction::clean(dir.path(), &bases, i64::MIN, &[]).unwrap();
        assert!(!c.swapped.is_empty() && c.bytes_after < c.bytes_before);
        // A crash now leaves complete .swap files: reopening installs them.
        drop(log);
        std::fs::write(compaction::cleaned_path(dir.path(), 999), b"half-written").unwrap();
        let log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
        assert!(!compaction::cleaned_path(dir.path(), 999).exists());
        let after = all_records(&log);
        // Below the sealed end: one record per key, the newest, at its original offset.
        let sealed: Vec<_> = after.iter().filter(|r| r.0 < sealed_end).collect();
        let newest = |k: &Option<bytes::Bytes>| {
            before
                .iter()
                .filter(|r| r.0 < sealed_end && &r.1 == k)
                .map(|r| r.0)
                .max()
                .unwrap()
        };
        assert_eq!(sealed.len(), 5, "{sealed:?}");
        for r in &sealed {
            assert_eq!(r.0, newest(&r.1));
        }
        // The active segment is untouched and the log end did not move.
        let tail_before: Vec<_> = before.iter().filter(|r| r.0 >= sealed_end).collect();
        let tail_after: Vec<_> = after.iter().filter(|r| r.0 >= sealed_end).collect();
        assert_eq!(tail_before, tail_after);
        assert_eq!(log.next_offset(), 150);
    }

    #[test]
    fn compaction_removes_aborted_records_and_markers_whose_transaction_left_nothing() {
        use crate::log::control::{self, ControlType};
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
        let rec = |k: &str, v: &str| NewRecord {
            key: Some(bytes::Bytes::from(k.to_string())),
            value: Some(bytes::Bytes::from(v.to_string())),
            timestamp: 1,
            headers: vec![],
        };
        let put = |log: &mut PartitionLog, b: bytes::Bytes| {
            let h = batch::validate(&b).unwrap();
            log.append(&h, &b, 0, 1).unwrap();
        };
        // Producer 1 commits k=a1; producer 2 writes k=a2 and aborts; producer 3 commits k=b1,
        // later overwritten by a plain k=b2.
        put(
            &mut log,
            control::encode_transactional(&[rec("k", "a1")], 1, 0).unwrap(),
        );
        put(
            &mut log,
            control::encode_transactional(&[rec("k", "a2")], 2, 0).unwrap(),
        );
        put(
            &mut log,
            control::encode_marker(1, 0, ControlType::Commit, 0, 1),
        );
        put(
            &mut log,
            control::encode_marker(2, 0, ControlType::Abort, 0, 1),
        );
        put(
            &mut log,
            control::encode_transactional(&[rec("j", "b1")], 3, 0).unwrap(),
        );
        put(
            &mut log,
            control::encode_marker(3, 0, ControlType::Commit, 0, 1),
        );
        put(
            &mut log,
            batch::encode_batch(&[rec("j", "b2")], Compression::None).unwrap(),
        );
        log.roll(1).unwrap();
        let aborted = log.producers().aborted().to_vec();
        assert_eq!(aborted.len(), 1);
        let clean = |log: &mut PartitionLog, horizon| {
            let c = compaction::clean(dir.path(), &log.sealed_bases(), horizon, &aborted).unwrap();
            log.install_cleaned(&c.swapped, 1).unwrap();
        };
        // Within delete.retention.ms: the aborted value goes, the committed a1 stays the key's
        // value (not the aborted a2), every marker stays.
        clean(&mut log, i64::MIN);
        // Data records (markers' keys are not "k" or "j").
        let data = |log: &PartitionLog| -> Vec<i64> {
            all_records(log)
                .into_iter()
                .filter(|r| r.1.as_deref().is_some_and(|k| k == b"k" || k == b"j"))
                .map(|r| r.0)
                .collect()
        };
        assert_eq!(data(&log), vec![0, 6]);
        let markers = |log: &PartitionLog| {
            log.segments
                .values()
                .flat_map(|s| s.headers_from(s.base_offset).unwrap())
                .filter(|(h, _)| h.is_control())
                .map(|(h, _)| h.base_offset)
                .collect::<Vec<_>>()
        };
        assert_eq!(markers(&log), vec![2, 3, 5]);
        // Past it: the markers of transactions with nothing left (2 aborted, 3 overwritten)
        // go; producer 1's stays with its record.
        clean(&mut log, i64::MAX);
        assert_eq!(markers(&log), vec![2]);
        assert_eq!(data(&log), vec![0, 6]);
        // Rebuilt from the log alone, no transaction is left open.
        drop(log);
        for f in std::fs::read_dir(dir.path()).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "snapshot") {
                std::fs::remove_file(p).unwrap();
            }
        }
        let log = PartitionLog::open(dir.path(), LogConfig::default(), 1).unwrap();
        assert_eq!(log.producers().first_unstable_offset(), None);
    }

    #[test]
    fn compaction_passes_over_segments_an_earlier_pass_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            segment_bytes: 2048,
            ..Default::default()
        };
        let mut log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
        append_n(&mut log, 30, 5);
        for _ in 0..2 {
            let c = compaction::clean(dir.path(), &log.sealed_bases(), i64::MIN, &[]).unwrap();
            log.install_cleaned(&c.swapped, 0).unwrap();
        }
        // The first segments now hold nothing; later passes and reads go past them.
        append_n(&mut log, 30, 5);
        let c = compaction::clean(dir.path(), &log.sealed_bases(), i64::MIN, &[]).unwrap();
        log.install_cleaned(&c.swapped, 0).unwrap();
        let keys: Vec<_> = all_records(&log)
            .into_iter()
            .filter(|r| r.0 < log.sealed_end())
            .collect();
        assert_eq!(keys.len(), 5, "{keys:?}");
    }

    #[test]
    fn timestamps_and_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
        append_n(&mut log, 3, 4); // record i has timestamp 1_700_000_000_000 + i within its batch
        assert_eq!(
            log.offset_for_timestamp(1_700_000_000_002).unwrap(),
            Some((2, 1_700_000_000_002))
        );
        assert_eq!(log.offset_for_timestamp(1_800_000_000_000).unwrap(), None);
        let b = make_batch(1, 1, Compression::None);
        log.append(&batch::validate(&b).unwrap(), &b, 3, 0).unwrap();
        assert_eq!(log.epoch_end_offset(0), Some((0, 12)));
        assert_eq!(log.epoch_end_offset(2), Some((0, 12)));
        assert_eq!(log.epoch_end_offset(3), Some((3, 13)));
    }
}
