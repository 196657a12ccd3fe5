//! A response frame as the connection writes it: the encoded message in pieces, so the records
//! of a Fetch are never copied into it. Records a read holds in memory are written from where
//! they are (one vectored write with the bytes around them); records answered as a segment file
//! slice go from the page cache to the socket with sendfile(2) on a plaintext connection.
//!
//! `kafka-protocol` encodes into one contiguous buffer; [`PieceBuf`] is the buffer it is given,
//! which recognises the records it is handed (by address) and keeps them as pieces of their own.

use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::time::Duration;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{FetchResponse, ResponseHeader};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;

use crate::log::file_slice::FileSlice;

/// Records at least this long are written from where they are; shorter ones are copied into
/// the frame, which costs less than another piece.
const SHARE_FROM: usize = 16 << 10;

/// One piece of a frame.
#[derive(Debug)]
pub(crate) enum Piece {
    Mem(Bytes),
    File(FileSlice),
}

impl Piece {
    fn len(&self) -> usize {
        match self {
            Piece::Mem(b) => b.len(),
            Piece::File(f) => f.len,
        }
    }
}

/// A length-prefixed response frame, in pieces.
#[derive(Debug)]
pub(crate) struct Frame {
    pieces: Vec<Piece>,
}

impl Frame {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pieces.iter().map(Piece::len).sum()
    }

    /// The whole frame in memory (file slices read).
    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.len());
        for p in &self.pieces {
            match p {
                Piece::Mem(b) => out.extend_from_slice(b),
                Piece::File(f) => out.extend_from_slice(&f.read()?),
            }
        }
        Ok(out)
    }
}

impl From<Bytes> for Frame {
    fn from(b: Bytes) -> Self {
        Frame {
            pieces: vec![Piece::Mem(b)],
        }
    }
}

/// Encodes a Fetch response with its header and length prefix, its records kept as pieces:
/// those in memory (when long enough), and `files`, the slices whose placeholders stand in the
/// response, in the order they appear in it.
pub(crate) fn encode_fetch(
    correlation_id: i32,
    version: i16,
    resp: &FetchResponse,
    header_version: i16,
    files: Vec<FileSlice>,
) -> Result<Frame, String> {
    let mut buf = PieceBuf {
        expected: expected_pieces(resp, files)?,
        ..PieceBuf::default()
    };
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, header_version)
        .map_err(|e| e.to_string())?;
    resp.encode(&mut buf, version)
        .map_err(|e| format!("{e:#}"))?;
    if !buf.expected.is_empty() {
        return Err(format!(
            "{} records pieces were not met while encoding",
            buf.expected.len()
        ));
    }
    let mut pieces = buf.finish();
    let len = i32::try_from(pieces.iter().map(Piece::len).sum::<usize>())
        .map_err(|_| "response longer than 2 GiB".to_string())?;
    pieces.insert(0, Piece::Mem(Bytes::copy_from_slice(&len.to_be_bytes())));
    Ok(Frame { pieces })
}

/// The pieces an encoding of `resp` will be handed, in order: a Fetch's file slices (every
/// placeholder must be matched by the next slice) and its long in-memory records.
fn expected_pieces(resp: &FetchResponse, files: Vec<FileSlice>) -> Result<VecDeque<Piece>, String> {
    let mut files = files.into_iter().peekable();
    let mut out = VecDeque::new();
    for p in resp.responses.iter().flat_map(|t| &t.partitions) {
        let Some(r) = p.records.as_ref().filter(|r| !r.is_empty()) else {
            continue;
        };
        if let Some(slice) = files.next_if(|f| FileSlice::is_placeholder(r, f.len)) {
            out.push_back(Piece::File(slice));
        } else if r.len() >= SHARE_FROM {
            out.push_back(Piece::Mem(r.clone()));
        }
    }
    let left = files.count();
    if left > 0 {
        return Err(format!(
            "{left} file slices have no placeholder in the response"
        ));
    }
    Ok(out)
}

/// The buffer `kafka-protocol` encodes into: bytes go to `head`, except the records expected
/// next, which become pieces of their own.
#[derive(Default)]
struct PieceBuf {
    done: Vec<Piece>,
    /// Bytes in `done`.
    base: usize,
    head: BytesMut,
    expected: VecDeque<Piece>,
}

impl PieceBuf {
    fn matches_next(&self, src: &[u8]) -> bool {
        match self.expected.front() {
            Some(Piece::File(f)) => FileSlice::is_placeholder(src, f.len),
            Some(Piece::Mem(b)) => src.as_ptr() == b.as_ptr() && src.len() == b.len(),
            None => false,
        }
    }

    fn cut_head(&mut self) {
        if !self.head.is_empty() {
            let h = self.head.split().freeze();
            self.base += h.len();
            self.done.push(Piece::Mem(h));
        }
    }

    fn finish(mut self) -> Vec<Piece> {
        self.cut_head();
        self.done
    }
}

// SAFETY: every method delegates to `head`, a `BytesMut`, whose implementation upholds
// `BufMut`'s contract; `put_slice` only appends through it or moves it into `done`.
unsafe impl BufMut for PieceBuf {
    fn remaining_mut(&self) -> usize {
        self.head.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `chunk_mut`, which is `head`'s.
        unsafe { self.head.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.head.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if self.matches_next(src) {
            self.cut_head();
            if let Some(piece) = self.expected.pop_front() {
                self.base += piece.len();
                self.done.push(piece);
            }
        } else {
            self.head.extend_from_slice(src);
        }
    }
}

/// Offsets count every byte encoded; only bytes still in `head` can be revisited, which is all
/// message encoding needs (gaps are patched within a record batch, never across records).
impl ByteBufMut for PieceBuf {
    fn offset(&self) -> usize {
        self.base + self.head.len()
    }

    fn seek(&mut self, offset: usize) {
        self.head.seek(offset.saturating_sub(self.base));
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let start = r.start.saturating_sub(self.base);
        let end = r.end.saturating_sub(self.base);
        self.head.range(start..end)
    }
}

/// A connection's write half that can send file slices.
pub(crate) trait FrameSink: AsyncWrite + Unpin {
    /// Whether file slices go to the socket without passing through memory (plaintext TCP);
    /// otherwise reads are better answered in memory in the first place.
    const IN_PLACE: bool;

    /// Writes `f`'s bytes, failing when the peer takes none of them for `stall`.
    async fn send_file(&mut self, f: &FileSlice, stall: Duration) -> io::Result<()>;
}

impl FrameSink for OwnedWriteHalf {
    const IN_PLACE: bool = true;

    async fn send_file(&mut self, f: &FileSlice, stall: Duration) -> io::Result<()> {
        let sock = self.as_ref();
        let (mut pos, end) = (f.pos, f.pos + f.len as u64);
        while pos < end {
            let sent = tokio::time::timeout(stall, async {
                loop {
                    sock.writable().await?;
                    let r = sock.try_io(tokio::io::Interest::WRITABLE, || {
                        let mut at = pos;
                        let count = (end - pos).min(1 << 30) as usize;
                        rustix::fs::sendfile(sock, &*f.file, Some(&mut at), count)
                            .map_err(io::Error::from)
                    });
                    match r {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        r => return r,
                    }
                }
            })
            .await
            .map_err(|_| stalled())??;
            if sent == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "segment file ended before the slice being sent",
                ));
            }
            pos += sent as u64;
        }
        Ok(())
    }
}

impl<S: tokio::io::AsyncRead + AsyncWrite + Unpin> FrameSink for tokio::io::WriteHalf<S> {
    const IN_PLACE: bool = false;

    async fn send_file(&mut self, f: &FileSlice, stall: Duration) -> io::Result<()> {
        write_all(self, &[Piece::Mem(f.read()?)], stall).await
    }
}

fn stalled() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "peer stopped reading")
}

/// Writes `frame`, failing when the peer takes none of it for `stall`: a client that stops
/// reading must not hold its responses' memory (and the broker's fetch budget) forever.
pub(crate) async fn write_frame<W: FrameSink>(
    wr: &mut W,
    frame: &Frame,
    stall: Duration,
) -> io::Result<()> {
    let mut rest = &frame.pieces[..];
    while let Some(first) = rest.first() {
        if let Piece::File(f) = first {
            wr.send_file(f, stall).await?;
            rest = &rest[1..];
            continue;
        }
        let n = rest
            .iter()
            .position(|p| matches!(p, Piece::File(_)))
            .unwrap_or(rest.len());
        write_all(wr, &rest[..n], stall).await?;
        rest = &rest[n..];
    }
    // TLS keeps what it encrypted until flushed; for TCP this does nothing.
    tokio::time::timeout(stall, wr.flush())
        .await
        .map_err(|_| stalled())?
}

/// Writes in-memory pieces with vectored writes.
async fn write_all<W: AsyncWrite + Unpin>(
    wr: &mut W,
    pieces: &[Piece],
    stall: Duration,
) -> io::Result<()> {
    let bufs: Vec<&[u8]> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Mem(b) => Some(&b[..]),
            Piece::File(_) => None,
        })
        .collect();
    crate::vectored::write_all(wr, &bufs, Some(stall)).await
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;
    use std::sync::Arc;

    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::protocol::Decodable;
    use tokio::io::AsyncReadExt;

    use super::*;

    fn slice(data: &[u8], pos: u64) -> FileSlice {
        let file = tempfile::tempfile().unwrap();
        file.write_all_at(b"garbage before", 0).unwrap();
        file.write_all_at(data, pos).unwrap();
        FileSlice {
            file: Arc::new(file),
            pos,
            len: data.len(),
            end_offset: 0,
        }
    }

    fn response(records: Vec<Bytes>) -> FetchResponse {
        let partitions = records
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_records(Some(r))
            })
            .collect();
        FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default().with_partitions(partitions)
        ])
    }

    /// What a client reads: the frame decodes to the response with every file slice's bytes
    /// where its placeholder stood, in every version's encoding.
    #[test]
    fn a_frame_decodes_to_the_response_with_the_files_bytes_in_place() {
        let on_disk: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let in_memory = Bytes::from(vec![7u8; 40_000]);
        let small = Bytes::from_static(b"a few bytes");
        let (a, b) = (slice(&on_disk[..30_000], 100), slice(&on_disk[30_000..], 9));
        for version in [4i16, 11, 12, 16] {
            let placeholders = vec![
                a.placeholder().unwrap(),
                in_memory.clone(),
                small.clone(),
                b.placeholder().unwrap(),
            ];
            let resp = response(placeholders);
            let frame = encode_fetch(9, version, &resp, 1, vec![a.clone(), b.clone()]).unwrap();
            // Two files and the long in-memory records are pieces of their own.
            assert!(frame.pieces.len() >= 5, "{:?}", frame.pieces.len());
            let bytes = frame.to_vec().unwrap();
            assert_eq!(
                i32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize,
                bytes.len() - 4
            );
            let mut body = Bytes::from(bytes).slice(4..);
            let header = ResponseHeader::decode(&mut body, 1).unwrap();
            assert_eq!(header.correlation_id, 9);
            let decoded = FetchResponse::decode(&mut body, version).unwrap();
            let got: Vec<Bytes> = decoded.responses[0]
                .partitions
                .iter()
                .map(|p| p.records.clone().unwrap())
                .collect();
            assert_eq!(got[0], &on_disk[..30_000]);
            assert_eq!(got[1], in_memory);
            assert_eq!(got[2], small);
            assert_eq!(got[3], &on_disk[30_000..]);
        }
    }

    #[test]
    fn a_file_slice_without_its_placeholder_is_an_error_not_zeros_on_the_wire() {
        let a = slice(b"records", 0);
        let resp = response(vec![Bytes::from_static(b"records")]);
        let err = encode_fetch(1, 12, &resp, 1, vec![a]).unwrap_err();
        assert!(err.contains("no placeholder"), "{err}");
    }

    /// Over a real socket: memory pieces and sendfile'd slices arrive in order, whole.
    #[tokio::test]
    async fn write_frame_sends_file_slices_over_tcp() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let file = slice(&big, 4096);
        let frame = Frame {
            pieces: vec![
                Piece::Mem(Bytes::from_static(b"head")),
                Piece::File(file),
                Piece::Mem(Bytes::from_static(b"tail")),
            ],
        };
        let reader = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            got
        });
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (_rd, mut wr) = stream.into_split();
        write_frame(&mut wr, &frame, Duration::from_secs(10))
            .await
            .unwrap();
        drop(wr);
        drop(_rd);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), frame.len());
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[4..4 + big.len()], &big[..]);
        assert_eq!(&got[4 + big.len()..], b"tail");
    }
}
