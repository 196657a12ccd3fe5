//! Reading length-prefixed Kafka frames without trusting the length.
//!
//! The buffer grows only as bytes actually arrive, so a peer that announces a 2 GiB frame and
//! sends nothing costs nothing; announced sizes above the limit close the connection at once.
//! Reading is cancel-safe (`read_buf` either moves bytes into the buffer or does nothing), which
//! lets the connection loop `select!` between reading and writing.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame size {0} is negative")]
    Negative(i32),
    #[error("frame size {size} exceeds the limit of {limit} bytes (socket.request.max.bytes)")]
    TooLarge { size: usize, limit: usize },
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub struct FrameReader {
    buf: BytesMut,
    limit: usize,
}

impl FrameReader {
    pub fn new(limit: usize) -> Self {
        FrameReader {
            buf: BytesMut::with_capacity(8 * 1024),
            limit,
        }
    }

    /// A complete frame already buffered, if any.
    pub fn try_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let size = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        if size < 0 {
            return Err(FrameError::Negative(size));
        }
        let size = size as usize;
        if size > self.limit {
            return Err(FrameError::TooLarge {
                size,
                limit: self.limit,
            });
        }
        if self.buf.len() < 4 + size {
            // Reserve what is still missing, at most 1 MiB ahead of the bytes received.
            let missing = 4 + size - self.buf.len();
            self.buf.reserve(missing.min(1 << 20));
            return Ok(None);
        }
        self.buf.advance(4);
        Ok(Some(self.buf.split_to(size).freeze()))
    }

    /// Reads more bytes; `Ok(false)` on a clean close between frames.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<bool, FrameError> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(64 * 1024);
        }
        let n = r.read_buf(&mut self.buf).await?;
        if n == 0 {
            return if self.buf.is_empty() {
                Ok(false)
            } else {
                Err(FrameError::Truncated)
            };
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_limits_and_truncation() {
        let mut data = Vec::new();
        data.extend_from_slice(&3i32.to_be_bytes());
        data.extend_from_slice(b"abc");
        data.extend_from_slice(&1i32.to_be_bytes());
        let mut r = &data[..];
        let mut f = FrameReader::new(10);
        assert!(f.fill(&mut r).await.unwrap());
        assert_eq!(f.try_frame().unwrap().unwrap(), Bytes::from_static(b"abc"));
        assert!(f.try_frame().unwrap().is_none());
        assert!(matches!(f.fill(&mut r).await, Err(FrameError::Truncated)));

        let big = 0x7fff_ffffi32.to_be_bytes();
        let mut r = &big[..];
        let mut f = FrameReader::new(100 << 20);
        f.fill(&mut r).await.unwrap();
        assert!(matches!(f.try_frame(), Err(FrameError::TooLarge { .. })));
        let neg = (-5i32).to_be_bytes();
        let mut r = &neg[..];
        let mut f = FrameReader::new(10);
        f.fill(&mut r).await.unwrap();
        assert!(matches!(f.try_frame(), Err(FrameError::Negative(-5))));
    }
}
