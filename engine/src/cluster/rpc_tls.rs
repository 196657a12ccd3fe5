//! TLS on the inter-broker RPC (`--rpc-tls`): the stream a connection runs on, the mutual
//! handshake on both ends, and what each side tells the operator when the other has no TLS,
//! an untrusted certificate or one for another host. Frames ([`super::rpc`]) travel inside.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::rpc::{frame, send, Kind, RpcError, TLS_HANDSHAKE};

pub use crate::security::tls::RpcTlsConfigs as RpcTls;

/// What a plaintext caller is told by a listener with `--rpc-tls`.
pub const REFUSE_NEEDS_TLS: &str =
    "its RPC requires TLS (--rpc-tls) and this broker speaks plaintext: set --rpc-tls on every broker";
/// What a TLS caller is told (in plaintext) by a listener without `--rpc-tls`.
pub const REFUSE_NO_TLS: &str =
    "its RPC is plaintext (no --rpc-tls) and this broker speaks TLS: set --rpc-tls on every broker";

/// An RPC connection's byte stream: TCP, or TLS over TCP with `--rpc-tls`.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Which end of a TLS handshake this broker was, for the operator's explanation.
#[derive(Clone, Copy)]
enum Side {
    Caller,
    Listener,
    /// After the handshake (TLS 1.3 tells a caller that its certificate was refused then).
    Either,
}

/// The error for an i/o failure on an RPC connection: a TLS one (an alert from the peer, a
/// record that does not decrypt) explained as [`tls_refused`] does, others as they are.
pub(super) fn io_error(peer: &str, source: std::io::Error) -> RpcError {
    match source.get_ref().is_some_and(|i| i.is::<rustls::Error>()) {
        true => tls_refused(peer, host_of(peer), Side::Either, source),
        false => RpcError::Io {
            peer: peer.to_string(),
            source,
        },
    }
}

/// Why a TLS handshake with `peer` failed, in an operator's terms: what to fix on which side.
fn tls_refused(peer: &str, host: &str, side: Side, e: std::io::Error) -> RpcError {
    use rustls::{CertificateError as C, Error as E};
    let theirs = match side {
        Side::Caller | Side::Either => "its certificate",
        Side::Listener => "its client certificate",
    };
    let why = match e.get_ref().and_then(|i| i.downcast_ref::<E>()) {
        Some(E::InvalidMessage(_)) | Some(E::InappropriateMessage { .. }) => {
            "it answered in plaintext: it has no --rpc-tls (set --rpc-tls on every broker)".into()
        }
        Some(E::NoCertificatesPresented) => {
            "it presented no certificate: it has no --rpc-tls, or an older release (set --rpc-tls on every broker)".into()
        }
        Some(E::InvalidCertificate(C::NotValidForName))
        | Some(E::InvalidCertificate(C::NotValidForNameContext { .. })) => format!(
            "{theirs} does not name {host} (the host of its RPC address) in a subject alternative name"
        ),
        Some(E::InvalidCertificate(C::UnknownIssuer))
        | Some(E::InvalidCertificate(C::BadSignature)) => format!(
            "{theirs} is not signed by a CA in this broker's --tls-ca-file"
        ),
        Some(E::InvalidCertificate(C::InvalidPurpose))
        | Some(E::InvalidCertificate(C::InvalidPurposeContext { .. })) => format!(
            "{theirs} lacks an extended key usage a broker's has (serverAuth and clientAuth both: a Kafka client's certificate, with clientAuth only, is no broker's)"
        ),
        Some(E::InvalidCertificate(c)) => format!("{theirs} is invalid: {c:?}"),
        Some(E::AlertReceived(a)) => format!(
            "it refused this broker's certificate (TLS alert {a:?}): this broker's --tls-cert-file \
             must chain to a CA in its --tls-ca-file, have the serverAuth and clientAuth usages \
             and name this broker's RPC host"
        ),
        Some(other) => other.to_string(),
        // Not counted as a refusal: a peer (or a proxy before it) going away looks the same.
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return RpcError::Io {
                peer: peer.to_string(),
                source: std::io::Error::new(
                    e.kind(),
                    "closed during the TLS handshake (a broker of a release without \
                     --rpc-tls does so, as does one going away)",
                ),
            }
        }
        None => return RpcError::Io {
            peer: peer.to_string(),
            source: e,
        },
    };
    RpcError::Tls {
        peer: peer.to_string(),
        why,
    }
}

/// The host of a `host:port` (brackets of an IPv6 address removed).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// The caller's TLS handshake: this broker's certificate out, the listener's checked against
/// the CA file and the host of `addr`.
pub(super) async fn tls_connect(
    s: TcpStream,
    addr: &str,
    tls: &RpcTls,
) -> Result<Stream, RpcError> {
    let host = host_of(addr);
    let name =
        rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|_| RpcError::Tls {
            peer: addr.to_string(),
            why: format!(
                "'{host}' is neither an IP address nor a DNS name a certificate can carry"
            ),
        })?;
    let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
    match connector.connect(name, s).await {
        Ok(s) => Ok(Stream::Tls(Box::new(s.into()))),
        Err(e) => Err(tls_refused(addr, host, Side::Caller, e)),
    }
}

/// The listener's side of a new connection: with TLS, the handshake (the caller's certificate
/// required); a caller speaking plaintext is told why before it is closed.
pub async fn accept(
    mut s: TcpStream,
    peer: &str,
    tls: Option<&RpcTls>,
) -> Result<Stream, RpcError> {
    let Some(tls) = tls else {
        return Ok(Stream::Plain(s));
    };
    let io = |source| RpcError::Io {
        peer: peer.to_string(),
        source,
    };
    let mut first = [0u8; 1];
    if s.peek(&mut first).await.map_err(io)? == 0 {
        return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    if first[0] != TLS_HANDSHAKE {
        let _ = send(
            &mut s,
            &frame(Kind::AuthRefused, REFUSE_NEEDS_TLS.as_bytes()),
        )
        .await;
        linger(s).await;
        return Err(RpcError::Tls {
            peer: peer.to_string(),
            why: "it speaks plaintext: set --rpc-tls on every broker".into(),
        });
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
    match acceptor.accept(s).await {
        Ok(s) => Ok(Stream::Tls(Box::new(s.into()))),
        Err(e) => Err(tls_refused(peer, host_of(peer), Side::Listener, e)),
    }
}

/// Closes a refused connection after its refusal: the write side first, then what the peer
/// still sends is read (for at most a second), so that closing with unread bytes does not
/// reset the connection and lose the refusal before the peer reads it.
pub async fn linger(mut s: impl AsyncRead + AsyncWrite + Unpin) {
    let _ = s.shutdown().await;
    let drain = async {
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
}

#[cfg(test)]
mod tests {
    use super::super::rpc::*;
    use super::super::rpc_auth::{AuthError, ClusterSecret};
    use super::*;
    use std::net::SocketAddr;

    fn secret(b: u8) -> ClusterSecret {
        ClusterSecret::new(vec![b; 32].into()).unwrap()
    }

    /// A test CA and, signed by it, a broker certificate for 127.0.0.1 (serverAuth and
    /// clientAuth), as the RPC TLS of a broker of that CA.
    fn broker_tls(dir: &std::path::Path, name: &str) -> RpcTls {
        pki(dir, name).0
    }

    /// As [`broker_tls`], and beside it the RPC TLS of a Kafka client's certificate the same
    /// CA signed (clientAuth only); a renewed broker certificate is left in `<name>-renewed.*`.
    fn pki(dir: &std::path::Path, name: &str) -> (RpcTls, RpcTls) {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        };
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, format!("{name} ca"));
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let path = |f: &str| dir.join(format!("{name}-{f}"));
        std::fs::write(path("ca.pem"), ca_cert.pem()).unwrap();
        let leaf = |who: &str, usages: Vec<ExtendedKeyUsagePurpose>| {
            let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
            leaf.distinguished_name
                .push(DnType::CommonName, format!("{name} {who}"));
            leaf.extended_key_usages = usages;
            let key = KeyPair::generate().unwrap();
            let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
            std::fs::write(path(&format!("{who}.pem")), cert.pem()).unwrap();
            std::fs::write(path(&format!("{who}.key")), key.serialize_pem()).unwrap();
            RpcTls::new(&crate::security::tls::TlsSettings {
                cert_file: path(&format!("{who}.pem")),
                key_file: path(&format!("{who}.key")),
                ca_file: Some(path("ca.pem")),
                client_auth: crate::security::tls::ClientAuth::Required,
            })
            .unwrap()
        };
        use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        leaf("renewed", vec![ServerAuth, ClientAuth]);
        (
            leaf("broker", vec![ServerAuth, ClientAuth]),
            leaf("client", vec![ClientAuth]),
        )
    }

    /// A listener on 127.0.0.1 with this TLS that answers one `Propose` with a
    /// `ProposeResult` of the same body, or that fails as listener.rs would (a TLS hello on a
    /// plaintext listener is answered with its refusal); its result is the listener's error.
    async fn tls_listener(
        tls: Option<RpcTls>,
        secret: Option<ClusterSecret>,
    ) -> (
        SocketAddr,
        tokio::task::JoinHandle<Result<Vec<u8>, RpcError>>,
    ) {
        let l = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (s, peer) = l.accept().await.unwrap();
            let peer = peer.to_string();
            let s = accept(s, &peer, tls.as_ref()).await?;
            let mut c = Conn::server(s, peer, secret.as_ref(), 2).await?;
            match c.read().await {
                Ok(Some((Kind::Propose, b))) => {
                    c.write(frame(Kind::ProposeResult, &b)).await?;
                    Ok(b)
                }
                Err(e @ RpcError::TlsHello { .. }) => {
                    c.write(frame(Kind::AuthRefused, REFUSE_NO_TLS.as_bytes()))
                        .await?;
                    c.linger().await;
                    Err(e)
                }
                other => panic!("listener read {other:?}"),
            }
        });
        (addr, task)
    }

    async fn call_as(
        addr: &str,
        tls: Option<&RpcTls>,
        secret: Option<&ClusterSecret>,
    ) -> Result<Vec<u8>, RpcError> {
        let caller = Caller {
            source: None,
            secret,
            tls,
            node: 1,
        };
        let t = std::time::Duration::from_secs(20);
        call(
            addr,
            caller,
            Kind::Propose,
            b"hello",
            Kind::ProposeResult,
            t,
        )
        .await
    }

    #[tokio::test]
    async fn brokers_of_one_ca_carry_frames_over_tls() {
        let dir = tempfile::tempdir().unwrap();
        let tls = broker_tls(dir.path(), "a");
        // Alone, and with a cluster secret as well (both apply).
        for secret in [None, Some(secret(1))] {
            let (addr, l) = tls_listener(Some(tls.clone()), secret.clone()).await;
            let answer = call_as(&addr.to_string(), Some(&tls), secret.as_ref()).await;
            assert_eq!(answer.unwrap(), b"hello");
            assert_eq!(l.await.unwrap().unwrap(), b"hello");
        }
    }

    #[tokio::test]
    async fn a_certificate_of_another_ca_is_refused_on_both_sides() {
        let dir = tempfile::tempdir().unwrap();
        let (ours, theirs) = (broker_tls(dir.path(), "a"), broker_tls(dir.path(), "b"));
        let (addr, l) = tls_listener(Some(ours), None).await;
        let e = call_as(&addr.to_string(), Some(&theirs), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, RpcError::Tls { why, .. } if why.contains("not signed by a CA in this broker's --tls-ca-file")),
            "{e}"
        );
        let e = l.await.unwrap().unwrap_err();
        assert!(
            matches!(&e, RpcError::Tls { why, .. } if why.contains("it refused this broker's certificate")),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_kafka_client_certificate_of_the_same_ca_is_no_broker() {
        let dir = tempfile::tempdir().unwrap();
        let (broker, client) = pki(dir.path(), "a");
        let (addr, l) = tls_listener(Some(broker), None).await;
        let e = call_as(&addr.to_string(), Some(&client), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, RpcError::Tls { why, .. } if why.contains("it refused this broker's certificate")),
            "{e}"
        );
        let e = l.await.unwrap().unwrap_err();
        assert!(
            matches!(&e, RpcError::Tls { why, .. } if why.contains("its client certificate lacks an extended key usage a broker's has")),
            "{e}"
        );
    }

    /// A renewed certificate renamed over the files is presented from a later connection on,
    /// without a restart (as the Kafka listeners' is).
    #[tokio::test]
    async fn a_renewed_certificate_is_served_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let tls = broker_tls(dir.path(), "a");
        let l = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let server = tls.clone();
        tokio::spawn(async move {
            while let Ok((s, peer)) = l.accept().await {
                let _ = accept(s, &peer.to_string(), Some(&server)).await;
            }
        });
        let subject = || async {
            let s = super::super::rpc::connect(&addr, None).await.unwrap();
            let Stream::Tls(s) = tls_connect(s, &addr, &tls).await.unwrap() else {
                panic!("not TLS");
            };
            let tokio_rustls::TlsStream::Client(c) = *s else {
                panic!("not a client stream");
            };
            let leaf = c.get_ref().1.peer_certificates().unwrap()[0].clone();
            let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).unwrap();
            cert.subject().to_string()
        };
        assert_eq!(subject().await, "CN=a broker");
        for ext in ["pem", "key"] {
            let (from, to) = (format!("a-renewed.{ext}"), format!("a-broker.{ext}"));
            std::fs::rename(dir.path().join(from), dir.path().join(to)).unwrap();
        }
        // Certificate files are rechecked at most every two seconds.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while subject().await != "CN=a renewed" {
            assert!(
                std::time::Instant::now() < deadline,
                "the renewed certificate is not served"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    #[tokio::test]
    async fn a_certificate_not_naming_the_dialled_host_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tls = broker_tls(dir.path(), "a");
        let (addr, l) = tls_listener(Some(tls.clone()), None).await;
        // The certificate names 127.0.0.1, not localhost.
        let e = call_as(&format!("localhost:{}", addr.port()), Some(&tls), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, RpcError::Tls { why, .. } if why.contains("does not name localhost")),
            "{e}"
        );
        assert!(matches!(l.await.unwrap(), Err(RpcError::Tls { .. })));
    }

    #[tokio::test]
    async fn a_plaintext_caller_is_refused_and_told_why() {
        let dir = tempfile::tempdir().unwrap();
        let tls = broker_tls(dir.path(), "a");
        // With and without a cluster secret: its first frame differs.
        for secret in [None, Some(secret(1))] {
            let (addr, l) = tls_listener(Some(tls.clone()), secret.clone()).await;
            let e = call_as(&addr.to_string(), None, secret.as_ref())
                .await
                .unwrap_err();
            assert!(
                matches!(&e, RpcError::Auth(AuthError::RefusedBy { reason, .. }) if reason == REFUSE_NEEDS_TLS),
                "{e}"
            );
            let e = l.await.unwrap().unwrap_err();
            assert!(e.to_string().contains("it speaks plaintext"), "{e}");
        }
    }

    #[tokio::test]
    async fn a_tls_caller_of_a_plaintext_listener_is_refused_and_told_why() {
        let dir = tempfile::tempdir().unwrap();
        let tls = broker_tls(dir.path(), "a");
        let (addr, l) = tls_listener(None, None).await;
        let e = call_as(&addr.to_string(), Some(&tls), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, RpcError::Tls { why, .. } if why.contains("it answered in plaintext")),
            "{e}"
        );
        let e = l.await.unwrap().unwrap_err();
        assert!(matches!(e, RpcError::TlsHello { .. }), "{e}");
    }
}
