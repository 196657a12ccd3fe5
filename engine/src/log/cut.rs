//! Cutting a partition's segment files back to an offset before the log is opened: a replica
//! restarting from its Raft checkpoint drops what it applied after it (the Raft log still
//! holds those entries, and applying them again writes the same bytes).

use std::io;
use std::path::Path;

use super::batch::{BatchHeader, HEADER_LEN};
use super::segment::{self, Segment};
use super::{partition_log, power, producer_state};

/// Removes every batch at or after `offset` from the segments in `dir` (a batch boundary: the
/// log's next offset once some Raft entry was applied). Returns the bytes removed. A log with
/// nothing below `offset` (retention dropped it) is left as one empty segment there.
pub fn cut_at(dir: &Path, offset: i64, now_ms: i64) -> io::Result<u64> {
    let bases = segment::list_bases(dir)?;
    let keep = bases.iter().copied().rfind(|&b| b <= offset);
    let mut cut = 0;
    for &base in bases.iter().filter(|&&b| Some(b) != keep && b > offset) {
        cut += std::fs::metadata(segment::log_path(dir, base))?.len();
        segment::remove_files(dir, base)?;
    }
    match keep {
        Some(base) => cut += cut_segment(dir, base, offset)?,
        None => drop(Segment::create(dir, offset, now_ms)?),
    }
    // Producer snapshots past the cut describe batches no longer there.
    producer_state::remove_snapshots_after(dir, offset)?;
    let start = dir.join(partition_log::LOG_START_FILE);
    if partition_log::read_i64(&start)?.is_some_and(|s| s > offset) {
        // DeleteRecords past the cut is applied again with the entries after it.
        partition_log::write_i64(&start, offset)?;
    }
    super::files::sync_dir(dir)?;
    Ok(cut)
}

/// Cuts one segment's file at the first batch at or after `offset`.
fn cut_segment(dir: &Path, base: i64, offset: i64) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let path = segment::log_path(dir, base);
    power::before_open_write(&path, false);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)?;
    let len = f.metadata()?.len();
    let mut pos = 0u64;
    let mut hdr = [0u8; HEADER_LEN];
    while pos + HEADER_LEN as u64 <= len {
        f.read_exact_at(&mut hdr, pos)?;
        let Ok(h) = BatchHeader::parse(&hdr) else {
            break;
        };
        if h.base_offset >= offset {
            break;
        }
        pos += h.total_len() as u64;
    }
    if pos < len {
        f.set_len(pos)?;
        power::truncated(&path, pos);
        power::sync_file(&f, true)?;
    }
    Ok(len.saturating_sub(pos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::{self, tests::make_batch};
    use crate::log::{LogConfig, PartitionLog};
    use kafka_protocol::records::Compression;

    fn log_of(dir: &Path, batches: usize) -> PartitionLog {
        let cfg = LogConfig {
            segment_bytes: 4096,
            index_interval_bytes: 512,
            ..Default::default()
        };
        let mut log = PartitionLog::open(dir, cfg, 0).unwrap();
        for _ in 0..batches {
            let b = make_batch(5, 100, Compression::None);
            let h = batch::validate(&b).unwrap();
            log.append(&h, &b, 0, 1_700_000_000_000).unwrap();
        }
        log
    }

    /// Every batch of the log, read segment by segment.
    fn all(log: &PartitionLog) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Some(b) = log.read(at, 1 << 30, i64::MAX).unwrap() {
            let parts = batch::split_batches(&b).unwrap();
            at = parts.last().unwrap().0.next_offset();
            out.extend_from_slice(&b);
        }
        out
    }

    #[test]
    fn a_log_is_cut_at_a_batch_boundary_and_copies_append_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_of(dir.path(), 100);
        assert_eq!(log.next_offset(), 500);
        let whole = bytes::Bytes::from(all(&log));
        // Cut inside a sealed segment: the segments after it go, the rest reads the same.
        let cfg = log.config().clone();
        drop(log);
        cut_at(dir.path(), 235, 0).unwrap();
        let mut log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
        assert_eq!(log.next_offset(), 235);
        let kept = all(&log);
        assert!(whole.starts_with(&kept[..]) && kept.len() < whole.len());
        // What another replica holds after the cut appends as it is, offsets and all.
        let rest = batch::split_batches(&whole).unwrap();
        for (h, b) in rest.iter().filter(|(h, _)| h.base_offset >= 230) {
            log.append_copy(h, b, 0).unwrap();
        }
        assert_eq!(log.next_offset(), 500);
        assert_eq!(all(&log), whole);
        // A batch the log already holds is skipped, not written twice.
        let (h, b) = &rest[10];
        log.append_copy(h, b, 0).unwrap();
        assert_eq!(log.next_offset(), 500);
        drop(log);
        let log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(log.next_offset(), 500);
    }

    #[test]
    fn a_cut_below_every_segment_leaves_an_empty_log_there() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = log_of(dir.path(), 50);
        log.delete_records_before(240).unwrap();
        let first = segment::list_bases(dir.path()).unwrap()[0];
        assert!(
            first > 100,
            "segments before the start were dropped: {first}"
        );
        drop(log);
        cut_at(dir.path(), 100, 0).unwrap();
        let log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!((log.log_start_offset(), log.next_offset()), (100, 100));
    }
}
