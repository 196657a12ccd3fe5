//! Sparse offset and time indexes of one segment.
//!
//! Both are append-only files of fixed-size big-endian entries, kept in memory too. An entry is
//! added every `index.interval.bytes` of log, so a lookup lands within a few batches of its
//! target and the scan that follows reads only batch headers.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

/// `(offset relative to the segment base, byte position in the segment)`.
#[derive(Debug, Default)]
pub struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

/// `(max timestamp so far, offset relative to the segment base)`.
#[derive(Debug, Default)]
pub struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl OffsetIndex {
    pub const ENTRY: usize = 8;

    pub fn push(&mut self, rel_offset: u32, position: u32) -> [u8; 8] {
        self.entries.push((rel_offset, position));
        let mut e = [0u8; 8];
        e[..4].copy_from_slice(&rel_offset.to_be_bytes());
        e[4..].copy_from_slice(&position.to_be_bytes());
        e
    }

    /// Position of the last indexed batch starting at or before `rel_offset` (0 if none).
    pub fn floor(&self, rel_offset: u32) -> u32 {
        match self.entries.partition_point(|&(o, _)| o <= rel_offset) {
            0 => 0,
            i => self.entries[i - 1].1,
        }
    }

    pub fn last(&self) -> Option<(u32, u32)> {
        self.entries.last().copied()
    }

    /// Parses an index file; `None` when it is damaged and must be rebuilt from the log.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(Self::ENTRY) {
            return None;
        }
        let entries: Vec<(u32, u32)> = bytes
            .chunks_exact(Self::ENTRY)
            .map(|c| {
                (
                    u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                    u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect();
        let sorted = entries
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1);
        sorted.then_some(OffsetIndex { entries })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * Self::ENTRY);
        for &(o, p) in &self.entries {
            out.extend_from_slice(&o.to_be_bytes());
            out.extend_from_slice(&p.to_be_bytes());
        }
        out
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl TimeIndex {
    pub const ENTRY: usize = 12;

    pub fn push(&mut self, timestamp: i64, rel_offset: u32) -> [u8; 12] {
        self.entries.push((timestamp, rel_offset));
        let mut e = [0u8; 12];
        e[..8].copy_from_slice(&timestamp.to_be_bytes());
        e[8..].copy_from_slice(&rel_offset.to_be_bytes());
        e
    }

    /// Relative offset of the last entry whose timestamp is below `ts`: every batch before it
    /// has only older records, so a search for `ts` may start there.
    pub fn floor_below(&self, ts: i64) -> u32 {
        match self.entries.partition_point(|&(t, _)| t < ts) {
            0 => 0,
            i => self.entries[i - 1].1,
        }
    }

    pub fn max_timestamp(&self) -> Option<i64> {
        self.entries.last().map(|e| e.0)
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(Self::ENTRY) {
            return None;
        }
        let entries = bytes
            .chunks_exact(Self::ENTRY)
            .map(|c| {
                let mut t = [0u8; 8];
                t.copy_from_slice(&c[..8]);
                (
                    i64::from_be_bytes(t),
                    u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
                )
            })
            .collect();
        Some(TimeIndex { entries })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * Self::ENTRY);
        for &(t, o) in &self.entries {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&o.to_be_bytes());
        }
        out
    }
}

/// Reads a whole index file, treating a missing file as empty.
pub fn read_file(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match File::open(path) {
        Ok(mut f) => {
            let mut v = Vec::new();
            f.read_to_end(&mut v)?;
            Ok(Some(v))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces an index file with `bytes` (used after a rebuild).
pub fn rewrite_file(path: &Path, bytes: &[u8]) -> io::Result<File> {
    super::power::before_open_write(path, true);
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .read(true)
        .open(path)?;
    f.write_all(bytes)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_floor_and_roundtrip() {
        let mut i = OffsetIndex::default();
        i.push(0, 0);
        i.push(10, 4096);
        i.push(25, 9000);
        assert_eq!(i.floor(0), 0);
        assert_eq!(i.floor(9), 0);
        assert_eq!(i.floor(10), 4096);
        assert_eq!(i.floor(24), 4096);
        assert_eq!(i.floor(1000), 9000);
        let back = OffsetIndex::decode(&i.encode()).unwrap();
        assert_eq!(back.floor(26), 9000);
        assert!(OffsetIndex::decode(&[0u8; 7]).is_none());
    }

    #[test]
    fn time_floor() {
        let mut t = TimeIndex::default();
        t.push(100, 0);
        t.push(200, 5);
        t.push(300, 9);
        assert_eq!(t.floor_below(50), 0);
        assert_eq!(t.floor_below(200), 0);
        assert_eq!(t.floor_below(201), 5);
        assert_eq!(t.max_timestamp(), Some(300));
    }
}
