//! Writing several buffers with as few system calls as the writer allows: the Kafka listener's
//! response pieces and the inter-broker frames queued for one peer both go out this way.

use std::io::{self, IoSlice};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Writes all of `bufs` in order with vectored writes. With `stall`, fails when the peer takes
/// nothing for that long (one write call).
pub async fn write_all<W: AsyncWrite + Unpin>(
    wr: &mut W,
    bufs: &[&[u8]],
    stall: Option<Duration>,
) -> io::Result<()> {
    let mut bufs: Vec<&[u8]> = bufs.iter().copied().filter(|b| !b.is_empty()).collect();
    let mut at = 0;
    while at < bufs.len() {
        // Linux takes at most 1024 buffers per call (IOV_MAX).
        let slices: Vec<IoSlice<'_>> = bufs[at..]
            .iter()
            .take(1024)
            .map(|b| IoSlice::new(b))
            .collect();
        let write = wr.write_vectored(&slices);
        let mut n = match stall {
            Some(t) => tokio::time::timeout(t, write)
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "peer stopped reading"))??,
            None => write.await?,
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let b = bufs[at];
            if n >= b.len() {
                n -= b.len();
                at += 1;
            } else {
                bufs[at] = &b[n..];
                n = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn every_buffer_arrives_in_order_through_a_small_pipe() {
        // A duplex pipe of 7 bytes takes each write in small pieces, split mid-buffer.
        let (mut a, mut b) = tokio::io::duplex(7);
        let bufs: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; (i as usize) % 13]).collect();
        let expected: Vec<u8> = bufs.concat();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.unwrap();
            got
        });
        let refs: Vec<&[u8]> = bufs.iter().map(Vec::as_slice).collect();
        write_all(&mut a, &refs, Some(Duration::from_secs(5)))
            .await
            .unwrap();
        drop(a);
        assert_eq!(reader.await.unwrap(), expected);
    }
}
