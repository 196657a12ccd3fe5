//! Whole batches located in a segment file, to be sent as they are stored (sendfile(2) on a
//! plaintext connection) instead of being read into memory first.
//!
//! A Fetch response is encoded by `kafka-protocol`, which wants each partition's records as
//! `Bytes`. A slice stands in the response as a placeholder of its length: a window of one
//! read-only anonymous mapping (address space only: never touched, so it costs no memory and
//! no space in the binary, as a 64 MiB static would), which the connection's encoder
//! recognises by address and replaces with the file range.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, LazyLock};

use bytes::{Bytes, BytesMut};

/// Largest slice that can stand in a response as a placeholder; longer reads (a single batch
/// above 64 MiB) are read into memory.
const PLACEHOLDER_LEN: usize = 64 << 20;

static PLACEHOLDER: LazyLock<&'static [u8]> = LazyLock::new(|| {
    use rustix::mm::{mmap_anonymous, MapFlags, ProtFlags};
    // SAFETY: a new private anonymous mapping, read-only and never unmapped: the slice stays
    // valid for the process's life and its bytes (the kernel's zero page) never change.
    unsafe {
        match mmap_anonymous(
            std::ptr::null_mut(),
            PLACEHOLDER_LEN,
            ProtFlags::READ,
            MapFlags::PRIVATE | MapFlags::NORESERVE,
        ) {
            Ok(p) => std::slice::from_raw_parts(p.cast::<u8>(), PLACEHOLDER_LEN),
            // No placeholders then: every slice is read into memory instead.
            Err(_) => &[],
        }
    }
});

/// `len` bytes of `file` from `pos`: whole batches below the high watermark, which are never
/// rewritten in place (the open file keeps them readable even if the segment is deleted or
/// replaced by compaction meanwhile).
#[derive(Clone, Debug)]
pub struct FileSlice {
    pub file: Arc<File>,
    pub pos: u64,
    pub len: usize,
    /// The offset after the last batch of the slice.
    pub end_offset: i64,
}

impl FileSlice {
    /// Reads the slice into memory.
    pub fn read(&self) -> io::Result<Bytes> {
        let mut buf = BytesMut::zeroed(self.len);
        self.file.read_exact_at(&mut buf, self.pos)?;
        Ok(buf.freeze())
    }

    /// The stand-in for this slice in an encoded message, `None` when it is too long for one.
    pub fn placeholder(&self) -> Option<Bytes> {
        let region: &'static [u8] = *PLACEHOLDER;
        region.get(..self.len).map(Bytes::from_static)
    }

    /// Whether `bytes` is a placeholder of `len` bytes (what the encoder is handed for one).
    pub fn is_placeholder(bytes: &[u8], len: usize) -> bool {
        len > 0 && bytes.as_ptr() == PLACEHOLDER.as_ptr() && bytes.len() == len
    }
}

/// Stored batches as a read returns them: in memory, or where they lie in a segment file.
#[derive(Clone, Debug)]
pub enum Stored {
    Mem(Bytes),
    File(FileSlice),
}

impl Stored {
    pub fn len(&self) -> usize {
        match self {
            Stored::Mem(b) => b.len(),
            Stored::File(f) => f.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batches in memory (reading a file slice).
    pub fn into_bytes(self) -> io::Result<Bytes> {
        match self {
            Stored::Mem(b) => Ok(b),
            Stored::File(f) => f.read(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placeholder_is_recognised_by_address_and_length_only() {
        let file = Arc::new(tempfile::tempfile().unwrap());
        file.write_all_at(b"0123456789", 0).unwrap();
        let s = FileSlice {
            file,
            pos: 2,
            len: 5,
            end_offset: 1,
        };
        let p = s.placeholder().unwrap();
        assert!(FileSlice::is_placeholder(&p, 5));
        assert!(!FileSlice::is_placeholder(&p[..4], 5));
        assert!(!FileSlice::is_placeholder(&[0u8; 5], 5));
        assert_eq!(&s.read().unwrap()[..], b"23456");
        let too_long = FileSlice {
            len: PLACEHOLDER_LEN + 1,
            ..s
        };
        assert!(too_long.placeholder().is_none());
    }
}
