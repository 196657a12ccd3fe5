//! One log segment: `<base offset>.log` holding v2 batches back to back as they travel on the
//! wire, with its `.index` (offset -> position) and `.timeindex` (timestamp -> offset).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;
use kafka_protocol::records::RecordBatchDecoder;

use super::batch::{self, BatchHeader, HEADER_LEN};
use super::control::EndMarker;
use super::file_slice::FileSlice;
use super::index::{self, OffsetIndex, TimeIndex};
use super::power;

pub fn log_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}
pub fn index_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.index"))
}
pub fn time_index_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.timeindex"))
}

/// What recovery found in a segment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    pub valid_bytes: u64,
    pub truncated_bytes: u64,
}

pub struct Segment {
    pub base_offset: i64,
    dir: PathBuf,
    log: Arc<File>,
    pub size: u64,
    /// Offset after the last batch in this segment.
    pub next_offset: i64,
    /// Largest batch max-timestamp in the segment (-1 when empty).
    pub max_timestamp: i64,
    /// Wall-clock ms of the first append, for `segment.ms` rolls.
    pub created_ms: i64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_index: u64,
    pending_index: Vec<u8>,
    pending_time: Vec<u8>,
}

impl Segment {
    /// A segment object over `log` with nothing read from it yet.
    fn empty(dir: &Path, base_offset: i64, log: File, now_ms: i64) -> Self {
        Segment {
            base_offset,
            dir: dir.to_path_buf(),
            log: Arc::new(log),
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            created_ms: now_ms,
            offset_index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_index: 0,
            pending_index: Vec::new(),
            pending_time: Vec::new(),
        }
    }

    /// Creates a new, empty segment file.
    pub fn create(dir: &Path, base_offset: i64, now_ms: i64) -> io::Result<Self> {
        power::before_open_write(&log_path(dir, base_offset), true);
        let log = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(log_path(dir, base_offset))?;
        index::rewrite_file(&index_path(dir, base_offset), &[])?;
        index::rewrite_file(&time_index_path(dir, base_offset), &[])?;
        Ok(Segment::empty(dir, base_offset, log, now_ms))
    }

    /// Opens an existing segment. A sealed segment trusts its index (it was synced when the
    /// segment rolled) and re-validates only the batches after the last index entry; the active
    /// segment (`full_scan`) is validated batch by batch from the start and its indexes rebuilt.
    /// Either way the file is truncated at the first batch that fails its length or CRC check.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        full_scan: bool,
        index_interval: u64,
        now_ms: i64,
    ) -> io::Result<(Self, Recovery)> {
        power::before_open_write(&log_path(dir, base_offset), false);
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .open(log_path(dir, base_offset))?;
        let file_len = log.metadata()?.len();
        let mut seg = Segment::empty(dir, base_offset, log, now_ms);
        let mut start = 0u64;
        let mut trusted = false;
        if !full_scan {
            let oi = index::read_file(&index_path(dir, base_offset))?
                .and_then(|b| OffsetIndex::decode(&b));
            let ti = index::read_file(&time_index_path(dir, base_offset))?
                .and_then(|b| TimeIndex::decode(&b));
            if let (Some(oi), Some(ti)) = (oi, ti) {
                if let Some((_, pos)) = oi.last() {
                    if (pos as u64) < file_len {
                        start = pos as u64;
                        trusted = true;
                        seg.max_timestamp = ti.max_timestamp().unwrap_or(-1);
                        seg.offset_index = oi;
                        seg.time_index = ti;
                    }
                }
            }
        }
        // A small sealed segment's only index entry is at position 0: still trusted.
        let rebuild = !trusted;
        let recovery = seg.scan_from(start, file_len, index_interval, rebuild)?;
        if rebuild {
            // Indexes are rebuilt in memory; replace what the files held if it differs. Most
            // often it does not (a clean restart), and rewriting anyway cost a truncation per
            // file, which ext4 writes back on close: two synchronous writes per partition.
            for (path, bytes) in [
                (index_path(dir, base_offset), seg.offset_index.encode()),
                (time_index_path(dir, base_offset), seg.time_index.encode()),
            ] {
                if index::read_file(&path)?.as_deref() != Some(&bytes[..]) {
                    index::rewrite_file(&path, &bytes)?;
                }
            }
            seg.pending_index.clear();
            seg.pending_time.clear();
        }
        Ok((seg, recovery))
    }

    /// Validates batches from `start`, indexing them when `reindex`, and truncates a torn tail.
    fn scan_from(
        &mut self,
        start: u64,
        file_len: u64,
        interval: u64,
        reindex: bool,
    ) -> io::Result<Recovery> {
        let mut pos = start;
        let mut hdr = [0u8; HEADER_LEN];
        while pos + HEADER_LEN as u64 <= file_len {
            self.log.read_exact_at(&mut hdr, pos)?;
            let Ok(h) = BatchHeader::parse(&hdr) else {
                break;
            };
            let total = h.total_len() as u64;
            if pos + total > file_len {
                break;
            }
            let mut buf = vec![0u8; total as usize];
            self.log.read_exact_at(&mut buf, pos)?;
            if batch::validate(&buf).is_err() {
                break;
            }
            self.size = pos;
            if reindex || pos > start {
                self.note_batch(&h, pos, total, interval);
            } else {
                self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
            }
            self.next_offset = h.next_offset();
            pos += total;
        }
        self.size = pos;
        let truncated = file_len - pos;
        if truncated > 0 {
            self.log.set_len(pos)?;
            power::truncated(&log_path(&self.dir, self.base_offset), pos);
            power::sync_file(&self.log, true)?;
        }
        Ok(Recovery {
            valid_bytes: pos,
            truncated_bytes: truncated,
        })
    }

    /// Records index entries for a batch written at `pos`.
    fn note_batch(&mut self, h: &BatchHeader, pos: u64, len: u64, interval: u64) {
        self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
        if self.offset_index.is_empty() || self.bytes_since_index >= interval {
            let rel = (h.base_offset - self.base_offset) as u32;
            let e = self.offset_index.push(rel, pos as u32);
            self.pending_index.extend_from_slice(&e);
            let t = self.time_index.push(self.max_timestamp, rel);
            self.pending_time.extend_from_slice(&t);
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += len;
    }

    /// Appends one batch whose offsets are already assigned. The write lands in the page cache;
    /// durability comes from [`Segment::sync_handle`].
    /// The batch arrives as its (patched) header and its records, written back to back.
    pub fn append(
        &mut self,
        header: &[u8],
        records: &[u8],
        h: &BatchHeader,
        interval: u64,
    ) -> io::Result<()> {
        let pos = self.size;
        self.log.write_all_at(header, pos)?;
        self.log.write_all_at(records, pos + header.len() as u64)?;
        let len = (header.len() + records.len()) as u64;
        self.note_batch(h, pos, len, interval);
        self.size += len;
        self.next_offset = h.next_offset();
        Ok(())
    }

    /// Writes buffered index entries. Indexes are never synced on the produce path: recovery
    /// rebuilds the active segment's indexes, and sealed ones are synced when they roll.
    pub fn write_indexes(&mut self) -> io::Result<()> {
        if !self.pending_index.is_empty() {
            append_file(
                &index_path(&self.dir, self.base_offset),
                &self.pending_index,
            )?;
            self.pending_index.clear();
        }
        if !self.pending_time.is_empty() {
            append_file(
                &time_index_path(&self.dir, self.base_offset),
                &self.pending_time,
            )?;
            self.pending_time.clear();
        }
        Ok(())
    }

    /// Writes indexes and syncs all three files: called when the segment is sealed.
    pub fn seal(&mut self) -> io::Result<()> {
        self.write_indexes()?;
        power::sync_file(&self.log, false)?;
        for p in [
            index_path(&self.dir, self.base_offset),
            time_index_path(&self.dir, self.base_offset),
        ] {
            power::sync_file(&File::open(p)?, true)?;
        }
        Ok(())
    }

    /// The log file, shared so that a flusher can fdatasync it without blocking appends.
    pub fn sync_handle(&self) -> Arc<File> {
        self.log.clone()
    }

    /// Byte position of the batch that holds `offset`, or `None` past the end.
    fn locate(&self, offset: i64) -> io::Result<Option<(u64, BatchHeader)>> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let rel = (offset.max(self.base_offset) - self.base_offset) as u32;
        let mut pos = self.offset_index.floor(rel) as u64;
        let mut hdr = [0u8; HEADER_LEN];
        while pos + HEADER_LEN as u64 <= self.size {
            self.log.read_exact_at(&mut hdr, pos)?;
            let h = BatchHeader::parse(&hdr).map_err(io::Error::other)?;
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// Headers of the batches from the one holding `offset` to the end, with the type of
    /// each transaction marker (for replaying producer state after a snapshot).
    pub fn headers_from(&self, offset: i64) -> io::Result<Vec<(BatchHeader, Option<EndMarker>)>> {
        let mut out = Vec::new();
        let Some((mut pos, _)) = self.locate(offset)? else {
            return Ok(out);
        };
        let mut hdr = [0u8; HEADER_LEN];
        while pos + HEADER_LEN as u64 <= self.size {
            self.log.read_exact_at(&mut hdr, pos)?;
            let h = BatchHeader::parse(&hdr).map_err(io::Error::other)?;
            // Markers are one small record: only they are read whole.
            let marker = if h.is_control() && pos + h.total_len() as u64 <= self.size {
                let mut whole = BytesMut::zeroed(h.total_len());
                self.log.read_exact_at(&mut whole, pos)?;
                super::control::end_marker(&h, &whole.freeze())
            } else {
                None
            };
            pos += h.total_len() as u64;
            out.push((h, marker));
        }
        Ok(out)
    }

    /// Where the whole batches starting with the one holding `offset` lie in the segment file,
    /// stopping before `max_bytes` would be exceeded (the first batch is always whole, as
    /// KIP-74 requires) and before any batch that starts at or after `limit` (the high
    /// watermark).
    pub fn locate_range(
        &self,
        offset: i64,
        max_bytes: usize,
        limit: i64,
    ) -> io::Result<Option<FileSlice>> {
        let Some((start, first)) = self.locate(offset)? else {
            return Ok(None);
        };
        if first.base_offset >= limit {
            return Ok(None);
        }
        let mut end = start + first.total_len() as u64;
        let mut end_offset = first.next_offset();
        let mut hdr = [0u8; HEADER_LEN];
        while end + hdr.len() as u64 <= self.size {
            self.log.read_exact_at(&mut hdr, end)?;
            let Ok(h) = BatchHeader::parse(&hdr) else {
                break;
            };
            let total = h.total_len() as u64;
            if h.base_offset >= limit
                || end + total - start > max_bytes as u64
                || end + total > self.size
            {
                break;
            }
            end += total;
            end_offset = h.next_offset();
        }
        Ok(Some(FileSlice {
            file: self.log.clone(),
            pos: start,
            len: (end - start) as usize,
            end_offset,
        }))
    }

    /// First offset whose record timestamp is at or after `ts`, looking inside the one batch
    /// that straddles `ts` (decompressing it if needed). Returns `(offset, timestamp)`.
    pub fn offset_for_timestamp(&self, ts: i64) -> io::Result<Option<(i64, i64)>> {
        if self.max_timestamp < ts {
            return Ok(None);
        }
        let rel = self.time_index.floor_below(ts);
        let start = self.base_offset + rel as i64;
        let Some((mut pos, _)) = self.locate(start)? else {
            return Ok(None);
        };
        let mut hdr = [0u8; HEADER_LEN];
        while pos + HEADER_LEN as u64 <= self.size {
            self.log.read_exact_at(&mut hdr, pos)?;
            let h = BatchHeader::parse(&hdr).map_err(io::Error::other)?;
            if h.max_timestamp >= ts {
                let mut buf = BytesMut::zeroed(h.total_len());
                self.log.read_exact_at(&mut buf, pos)?;
                let mut bytes = buf.freeze();
                if h.is_log_append_time() {
                    return Ok(Some((h.base_offset, h.max_timestamp)));
                }
                let set = RecordBatchDecoder::decode(&mut bytes).map_err(io::Error::other)?;
                let hit = set.records.iter().find(|r| r.timestamp >= ts);
                return Ok(Some(hit.map_or((h.base_offset, h.max_timestamp), |r| {
                    (r.offset, r.timestamp)
                })));
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// Deletes the segment's files.
    pub fn delete(self) -> io::Result<()> {
        remove_files(&self.dir, self.base_offset)
    }
}

/// Deletes the files of the segment at `base` in `dir` (those that exist).
pub fn remove_files(dir: &Path, base: i64) -> io::Result<()> {
    for p in [
        log_path(dir, base),
        index_path(dir, base),
        time_index_path(dir, base),
    ] {
        match power::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn append_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    power::before_open_write(path, false);
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?
        .write_all(bytes)
}

/// Lists the base offsets of the segments in a partition directory, ascending.
pub fn list_bases(dir: &Path) -> io::Result<Vec<i64>> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".log") {
            if let Ok(b) = stem.parse::<i64>() {
                bases.push(b);
            }
        }
    }
    bases.sort_unstable();
    Ok(bases)
}
