//! Whole batches located in a segment file, to be sent as they are stored (sendfile(2) on a
//! plaintext connection) instead of being read into memory first.
//!
//! A Fetch response is encoded by `kafka-protocol`, which wants each partition's records as
//! `Bytes`. A slice stands in the response as a placeholder of its length: a window of a
//! static zeroed region (in .bss, so it costs no memory and is never read), which the
//! connection's encoder recognises by address and replaces with the file range.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

/// Largest slice that can stand in a response as a placeholder; longer reads (a single batch
/// above 64 MiB) are read into memory.
const PLACEHOLDER_LEN: usize = 64 << 20;

static PLACEHOLDER: [u8; PLACEHOLDER_LEN] = [0; PLACEHOLDER_LEN];

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
        (self.len <= PLACEHOLDER_LEN).then(|| Bytes::from_static(&PLACEHOLDER[..self.len]))
    }

    /// Whether `bytes` is a placeholder of `len` bytes (what the encoder is handed for one).
    pub fn is_placeholder(bytes: &[u8], len: usize) -> bool {
        bytes.as_ptr() == PLACEHOLDER.as_ptr() && bytes.len() == len
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
