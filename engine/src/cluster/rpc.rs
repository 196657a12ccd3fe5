//! The internal RPC listener between brokers: length-prefixed frames on TCP.
//!
//! A frame is `u32 length` (big endian, of what follows), `u8 kind`, then the body. Control
//! messages (hello, proposals) are JSON; Raft messages are raft-rs's protobuf encoding and never
//! leave this listener. Every length and kind is checked: bytes from the network never panic.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The RPC protocol's version, announced in every hello. 1: releases before it was announced
/// (absent from their hellos). A change a previous release would misread gets a new version
/// and, when it must wait for every broker, a feature level (`super::features`).
pub const VERSION: u16 = 2;
/// The oldest peer version this release still speaks with: an older peer's hello is refused,
/// with the reason logged on both sides' terms.
pub const MIN_VERSION: u16 = 1;

/// The largest frame accepted (a Raft append carrying Kafka batches fits well below).
pub const MAX_FRAME: usize = 64 << 20;

/// Frame kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A member introduces itself and what it knows (JSON `Hello`); answered with `Members`.
    Hello = 1,
    /// The answer to `Hello` (JSON `Hello`).
    Members = 2,
    /// A controller Raft message (protobuf), one way.
    Raft = 3,
    /// A command for the controller leader (JSON `Command`); answered with `ProposeResult`.
    Propose = 4,
    /// The answer to `Propose` (JSON `ProposeResult`).
    ProposeResult = 5,
    /// A partition Raft message, one way: `u16` topic length, topic, `i32` partition, protobuf.
    PartitionRaft = 6,
    /// Partition Raft messages (heartbeats) of many groups, one way: `u32` count, then per item
    /// `u16` topic length, topic, `i32` partition, `u32` message length, protobuf.
    PartitionRaftBatch = 7,
    /// A replica installing a snapshot asks for a chunk of a partition's log
    /// (`super::snapshot_rpc`); answered with `SnapshotChunk`.
    SnapshotRead = 8,
    /// The answer to `SnapshotRead`.
    SnapshotChunk = 9,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::Members,
            3 => Kind::Raft,
            4 => Kind::Propose,
            5 => Kind::ProposeResult,
            6 => Kind::PartitionRaft,
            7 => Kind::PartitionRaftBatch,
            8 => Kind::SnapshotRead,
            9 => Kind::SnapshotChunk,
            _ => return None,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("rpc i/o with {peer}: {source}")]
    Io {
        peer: String,
        source: std::io::Error,
    },
    #[error("rpc frame of {0} bytes is larger than the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("rpc frame is empty")]
    Empty,
    #[error("unknown rpc frame kind {0}: the peer runs a newer release whose RPC this one does not speak (upgrade this broker, or keep the cluster on one release)")]
    UnknownKind(u8),
    #[error("expected a {expected:?} frame, got {got:?}")]
    Unexpected { expected: Kind, got: Kind },
    #[error("bad rpc body: {0}")]
    Body(String),
    #[error("rpc to {0} timed out")]
    Timeout(String),
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame(
    s: &mut (impl AsyncReadExt + Unpin),
    peer: &str,
) -> Result<Option<(Kind, Vec<u8>)>, RpcError> {
    let io = |source| RpcError::Io {
        peer: peer.to_string(),
        source,
    };
    let mut len = [0u8; 4];
    match s.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(io(e)),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 {
        return Err(RpcError::Empty);
    }
    if len > MAX_FRAME {
        return Err(RpcError::TooLarge(len));
    }
    let mut kind = [0u8; 1];
    s.read_exact(&mut kind).await.map_err(io)?;
    let kind = Kind::from_u8(kind[0]).ok_or(RpcError::UnknownKind(kind[0]))?;
    // Grows only as bytes arrive, so a peer announcing a large frame costs nothing up front.
    let mut body = Vec::new();
    (&mut *s)
        .take((len - 1) as u64)
        .read_to_end(&mut body)
        .await
        .map_err(io)?;
    if body.len() != len - 1 {
        return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(Some((kind, body)))
}

/// Encodes one frame.
pub fn frame(kind: Kind, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + body.len());
    out.extend_from_slice(&((body.len() + 1) as u32).to_be_bytes());
    out.push(kind as u8);
    out.extend_from_slice(body);
    out
}

/// One item of a [`Kind::PartitionRaftBatch`] body, appended to `out`.
pub fn push_batch_item(out: &mut Vec<u8>, topic: &str, partition: i32, msg: &[u8]) {
    let topic = &topic.as_bytes()[..topic.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    out.extend_from_slice(topic);
    out.extend_from_slice(&partition.to_be_bytes());
    out.extend_from_slice(&(msg.len().min(u32::MAX as usize) as u32).to_be_bytes());
    out.extend_from_slice(msg);
}

/// `(topic, partition, protobuf message)`.
pub type BatchItem<'a> = (&'a str, i32, &'a [u8]);

/// Splits a [`Kind::PartitionRaftBatch`] body into `(topic, partition, message)` items; an
/// error if any length runs past the body or the count does not match.
pub fn split_batch(body: &[u8]) -> Result<Vec<BatchItem<'_>>, RpcError> {
    let bad = |what: &str| RpcError::Body(format!("raft batch: {what}"));
    let count = u32::from_be_bytes(
        body.get(..4)
            .ok_or_else(|| bad("no count"))?
            .try_into()
            .map_err(|_| bad("no count"))?,
    ) as usize;
    fn take<'a>(n: usize, rest: &mut &'a [u8]) -> Option<&'a [u8]> {
        if rest.len() < n {
            return None;
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Some(head)
    }
    fn int<const N: usize>(rest: &mut &[u8]) -> Option<[u8; N]> {
        take(N, rest)?.try_into().ok()
    }
    // Every item is at least 10 bytes, so a lying count costs nothing up front.
    let mut items = Vec::with_capacity(count.min(body.len() / 10));
    let mut rest = &body[4..];
    while !rest.is_empty() {
        let item = (|| {
            let tlen = u16::from_be_bytes(int(&mut rest)?) as usize;
            let topic = take(tlen, &mut rest)?;
            let p = i32::from_be_bytes(int(&mut rest)?);
            let mlen = u32::from_be_bytes(int(&mut rest)?) as usize;
            Some((topic, p, take(mlen, &mut rest)?))
        })()
        .ok_or_else(|| bad("truncated item"))?;
        let topic = std::str::from_utf8(item.0).map_err(|_| bad("topic is not UTF-8"))?;
        items.push((topic, item.1, item.2));
    }
    if items.len() != count {
        return Err(bad("count does not match the items"));
    }
    Ok(items)
}

/// Connects to a peer. Connections leave from `source` (the RPC listener's IP) when it is a
/// specific address of the same kind (loopback or not) as the peer's, so that a peer, or a
/// proxy in tests, sees which broker is calling.
pub async fn connect(addr: &str, source: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    let mut last = None;
    for target in tokio::net::lookup_host(addr).await? {
        let socket = if target.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        if let Some(ip) = source.filter(|ip| {
            !ip.is_unspecified()
                && ip.is_ipv4() == target.is_ipv4()
                && ip.is_loopback() == target.ip().is_loopback()
        }) {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        match socket.connect(target).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other(format!("{addr} resolves to nothing"))))
}

/// One request and its answer on a fresh connection, within `timeout`.
pub async fn call(
    addr: &str,
    source: Option<std::net::IpAddr>,
    kind: Kind,
    body: &[u8],
    answer: Kind,
    timeout: std::time::Duration,
) -> Result<Vec<u8>, RpcError> {
    let run = async {
        let io = |source| RpcError::Io {
            peer: addr.to_string(),
            source,
        };
        let mut s = connect(addr, source).await.map_err(io)?;
        s.write_all(&frame(kind, body)).await.map_err(io)?;
        match read_frame(&mut s, addr).await? {
            Some((k, b)) if k == answer => Ok(b),
            Some((k, _)) => Err(RpcError::Unexpected {
                expected: answer,
                got: k,
            }),
            None => Err(io(std::io::ErrorKind::UnexpectedEof.into())),
        }
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| RpcError::Timeout(addr.to_string()))?
}

/// Binds the RPC listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_bad_ones_are_errors() {
        let f = frame(Kind::Hello, b"{}");
        let mut r = &f[..];
        let (k, b) = read_frame(&mut r, "t").await.unwrap().unwrap();
        assert_eq!((k, b.as_slice()), (Kind::Hello, &b"{}"[..]));
        let mut huge = &[0xff, 0xff, 0xff, 0xff, 1][..];
        assert!(matches!(
            read_frame(&mut huge, "t").await,
            Err(RpcError::TooLarge(_))
        ));
        let mut unknown = &[0, 0, 0, 1, 99][..];
        assert!(matches!(
            read_frame(&mut unknown, "t").await,
            Err(RpcError::UnknownKind(99))
        ));
        let mut short = &[0, 0, 0, 9, 1, 2][..];
        assert!(read_frame(&mut short, "t").await.is_err());
        let mut empty = &[][..];
        assert!(read_frame(&mut empty, "t").await.unwrap().is_none());
    }

    #[test]
    fn raft_batches_round_trip_and_bad_ones_are_errors() {
        let mut body = 2u32.to_be_bytes().to_vec();
        push_batch_item(&mut body, "orders", 3, b"hb1");
        push_batch_item(&mut body, "t", -1, b"");
        assert_eq!(
            split_batch(&body).unwrap(),
            vec![("orders", 3, &b"hb1"[..]), ("t", -1, &b""[..])]
        );
        // Every truncation, a wrong count and garbage are errors, never panics.
        for cut in 0..body.len() {
            assert!(split_batch(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut wrong = body.clone();
        wrong[3] = 9;
        assert!(split_batch(&wrong).is_err());
        let mut huge = u32::MAX.to_be_bytes().to_vec();
        huge.extend_from_slice(&[0xff; 12]);
        assert!(split_batch(&huge).is_err());
        let mut not_utf8 = 1u32.to_be_bytes().to_vec();
        push_batch_item(&mut not_utf8, "ab", 0, b"m");
        not_utf8[6] = 0xff;
        assert!(split_batch(&not_utf8).is_err());
    }
}
