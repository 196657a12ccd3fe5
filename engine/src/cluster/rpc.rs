//! The internal RPC listener between brokers: length-prefixed frames on TCP.
//!
//! A frame is `u32 length` (big endian, of what follows), `u8 kind`, then the body. Control
//! messages (hello, proposals) are JSON; Raft messages are raft-rs's protobuf encoding and never
//! leave this listener. Every length and kind is checked: bytes from the network never panic.
//!
//! With a cluster secret ([`super::rpc_auth`]) every connection starts with the handshake and
//! every later frame is followed by its MAC ([`Conn`]); without one the frames are as above.
//!
//! With `--rpc-tls` every connection is mutual TLS first ([`Stream`]): the frames above travel
//! inside it, encrypted, between brokers whose certificates chain to the CA file.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub use super::rpc_tls::{accept, linger, RpcTls, Stream, REFUSE_NEEDS_TLS, REFUSE_NO_TLS};
use super::rpc_tls::{io_error, tls_connect};

use super::rpc_auth::{
    AuthError, ClientHandshake, ClusterSecret, Macs, ServerHandshake, REFUSE_BAD_PROOF,
    REFUSE_UNAUTHENTICATED, TAG,
};

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
    /// The caller's first frame with a cluster secret ([`super::rpc_auth`]); answered with
    /// `AuthChallenge` (or `AuthRefused` by a broker without a secret).
    AuthHello = 10,
    /// The listener's nonce and proof; answered with `AuthProof`.
    AuthChallenge = 11,
    /// The caller's proof; MAC'd frames follow.
    AuthProof = 12,
    /// Why the sender refuses to go on (UTF-8 text), before it closes the connection.
    AuthRefused = 13,
    /// A Kafka request one broker forwards to another for a client (only between brokers
    /// that authenticated with the cluster secret): `u16` length and the caller's principal
    /// (`User:alice`), `u16` length and its host, then the request frame (header and body,
    /// no length); answered with `KafkaResponse`.
    KafkaRequest = 14,
    /// The answer to `KafkaRequest`: the response frame (header and body, no length).
    KafkaResponse = 15,
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
            10 => Kind::AuthHello,
            11 => Kind::AuthChallenge,
            12 => Kind::AuthProof,
            13 => Kind::AuthRefused,
            14 => Kind::KafkaRequest,
            15 => Kind::KafkaResponse,
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
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The TLS handshake with a peer failed (`--rpc-tls`), or one side has TLS and the other not.
    #[error("rpc with {peer} over TLS refused: {why}")]
    Tls { peer: String, why: String },
    /// A plaintext listener got a TLS ClientHello.
    #[error("peer {peer} opened a TLS connection and this broker's RPC is plaintext: set --rpc-tls on every broker (or on none)")]
    TlsHello { peer: String },
}

/// The first byte of a TLS handshake record (a ClientHello); a frame's first byte is the top
/// of its length, 0 for every frame up to [`MAX_FRAME`].
pub(super) const TLS_HANDSHAKE: u8 = 0x16;

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame(
    s: &mut (impl AsyncReadExt + Unpin),
    peer: &str,
) -> Result<Option<(Kind, Vec<u8>)>, RpcError> {
    match read_raw(s, peer, 0).await? {
        None => Ok(None),
        Some((head, body)) => Ok(Some((parse_kind(head[4])?, body))),
    }
}

fn parse_kind(b: u8) -> Result<Kind, RpcError> {
    Kind::from_u8(b).ok_or(RpcError::UnknownKind(b))
}

/// Reads one frame's header (length and kind byte) and its body followed by `extra` bytes (a
/// MAC), the kind not yet interpreted; `Ok(None)` at a clean end of stream.
async fn read_raw(
    s: &mut (impl AsyncReadExt + Unpin),
    peer: &str,
    extra: usize,
) -> Result<Option<([u8; 5], Vec<u8>)>, RpcError> {
    let io = |source| io_error(peer, source);
    let mut head = [0u8; 5];
    match s.read_exact(&mut head[..4]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(io(e)),
    }
    let len = u32::from_be_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    if len == 0 {
        return Err(RpcError::Empty);
    }
    if len > MAX_FRAME && head[0] == TLS_HANDSHAKE && head[1] == 3 {
        return Err(RpcError::TlsHello {
            peer: peer.to_string(),
        });
    }
    if len > MAX_FRAME {
        return Err(RpcError::TooLarge(len));
    }
    s.read_exact(&mut head[4..]).await.map_err(io)?;
    // Room for the whole frame up to 4 MiB: untouched capacity costs a peer announcing a large
    // frame nothing but address space, and a buffer that need not grow is read into directly
    // (no copy out of the stream's buffer, no reallocation copies). Larger frames grow as
    // bytes arrive.
    let want = len - 1 + extra;
    let mut body = Vec::with_capacity(want.min(4 << 20));
    (&mut *s)
        .take(want as u64)
        .read_to_end(&mut body)
        .await
        .map_err(io)?;
    if body.len() != want {
        return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(Some((head, body)))
}

/// The error for an `AuthRefused` frame from `peer` (its reason, at most 512 bytes shown).
pub fn refused_by(peer: &str, body: &[u8]) -> RpcError {
    AuthError::RefusedBy {
        peer: peer.to_string(),
        reason: String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
    }
    .into()
}

/// One RPC connection: frames in and out, each followed by its MAC once the connection has
/// authenticated with the cluster secret ([`super::rpc_auth`]), as they are without one.
pub struct Conn<S> {
    s: S,
    peer: String,
    macs: Option<Macs>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// A connection without authentication (no cluster secret).
    pub fn plain(s: S, peer: String) -> Self {
        Conn {
            s,
            peer,
            macs: None,
        }
    }

    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Whether frames on it are authenticated.
    pub fn authenticated(&self) -> bool {
        self.macs.is_some()
    }

    fn io(&self, source: std::io::Error) -> RpcError {
        io_error(&self.peer, source)
    }

    /// The caller's side: with a secret, the handshake as node `node` before anything else.
    pub async fn client(
        mut s: S,
        peer: String,
        secret: Option<&ClusterSecret>,
        node: i32,
    ) -> Result<Self, RpcError> {
        let Some(secret) = secret else {
            return Ok(Conn::plain(s, peer));
        };
        let io = |source| io_error(&peer, source);
        let (hs, hello) = ClientHandshake::start(secret, node);
        send(&mut s, &frame(Kind::AuthHello, &hello))
            .await
            .map_err(io)?;
        let refused = |reason: String| {
            RpcError::Auth(AuthError::Refused {
                peer: peer.clone(),
                reason,
            })
        };
        let challenge = match read_frame(&mut s, &peer).await {
            Ok(Some((Kind::AuthChallenge, b))) => b,
            Ok(Some((Kind::AuthRefused, b))) => return Err(refused_by(&peer, &b)),
            Ok(Some((k, _))) => {
                return Err(refused(format!(
                    "it answered the handshake with a {k:?} frame"
                )))
            }
            // An older release closes on the kind it does not know.
            Ok(None) | Err(RpcError::Io { .. }) | Err(RpcError::UnknownKind(_)) => {
                return Err(refused(
                    "it closed the connection during the handshake: it has no cluster secret \
                     or runs a release without one (set the same --cluster-secret-file on \
                     every broker)"
                        .into(),
                ))
            }
            Err(e) => return Err(e),
        };
        match hs.finish(&challenge, &peer) {
            Ok((proof, macs, _)) => {
                send(&mut s, &frame(Kind::AuthProof, &proof))
                    .await
                    .map_err(io)?;
                Ok(Conn {
                    s,
                    peer,
                    macs: Some(macs),
                })
            }
            Err(e) => {
                // Say why to the other side too, so that both logs tell the operator.
                let why = REFUSE_BAD_PROOF.as_bytes();
                let _ = send(&mut s, &frame(Kind::AuthRefused, why)).await;
                Err(e.into())
            }
        }
    }

    /// The listener's side: with a secret, the caller must complete the handshake first
    /// (refused otherwise, with the reason sent back); without one, a caller that tries is
    /// refused the same way.
    pub async fn server(
        mut s: S,
        peer: String,
        secret: Option<&ClusterSecret>,
        node: i32,
    ) -> Result<Self, RpcError> {
        let Some(secret) = secret else {
            return Ok(Conn::plain(s, peer));
        };
        let io = |source| io_error(&peer, source);
        let hello = match read_frame(&mut s, &peer).await {
            Err(e @ RpcError::TlsHello { .. }) => {
                let _ = send(&mut s, &frame(Kind::AuthRefused, REFUSE_NO_TLS.as_bytes())).await;
                return Err(e);
            }
            r => r?,
        };
        let hello = match hello {
            Some((Kind::AuthHello, b)) => b,
            Some((got, _)) => {
                let why = REFUSE_UNAUTHENTICATED.as_bytes();
                let _ = send(&mut s, &frame(Kind::AuthRefused, why)).await;
                return Err(AuthError::Unauthenticated { peer, got }.into());
            }
            None => return Err(io(std::io::ErrorKind::UnexpectedEof.into())),
        };
        let (hs, challenge) = ServerHandshake::answer(secret, node, &hello, &peer)?;
        send(&mut s, &frame(Kind::AuthChallenge, &challenge))
            .await
            .map_err(io)?;
        let proof = match read_frame(&mut s, &peer).await {
            Ok(Some((Kind::AuthProof, b))) => b,
            Ok(Some((Kind::AuthRefused, b))) => return Err(refused_by(&peer, &b)),
            Ok(_) | Err(RpcError::Io { .. }) => {
                return Err(AuthError::Refused {
                    peer,
                    reason: "it did not send its proof".into(),
                }
                .into())
            }
            Err(e) => return Err(e),
        };
        let (macs, _) = hs.finish(&proof, &peer)?;
        Ok(Conn {
            s,
            peer,
            macs: Some(macs),
        })
    }

    /// Closes the connection after a refusal was written ([`linger`]).
    pub async fn linger(self) {
        linger(self.s).await
    }

    /// Reads one frame, checking its MAC on an authenticated connection; `Ok(None)` at a
    /// clean end of stream.
    pub async fn read(&mut self) -> Result<Option<(Kind, Vec<u8>)>, RpcError> {
        let Some(macs) = &mut self.macs else {
            return read_frame(&mut self.s, &self.peer).await;
        };
        let Some((head, mut body)) = read_raw(&mut self.s, &self.peer, TAG).await? else {
            return Ok(None);
        };
        let at = body.len() - TAG;
        let mut tag = [0u8; TAG];
        tag.copy_from_slice(&body[at..]);
        body.truncate(at);
        // The MAC first: nothing of a frame is interpreted before it is known to be a peer's.
        macs.recv.open(&head, &body, &tag, &self.peer)?;
        Ok(Some((parse_kind(head[4])?, body)))
    }

    /// Writes encoded frames in order, each with its MAC on an authenticated connection, in
    /// as few system calls as the stream allows and one flush.
    pub async fn write_batch(&mut self, mut frames: Vec<Vec<u8>>) -> Result<(), RpcError> {
        if let Some(m) = &mut self.macs {
            for f in &mut frames {
                m.send.seal(f);
            }
        }
        let bufs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let r = match crate::vectored::write_all(&mut self.s, &bufs, None).await {
            Ok(()) => self.s.flush().await,
            Err(e) => Err(e),
        };
        r.map_err(|e| self.io(e))
    }

    /// Writes one encoded frame ([`frame`]), its MAC appended on an authenticated connection.
    pub async fn write(&mut self, frame: Vec<u8>) -> Result<(), RpcError> {
        self.write_batch(vec![frame]).await
    }
}

/// Writes all of `bytes` and flushes: TLS holds what the socket did not take at once until
/// flushed (on TCP the flush does nothing).
pub(super) async fn send(s: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> std::io::Result<()> {
    s.write_all(bytes).await?;
    s.flush().await
}

/// Encodes one frame.
pub fn frame(kind: Kind, body: &[u8]) -> Vec<u8> {
    // Room for a MAC, so that sealing it never copies the frame.
    let mut out = Vec::with_capacity(5 + body.len() + TAG);
    out.extend_from_slice(&((body.len() + 1) as u32).to_be_bytes());
    out.push(kind as u8);
    out.extend_from_slice(body);
    out
}

/// Encodes one frame whose body is `head` followed by the `fill_len` bytes `fill` appends
/// (`None` if it fails), in one buffer allocated once, with room for a MAC.
pub fn frame_with(
    kind: Kind,
    head: &[u8],
    fill_len: usize,
    fill: impl FnOnce(&mut Vec<u8>) -> bool,
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(5 + head.len() + fill_len + TAG);
    out.extend_from_slice(&[0; 4]);
    out.push(kind as u8);
    out.extend_from_slice(head);
    if !fill(&mut out) {
        return None;
    }
    let len = u32::try_from(out.len() - 4).ok()?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Some(out)
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

/// Who calls: the secret it authenticates with (if any), its TLS (with `--rpc-tls`) and its
/// node id.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub source: Option<std::net::IpAddr>,
    pub secret: Option<&'a ClusterSecret>,
    pub tls: Option<&'a RpcTls>,
    pub node: i32,
}

/// Connects to a peer, with TLS the handshake, and with a secret, authenticates.
pub async fn open(addr: &str, caller: Caller<'_>) -> Result<Conn<Stream>, RpcError> {
    let s = connect(addr, caller.source)
        .await
        .map_err(|source| RpcError::Io {
            peer: addr.to_string(),
            source,
        })?;
    let s = match caller.tls {
        None => Stream::Plain(s),
        Some(tls) => tls_connect(s, addr, tls).await?,
    };
    Conn::client(s, addr.to_string(), caller.secret, caller.node).await
}

/// One request and its answer on a fresh connection, within `timeout`.
pub async fn call(
    addr: &str,
    caller: Caller<'_>,
    kind: Kind,
    body: &[u8],
    answer: Kind,
    timeout: std::time::Duration,
) -> Result<Vec<u8>, RpcError> {
    let run = async {
        let mut c = open(addr, caller).await?;
        c.write(frame(kind, body)).await?;
        match c.read().await? {
            Some((k, b)) if k == answer => Ok(b),
            Some((Kind::AuthRefused, b)) => Err(refused_by(addr, &b)),
            Some((k, _)) => Err(RpcError::Unexpected {
                expected: answer,
                got: k,
            }),
            None => Err(RpcError::Io {
                peer: addr.to_string(),
                source: std::io::ErrorKind::UnexpectedEof.into(),
            }),
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

    #[test]
    fn a_frame_filled_in_place_is_the_frame_of_its_whole_body() {
        let f = frame_with(Kind::PartitionRaft, b"head", 5, |out| {
            out.extend_from_slice(b"body!");
            true
        })
        .unwrap();
        assert_eq!(f, frame(Kind::PartitionRaft, b"headbody!"));
        // Sealing with a MAC needs no second allocation.
        assert!(f.capacity() >= f.len() + TAG);
        assert!(frame_with(Kind::PartitionRaft, b"head", 0, |_| false).is_none());
    }

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

    fn secret(b: u8) -> ClusterSecret {
        ClusterSecret::new(vec![b; 32].into()).unwrap()
    }

    /// A caller (node 1) and a listener (node 2) over an in-memory pipe, with these secrets.
    async fn pair(
        caller: Option<ClusterSecret>,
        listener: Option<ClusterSecret>,
    ) -> (
        Result<Conn<tokio::io::DuplexStream>, RpcError>,
        Result<Conn<tokio::io::DuplexStream>, RpcError>,
    ) {
        let (a, b) = tokio::io::duplex(1 << 16);
        tokio::join!(
            Conn::client(a, "listener".into(), caller.as_ref(), 1),
            Conn::server(b, "caller".into(), listener.as_ref(), 2)
        )
    }

    #[tokio::test]
    async fn authenticated_connections_carry_frames_both_ways() {
        let (c, s) = pair(Some(secret(1)), Some(secret(1))).await;
        let (mut c, mut s) = (c.unwrap(), s.unwrap());
        assert!(c.authenticated() && s.authenticated());
        for i in 0..3u8 {
            c.write(frame(Kind::Propose, &[i; 100])).await.unwrap();
            assert_eq!(s.read().await.unwrap(), Some((Kind::Propose, vec![i; 100])));
            s.write(frame(Kind::ProposeResult, &[i])).await.unwrap();
            assert_eq!(
                c.read().await.unwrap(),
                Some((Kind::ProposeResult, vec![i]))
            );
        }
        drop(c);
        assert_eq!(s.read().await.unwrap(), None);
    }

    #[tokio::test]
    async fn without_secrets_frames_are_as_before() {
        let (c, s) = pair(None, None).await;
        let (mut c, mut s) = (c.unwrap(), s.unwrap());
        assert!(!c.authenticated());
        c.write(frame(Kind::Hello, b"{}")).await.unwrap();
        assert_eq!(s.read().await.unwrap(), Some((Kind::Hello, b"{}".to_vec())));
        // What an older release reads: the frame, nothing after it.
        let (mut a, mut b) = tokio::io::duplex(1024);
        let mut plain = Conn::plain(&mut a, "p".into());
        plain.write(frame(Kind::Hello, b"{}")).await.unwrap();
        drop(plain);
        drop(a);
        let mut raw = Vec::new();
        b.read_to_end(&mut raw).await.unwrap();
        assert_eq!(raw, frame(Kind::Hello, b"{}"));
    }

    #[tokio::test]
    async fn a_wrong_secret_is_refused_on_both_sides() {
        let (c, s) = pair(Some(secret(1)), Some(secret(2))).await;
        assert!(matches!(c, Err(RpcError::Auth(AuthError::BadProof { .. }))));
        // The listener is told why.
        assert!(
            matches!(&s, Err(RpcError::Auth(AuthError::RefusedBy { reason, .. })) if reason == REFUSE_BAD_PROOF),
            "{:?}",
            s.err()
        );
    }

    #[tokio::test]
    async fn a_peer_without_a_secret_is_refused_and_told_why() {
        // The listener has a secret, the caller none: its first frame is refused.
        let k = secret(1);
        let (a, b) = tokio::io::duplex(1 << 16);
        let caller = async {
            let mut c = Conn::client(a, "l".into(), None, 1).await.unwrap();
            c.write(frame(Kind::Propose, b"{}")).await.unwrap();
            c.read().await.unwrap()
        };
        let (answer, s) = tokio::join!(caller, Conn::server(b, "c".into(), Some(&k), 2));
        assert!(matches!(
            s,
            Err(RpcError::Auth(AuthError::Unauthenticated {
                got: Kind::Propose,
                ..
            }))
        ));
        assert_eq!(
            answer,
            Some((
                Kind::AuthRefused,
                REFUSE_UNAUTHENTICATED.as_bytes().to_vec()
            ))
        );
        // The caller has a secret and the listener none (it answers as listener.rs does).
        let (a, b) = tokio::io::duplex(1 << 16);
        let listener = async {
            let mut s = Conn::server(b, "c".into(), None, 2).await.unwrap();
            let first = s.read().await.unwrap();
            let why = super::super::rpc_auth::REFUSE_NO_SECRET.as_bytes();
            s.write(frame(Kind::AuthRefused, why)).await.unwrap();
            first.map(|(k, _)| k)
        };
        let (c, first) = tokio::join!(Conn::client(a, "l".into(), Some(&k), 1), listener);
        assert_eq!(first, Some(Kind::AuthHello));
        let e = c.err().unwrap().to_string();
        assert!(e.contains("set the same --cluster-secret-file"), "{e}");
    }

    #[tokio::test]
    async fn frames_altered_on_the_wire_close_the_connection() {
        // A man in the middle flips one byte of the second frame's body.
        let (a, mut mitm_in) = tokio::io::duplex(1 << 16);
        let (mut mitm_out, b) = tokio::io::duplex(1 << 16);
        let relay = async {
            let mut buf = vec![0u8; 4096];
            let mut back = vec![0u8; 4096];
            let mut seen = 0usize;
            loop {
                tokio::select! {
                    n = mitm_in.read(&mut buf) => {
                        let n = n.unwrap();
                        if n == 0 { return; }
                        let chunk = &mut buf[..n];
                        // The handshake is 3 frames (AuthHello 42 bytes, AuthProof 37 bytes);
                        // then each Propose frame is 5 + 10 + 16 bytes.
                        let start = 42 + 37 + 31;
                        for (i, byte) in chunk.iter_mut().enumerate() {
                            if seen + i == start + 8 {
                                *byte ^= 0x40;
                            }
                        }
                        seen += n;
                        if mitm_out.write_all(chunk).await.is_err() { return; }
                    }
                    n = mitm_out.read(&mut back) => {
                        let n = n.unwrap();
                        if n == 0 { return; }
                        if mitm_in.write_all(&back[..n]).await.is_err() { return; }
                    }
                }
            }
        };
        let ends = async {
            let k = secret(1);
            let (c, s) = tokio::join!(
                Conn::client(a, "l".into(), Some(&k), 1),
                Conn::server(b, "c".into(), Some(&k), 2)
            );
            let (mut c, mut s) = (c.unwrap(), s.unwrap());
            c.write(frame(Kind::Propose, &[1; 10])).await.unwrap();
            c.write(frame(Kind::Propose, &[2; 10])).await.unwrap();
            assert_eq!(s.read().await.unwrap(), Some((Kind::Propose, vec![1; 10])));
            let second = s.read().await;
            assert!(
                matches!(
                    second,
                    Err(RpcError::Auth(AuthError::BadMac { seq: 1, .. }))
                ),
                "{second:?}"
            );
        };
        tokio::select! {
            _ = ends => {}
            _ = relay => panic!("the relay ended first"),
        }
    }
}
