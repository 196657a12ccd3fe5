//! Inter-broker authentication with the shared cluster secret (`--cluster-secret-file`).
//!
//! Before any other frame of an RPC connection, when a secret is set:
//!
//! 1. the caller sends `AuthHello`: `u8` version, `i32` its node id, a fresh 32-byte nonce;
//! 2. the listener answers `AuthChallenge`: `u8` version, `i32` its node id, its own fresh
//!    nonce and its proof, `HMAC-SHA256(secret, LABEL || "server" || both nonces || both ids)`;
//! 3. the caller checks that proof and sends `AuthProof`, the same with `"client"`.
//!
//! Each side then keys one MAC per direction with `HMAC-SHA256(secret, KEYS || direction ||
//! both nonces || both ids)`, and every later frame is followed by a 16-byte tag,
//! `HMAC-SHA256(key, sequence number || the frame's bytes)` truncated, the sequence number
//! counting that direction's frames from 0. So a frame can be neither injected nor altered
//! (no key), reordered, dropped or replayed within a connection (the sequence number), nor
//! replayed into another one (fresh nonces make new keys; a replayed `AuthProof` answers an
//! old challenge). Secrets shorter than [`MIN_SECRET`] bytes are refused at start.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::rpc::Kind;

/// The handshake's version, in `AuthHello` and `AuthChallenge`.
pub const AUTH_VERSION: u8 = 1;
/// Bytes of each side's nonce.
pub const NONCE: usize = 32;
/// Bytes of the tag after each frame (HMAC-SHA256 truncated: 128 bits).
pub const TAG: usize = 16;
/// The shortest secret accepted (256 bits, as the HMAC's key).
pub const MIN_SECRET: usize = 32;

const PROOF_LABEL: &[u8] = b"icestream-rpc-auth-v1 proof";
const KEY_LABEL: &[u8] = b"icestream-rpc-auth-v1 frame-key";

type HmacSha256 = Hmac<Sha256>;

/// The cluster secret every broker of a cluster shares; never printed.
#[derive(Clone)]
pub struct ClusterSecret(std::sync::Arc<[u8]>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterSecret({} bytes)", self.0.len())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the cluster secret has {0} bytes; at least {MIN_SECRET} are needed (e.g. `head -c 32 /dev/urandom | base64 > secret`)")]
pub struct ShortSecret(pub usize);

impl ClusterSecret {
    pub fn new(bytes: std::sync::Arc<[u8]>) -> Result<Self, ShortSecret> {
        if bytes.len() < MIN_SECRET {
            return Err(ShortSecret(bytes.len()));
        }
        Ok(ClusterSecret(bytes))
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(&self.0).expect("any key size");
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }
}

/// What a listener without a secret sends back to a caller that starts a handshake.
pub const REFUSE_NO_SECRET: &str =
    "it has no cluster secret: set the same --cluster-secret-file on every broker";
/// What a listener with a secret sends back to a caller that does not start with one.
pub const REFUSE_UNAUTHENTICATED: &str = "it requires cluster authentication and this broker \
     did not authenticate: set the same --cluster-secret-file on every broker";
/// What a caller sends back to a listener whose proof is wrong.
pub const REFUSE_BAD_PROOF: &str = "this broker's proof does not match its cluster secret: \
     set the same --cluster-secret-file on every broker";

/// Why a connection was refused or closed by the authentication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("peer {peer} did not authenticate (it sent a {got:?} frame first): set the same --cluster-secret-file on every broker")]
    Unauthenticated { peer: String, got: Kind },
    #[error("peer {peer} authenticates with a cluster secret but this broker has none: set the same --cluster-secret-file on every broker")]
    NoSecretHere { peer: String },
    #[error("peer {peer} did not authenticate: {reason}")]
    Refused { peer: String, reason: String },
    #[error("peer {peer} refused the connection: {reason}")]
    RefusedBy { peer: String, reason: String },
    #[error("peer {peer} did not authenticate: its proof does not match this broker's cluster secret (a replayed handshake, or another secret: set the same --cluster-secret-file on every broker)")]
    BadProof { peer: String },
    #[error("peer {peer} did not authenticate: {what}")]
    Malformed { peer: String, what: &'static str },
    #[error("frame {seq} from {peer} fails its MAC (altered, injected, reordered or replayed): connection closed")]
    BadMac { peer: String, seq: u64 },
}

/// One direction's MAC: keyed once per connection, a clone of the keyed state per frame.
pub struct FrameMac {
    keyed: HmacSha256,
    seq: u64,
}

impl FrameMac {
    fn new(key: &[u8; 32]) -> Self {
        FrameMac {
            keyed: <HmacSha256 as KeyInit>::new_from_slice(key).expect("any key size"),
            seq: 0,
        }
    }

    fn compute(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = self.keyed.clone();
        m.update(&self.seq.to_be_bytes());
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    /// Appends the tag of the encoded frame `frame` (length, kind, body) to it.
    pub fn seal(&mut self, frame: &mut Vec<u8>) {
        let tag = self.compute(&[frame]);
        frame.extend_from_slice(&tag[..TAG]);
        self.seq += 1;
    }

    /// Checks the tag of a received frame whose header (length, kind) and body are given.
    pub fn open(
        &mut self,
        head: &[u8],
        body: &[u8],
        tag: &[u8],
        peer: &str,
    ) -> Result<(), AuthError> {
        let want = self.compute(&[head, body]);
        // Constant time: a timing difference must not tell how much of a forged tag was right.
        let ok = tag.len() == TAG && subtle_eq(&want[..TAG], tag);
        if !ok {
            return Err(AuthError::BadMac {
                peer: peer.to_string(),
                seq: self.seq,
            });
        }
        self.seq += 1;
        Ok(())
    }
}

fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The two MACs of an authenticated connection.
pub struct Macs {
    pub send: FrameMac,
    pub recv: FrameMac,
}

/// What both proofs and both keys are computed over.
struct Transcript {
    client_nonce: [u8; NONCE],
    server_nonce: [u8; NONCE],
    client_node: i32,
    server_node: i32,
}

impl Transcript {
    fn proof(&self, secret: &ClusterSecret, role: &[u8]) -> [u8; 32] {
        secret.mac(&[
            PROOF_LABEL,
            role,
            &self.client_nonce,
            &self.server_nonce,
            &self.client_node.to_be_bytes(),
            &self.server_node.to_be_bytes(),
        ])
    }

    fn key(&self, secret: &ClusterSecret, direction: &[u8]) -> [u8; 32] {
        secret.mac(&[
            KEY_LABEL,
            direction,
            &self.client_nonce,
            &self.server_nonce,
            &self.client_node.to_be_bytes(),
            &self.server_node.to_be_bytes(),
        ])
    }

    fn macs(&self, secret: &ClusterSecret, client: bool) -> Macs {
        let c2s = FrameMac::new(&self.key(secret, b"client-to-server"));
        let s2c = FrameMac::new(&self.key(secret, b"server-to-client"));
        if client {
            Macs {
                send: c2s,
                recv: s2c,
            }
        } else {
            Macs {
                send: s2c,
                recv: c2s,
            }
        }
    }
}

fn nonce() -> [u8; NONCE] {
    use rand::RngCore;
    let mut n = [0u8; NONCE];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n
}

/// The caller's side, step by step (the transport is [`super::rpc`]'s).
pub struct ClientHandshake {
    secret: ClusterSecret,
    node: i32,
    nonce: [u8; NONCE],
}

impl ClientHandshake {
    /// Starts a handshake: the `AuthHello` body to send.
    pub fn start(secret: &ClusterSecret, node: i32) -> (Self, Vec<u8>) {
        Self::start_with(secret, node, nonce())
    }

    fn start_with(secret: &ClusterSecret, node: i32, nonce: [u8; NONCE]) -> (Self, Vec<u8>) {
        let mut body = Vec::with_capacity(5 + NONCE);
        body.push(AUTH_VERSION);
        body.extend_from_slice(&node.to_be_bytes());
        body.extend_from_slice(&nonce);
        (
            ClientHandshake {
                secret: secret.clone(),
                node,
                nonce,
            },
            body,
        )
    }

    /// Checks the listener's `AuthChallenge`: the `AuthProof` body to send, the MACs, and
    /// the listener's node id.
    pub fn finish(self, challenge: &[u8], peer: &str) -> Result<(Vec<u8>, Macs, i32), AuthError> {
        let malformed = |what| AuthError::Malformed {
            peer: peer.to_string(),
            what,
        };
        if challenge.len() != 5 + NONCE + 32 {
            return Err(malformed("a challenge of the wrong size"));
        }
        if challenge[0] != AUTH_VERSION {
            return Err(malformed("an unknown handshake version"));
        }
        let server_node = i32::from_be_bytes(challenge[1..5].try_into().expect("4 bytes"));
        let t = Transcript {
            client_nonce: self.nonce,
            server_nonce: challenge[5..5 + NONCE].try_into().expect("32 bytes"),
            client_node: self.node,
            server_node,
        };
        if !subtle_eq(&t.proof(&self.secret, b"server"), &challenge[5 + NONCE..]) {
            return Err(AuthError::BadProof {
                peer: peer.to_string(),
            });
        }
        let proof = t.proof(&self.secret, b"client").to_vec();
        Ok((proof, t.macs(&self.secret, true), server_node))
    }
}

/// The listener's side: from the caller's `AuthHello`, the `AuthChallenge` to send.
pub struct ServerHandshake {
    secret: ClusterSecret,
    t: Transcript,
}

impl ServerHandshake {
    pub fn answer(
        secret: &ClusterSecret,
        node: i32,
        hello: &[u8],
        peer: &str,
    ) -> Result<(Self, Vec<u8>), AuthError> {
        Self::answer_with(secret, node, hello, peer, nonce())
    }

    fn answer_with(
        secret: &ClusterSecret,
        node: i32,
        hello: &[u8],
        peer: &str,
        nonce: [u8; NONCE],
    ) -> Result<(Self, Vec<u8>), AuthError> {
        let malformed = |what| AuthError::Malformed {
            peer: peer.to_string(),
            what,
        };
        if hello.len() != 5 + NONCE {
            return Err(malformed("a hello of the wrong size"));
        }
        if hello[0] != AUTH_VERSION {
            return Err(malformed("an unknown handshake version"));
        }
        let t = Transcript {
            client_nonce: hello[5..].try_into().expect("32 bytes"),
            server_nonce: nonce,
            client_node: i32::from_be_bytes(hello[1..5].try_into().expect("4 bytes")),
            server_node: node,
        };
        let mut body = Vec::with_capacity(5 + NONCE + 32);
        body.push(AUTH_VERSION);
        body.extend_from_slice(&node.to_be_bytes());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&t.proof(secret, b"server"));
        Ok((
            ServerHandshake {
                secret: secret.clone(),
                t,
            },
            body,
        ))
    }

    /// Checks the caller's `AuthProof`: the MACs and the caller's node id.
    pub fn finish(self, proof: &[u8], peer: &str) -> Result<(Macs, i32), AuthError> {
        if !subtle_eq(&self.t.proof(&self.secret, b"client"), proof) {
            return Err(AuthError::BadProof {
                peer: peer.to_string(),
            });
        }
        Ok((self.t.macs(&self.secret, false), self.t.client_node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(b: u8) -> ClusterSecret {
        ClusterSecret::new(vec![b; 32].into()).unwrap()
    }

    /// A handshake between caller node 1 and listener node 2 with these secrets.
    fn handshake(a: &ClusterSecret, b: &ClusterSecret) -> Result<(Macs, Macs), AuthError> {
        let (c, hello) = ClientHandshake::start(a, 1);
        let (s, challenge) = ServerHandshake::answer(b, 2, &hello, "c")?;
        let (proof, client, server_node) = c.finish(&challenge, "s")?;
        assert_eq!(server_node, 2);
        let (server, client_node) = s.finish(&proof, "c")?;
        assert_eq!(client_node, 1);
        Ok((client, server))
    }

    fn encoded(kind: Kind, body: &[u8]) -> Vec<u8> {
        super::super::rpc::frame(kind, body)
    }

    fn open(m: &mut FrameMac, sealed: &[u8]) -> Result<(), AuthError> {
        let (frame, tag) = sealed.split_at(sealed.len() - TAG);
        m.open(&frame[..5], &frame[5..], tag, "peer")
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(ClusterSecret::new(vec![7; 31].into()).is_err());
        assert!(format!("{:?}", secret(1)).contains("32 bytes"));
    }

    #[test]
    fn the_same_secret_authenticates_both_ways_and_frames_open_in_order() {
        let (mut c, mut s) = handshake(&secret(1), &secret(1)).unwrap();
        for i in 0..3u8 {
            let mut f = encoded(Kind::Raft, &[i; 10]);
            c.send.seal(&mut f);
            open(&mut s.recv, &f).unwrap();
            let mut back = encoded(Kind::ProposeResult, &[i]);
            s.send.seal(&mut back);
            open(&mut c.recv, &back).unwrap();
        }
    }

    #[test]
    fn a_wrong_secret_fails_on_both_sides() {
        // The caller finds the listener's proof wrong.
        let (c, hello) = ClientHandshake::start(&secret(1), 1);
        let (_, challenge) = ServerHandshake::answer(&secret(2), 2, &hello, "c").unwrap();
        assert!(matches!(
            c.finish(&challenge, "s"),
            Err(AuthError::BadProof { .. })
        ));
        // A caller with another secret that sends its proof anyway is refused by the listener.
        let (c, hello) = ClientHandshake::start(&secret(2), 1);
        let (s, challenge) = ServerHandshake::answer(&secret(1), 2, &hello, "c").unwrap();
        assert!(c.finish(&challenge, "s").is_err());
        let forged = s.t.proof(&secret(2), b"client");
        assert!(matches!(
            s.finish(&forged, "c"),
            Err(AuthError::BadProof { .. })
        ));
    }

    #[test]
    fn a_replayed_handshake_is_refused() {
        // A captured hello and proof, replayed to the listener: it picks a new nonce, so the
        // old proof answers nothing it asked.
        let (c, hello) = ClientHandshake::start(&secret(1), 1);
        let (s, challenge) = ServerHandshake::answer(&secret(1), 2, &hello, "c").unwrap();
        let (proof, _, _) = c.finish(&challenge, "s").unwrap();
        s.finish(&proof, "c").unwrap();
        let (again, _) = ServerHandshake::answer(&secret(1), 2, &hello, "c").unwrap();
        assert!(matches!(
            again.finish(&proof, "c"),
            Err(AuthError::BadProof { .. })
        ));
        // Nor is the listener's proof any good as the caller's.
        let (again, _) = ServerHandshake::answer(&secret(1), 2, &hello, "c").unwrap();
        assert!(again.finish(&challenge[5 + NONCE..], "c").is_err());
    }

    #[test]
    fn tampered_replayed_reordered_and_injected_frames_are_refused() {
        let (mut c, s) = handshake(&secret(1), &secret(1)).unwrap();
        let mut frames = Vec::new();
        for i in 0..3u8 {
            let mut f = encoded(Kind::PartitionRaft, &[i; 20]);
            c.send.seal(&mut f);
            frames.push(f);
        }
        let mut recv = s.recv;
        // Every single flipped bit, in the length, kind, body or tag.
        for at in 0..frames[0].len() {
            let mut bad = frames[0].clone();
            bad[at] ^= 1;
            let mut r = FrameMac {
                keyed: recv.keyed.clone(),
                seq: 0,
            };
            assert!(open(&mut r, &bad).is_err(), "flip at {at}");
        }
        // Reordered: the second frame first.
        let mut r = FrameMac {
            keyed: recv.keyed.clone(),
            seq: 0,
        };
        assert!(open(&mut r, &frames[1]).is_err());
        // In order they pass; the first again (replayed) does not.
        open(&mut recv, &frames[0]).unwrap();
        assert!(matches!(
            open(&mut recv, &frames[0]),
            Err(AuthError::BadMac { seq: 1, .. })
        ));
        open(&mut recv, &frames[1]).unwrap();
        // A frame without a tag, or one sealed by another connection, is refused.
        assert!(recv
            .open(&frames[2][..5], &frames[2][5..], b"", "p")
            .is_err());
        let (mut other, _) = handshake(&secret(1), &secret(1)).unwrap();
        let mut f = encoded(Kind::PartitionRaft, &[2; 20]);
        other.send.seal(&mut f);
        // (other's seq is 0, recv's is 2: give other two frames so the numbers agree.)
        let mut f2 = encoded(Kind::PartitionRaft, &[2; 20]);
        other.send.seal(&mut f2);
        let mut f3 = encoded(Kind::PartitionRaft, &[2; 20]);
        other.send.seal(&mut f3);
        assert!(open(&mut recv, &f3).is_err(), "another connection's keys");
        open(&mut recv, &frames[2]).unwrap();
    }

    #[test]
    fn each_direction_has_its_own_key() {
        let (mut c, mut s) = handshake(&secret(1), &secret(1)).unwrap();
        let mut f = encoded(Kind::Hello, b"{}");
        c.send.seal(&mut f);
        // Reflected back to the caller, the caller's own frame does not open.
        assert!(open(&mut c.recv, &f).is_err());
        open(&mut s.recv, &f).unwrap();
    }

    #[test]
    fn malformed_handshake_messages_are_errors_not_panics() {
        let s = secret(1);
        for n in 0..80 {
            let junk = vec![AUTH_VERSION; n];
            let _ = ServerHandshake::answer(&s, 2, &junk, "c");
            let (c, _) = ClientHandshake::start(&s, 1);
            let _ = c.finish(&junk, "s");
        }
        let (c, mut hello) = ClientHandshake::start(&s, 1);
        hello[0] = 9;
        assert!(ServerHandshake::answer(&s, 2, &hello, "c").is_err());
        drop(c);
    }
}
