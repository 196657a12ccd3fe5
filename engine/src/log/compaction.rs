//! Log compaction (`cleanup.policy=compact`): keep only the newest record per key in sealed
//! segments, drop tombstones older than `delete.retention.ms`, keep every surviving record's
//! offset.
//!
//! Cleaning reads only sealed segments, which never change, so it runs on the blocking pool
//! while the partition keeps taking writes. It writes each replacement as
//! `<base>.log.cleaned`, syncs it and renames it to `<base>.log.swap` once complete; the
//! partition actor then installs it by removing the old indexes and renaming the swap file over
//! the segment. A crash leaves either a `.cleaned` file (incomplete: deleted on start) or a
//! `.swap` file (complete: installed on start), and every state in between is a readable log.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};

use super::batch::{self, Assign, BatchHeader};
use super::files::sync_dir;
use super::power;
use super::producer_state::AbortedTxn;
use super::segment::log_path;

/// What one cleaning pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cleaned {
    /// Segments with a complete `.swap` replacement, ready to install.
    pub swapped: Vec<i64>,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_removed: u64,
}

pub fn cleaned_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.log.cleaned"))
}

pub fn swap_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.log.swap"))
}

/// Crash injection for tests (`ICESTREAM_FAILPOINT=<name>` aborts the process there).
pub fn failpoint(name: &str) {
    if std::env::var("ICESTREAM_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}

/// Reads the batches of a sealed segment file.
fn batches(dir: &Path, base: i64) -> io::Result<Vec<(BatchHeader, Bytes)>> {
    let data = Bytes::from(fs::read(log_path(dir, base))?);
    // A segment an earlier pass emptied (every record superseded) holds no batch at all.
    if data.is_empty() {
        return Ok(Vec::new());
    }
    batch::split_batches(&data).map_err(io::Error::other)
}

fn decode(bytes: &Bytes) -> io::Result<Vec<kafka_protocol::records::Record>> {
    let mut b = bytes.clone();
    RecordBatchDecoder::decode(&mut b)
        .map(|set| set.records)
        .map_err(io::Error::other)
}

/// Whether a batch belongs to one of the aborted transactions.
fn is_aborted(h: &BatchHeader, aborted: &[AbortedTxn]) -> bool {
    h.is_transactional()
        && !h.is_control()
        && aborted.iter().any(|a| {
            a.producer_id == h.producer_id
                && a.first_offset <= h.base_offset
                && h.base_offset <= a.last_offset
        })
}

/// Cleans the sealed segments `bases` (ascending). Tombstones in batches whose newest
/// timestamp is older than `tombstone_horizon_ms` are removed. Records of `aborted`
/// transactions are removed and never count as a key's newest value (a committed value must
/// not give way to an aborted one); the caller cleans nothing past the last stable offset, so
/// every transaction the segments hold has ended. A marker goes once it is older than the
/// tombstone horizon and no record of its transaction is left, as in Kafka: while one is, the
/// marker is what ends the transaction when producer state is rebuilt from the log.
pub fn clean(
    dir: &Path,
    bases: &[i64],
    tombstone_horizon_ms: i64,
    aborted: &[AbortedTxn],
) -> io::Result<Cleaned> {
    // Pass 1: the newest offset of every key.
    let mut newest: HashMap<Bytes, i64> = HashMap::new();
    for &base in bases {
        for (h, bytes) in batches(dir, base)? {
            if h.is_control() || is_aborted(&h, aborted) {
                continue;
            }
            for r in decode(&bytes)? {
                if let Some(k) = r.key {
                    newest.insert(k, r.offset);
                }
            }
        }
    }
    // Pass 2: rewrite each segment that loses records. Segments are read in offset order, so a
    // producer's transactional records come before the marker that ends their transaction.
    let mut out = Cleaned::default();
    let mut txn_records_left: std::collections::HashSet<i64> = Default::default();
    for &base in bases {
        let mut rewritten = BytesMut::new();
        let mut removed = 0u64;
        let mut size = 0u64;
        for (h, bytes) in batches(dir, base)? {
            size += bytes.len() as u64;
            if h.is_control() {
                let still_needed = txn_records_left.remove(&h.producer_id);
                if !still_needed && h.max_timestamp < tombstone_horizon_ms {
                    removed += h.records_count.max(0) as u64;
                } else {
                    rewritten.extend_from_slice(&bytes);
                }
                continue;
            }
            if is_aborted(&h, aborted) {
                removed += h.records_count.max(0) as u64;
                continue;
            }
            let records = decode(&bytes)?;
            let total = records.len();
            let keep: Vec<_> = records
                .into_iter()
                .filter(|r| match &r.key {
                    None => true,
                    Some(k) => {
                        newest.get(k) == Some(&r.offset)
                            && (r.value.is_some() || h.max_timestamp >= tombstone_horizon_ms)
                    }
                })
                .map(|mut r| {
                    // The encoder keeps records in one batch while offset - sequence is
                    // constant; this also preserves an idempotent batch's base sequence.
                    r.sequence = h
                        .base_sequence
                        .wrapping_add((r.offset - h.base_offset) as i32);
                    r
                })
                .collect();
            removed += (total - keep.len()) as u64;
            if h.is_transactional() && !keep.is_empty() {
                txn_records_left.insert(h.producer_id);
            }
            if keep.len() == total {
                rewritten.extend_from_slice(&bytes);
                continue;
            }
            if keep.is_empty() {
                continue;
            }
            let compression = match h.compression() {
                1 => Compression::Gzip,
                2 => Compression::Snappy,
                3 => Compression::Lz4,
                4 => Compression::Zstd,
                _ => Compression::None,
            };
            let mut enc = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut enc,
                &keep,
                &RecordEncodeOptions {
                    version: 2,
                    compression,
                },
            )
            .map_err(io::Error::other)?;
            let enc = enc.freeze();
            for (nh, nb) in batch::split_batches(&enc).map_err(io::Error::other)? {
                // Keep the epoch, and LogAppendTime's type and timestamp, as first written.
                let lat = h.is_log_append_time().then_some(h.max_timestamp);
                let patched = batch::assign(
                    &nb,
                    Assign {
                        base_offset: nh.base_offset,
                        leader_epoch: h.partition_leader_epoch,
                        log_append_time: lat,
                    },
                );
                rewritten.extend_from_slice(&patched);
            }
        }
        if removed == 0 {
            continue;
        }
        let cleaned = cleaned_path(dir, base);
        {
            use std::io::Write;
            power::before_open_write(&cleaned, true);
            let mut f = fs::File::create(&cleaned)?;
            f.write_all(&rewritten)?;
            power::sync_file(&f, true)?;
        }
        failpoint("compaction-before-swap");
        power::rename(&cleaned, &swap_path(dir, base))?;
        out.swapped.push(base);
        out.bytes_before += size;
        out.bytes_after += rewritten.len() as u64;
        out.records_removed += removed;
    }
    sync_dir(dir)?;
    Ok(out)
}

/// Start-up recovery: drops incomplete `.cleaned` files and returns the bases of complete
/// `.swap` files, which the caller installs.
pub fn pending_swaps(dir: &Path) -> io::Result<Vec<i64>> {
    let mut swaps = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if name.ends_with(".log.cleaned") {
            power::remove_file(&e.path())?;
        } else if let Some(stem) = name.strip_suffix(".log.swap") {
            if let Ok(base) = stem.parse() {
                swaps.push(base);
            }
        }
    }
    swaps.sort_unstable();
    Ok(swaps)
}

/// Puts a complete replacement in place of segment `base` (whose files must be closed or about
/// to be reopened): old indexes go first, so a crash never pairs new data with old indexes.
pub fn install(dir: &Path, base: i64) -> io::Result<()> {
    for ext in ["index", "timeindex"] {
        match power::remove_file(&dir.join(format!("{base:020}.{ext}"))) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    failpoint("compaction-mid-swap");
    power::rename(&swap_path(dir, base), &log_path(dir, base))?;
    sync_dir(dir)
}
