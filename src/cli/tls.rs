//! TLS for the CLI's connections (Kafka listeners and https APIs): one rustls client config
//! from `--tls-ca-file` (else the system's roots) and `--tls-cert-file`/`--tls-key-file`,
//! and errors that name the flag to change.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::client::io_reason;
use super::ClientArgs;

/// A connection's byte stream: plain TCP or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The TLS client settings of `args`, or `None` when TLS is off (no --tls and no --tls-*).
pub fn client_config(args: &ClientArgs) -> Result<Option<Arc<ClientConfig>>> {
    let wanted = args.tls
        || args.tls_ca_file.is_some()
        || args.tls_cert_file.is_some()
        || args.tls_key_file.is_some();
    if let Some(pinned) = &args.tls_pinned_cert {
        return Ok(Some(pinned_config(pinned)?));
    }
    if !wanted {
        return Ok(None);
    }
    let mut roots = RootCertStore::empty();
    match &args.tls_ca_file {
        Some(ca) => {
            for cert in load_certs(ca, "--tls-ca-file")? {
                roots.add(cert).map_err(|e| {
                    anyhow!(
                        "--tls-ca-file {}: not a usable CA certificate ({e})",
                        ca.display()
                    )
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                bail!("no system CA certificates found: set --tls-ca-file to the CA that signed the broker's certificate");
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("cannot set up TLS ({e})"))?
        .with_root_certificates(roots);
    let config = match (&args.tls_cert_file, &args.tls_key_file) {
        (Some(cert), Some(key)) => {
            let chain = load_certs(cert, "--tls-cert-file")?;
            let key = load_key(key)?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                anyhow!("--tls-cert-file and --tls-key-file do not go together ({e}): give the key of that certificate")
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => {
            bail!("--tls-cert-file needs --tls-key-file (the certificate's private key)")
        }
        (None, Some(_)) => bail!("--tls-key-file needs --tls-cert-file (the client certificate)"),
    };
    Ok(Some(Arc::new(config)))
}

/// Trusts exactly the leaf certificate of `path` (the broker's own, reread per connection so
/// a reloaded certificate is followed).
fn pinned_config(path: &Path) -> Result<Arc<ClientConfig>> {
    let leaf = load_certs(path, "--tls-cert-file")?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("--tls-cert-file {}: no certificate", path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(Pinned {
        leaf,
        algorithms: provider.signature_verification_algorithms,
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("cannot set up TLS ({e})"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts one certificate, byte for byte; signatures are still checked against its key.
#[derive(Debug)]
struct Pinned {
    leaf: CertificateDer<'static>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.leaf.as_ref() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn load_certs(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>> {
    engine::security::tls::load_certs(path).map_err(|e| anyhow!("{flag}: {e}"))
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| {
        anyhow!(
            "--tls-key-file: cannot read {} ({})",
            path.display(),
            io_reason(&e)
        )
    })?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        anyhow!(
            "--tls-key-file {}: no usable private key (PKCS#8, PKCS#1 or SEC1): {e}",
            path.display()
        )
    })
}

/// The host part of `host:port` (IPv6 without brackets), the name the certificate must hold.
pub fn host_of(addr: &str) -> &str {
    let host = match addr.rfind(':') {
        Some(i) if !addr[i..].contains(']') => &addr[..i],
        _ => addr,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Runs the TLS handshake on `tcp`; `who`/`addr` name the server in errors, and `plain_hint`
/// says what to do when the server does not speak TLS at all.
pub async fn handshake(
    config: &Arc<ClientConfig>,
    tcp: TcpStream,
    addr: &str,
    who: &str,
    plain_hint: &str,
) -> Result<Box<dyn Io>> {
    let host = host_of(addr);
    let name = ServerName::try_from(host.to_string()).map_err(|_| {
        anyhow!("'{host}' is not a host name or IP address TLS can check: fix the address of {who}")
    })?;
    let connector = TlsConnector::from(config.clone());
    match tokio::time::timeout(super::client::REQUEST_TIMEOUT, connector.connect(name, tcp)).await {
        Err(_) => bail!(
            "no TLS handshake with {who} at {addr} within {} s: {plain_hint}",
            super::client::REQUEST_TIMEOUT.as_secs()
        ),
        Ok(Ok(s)) => Ok(Box::new(s)),
        Ok(Err(e)) => Err(handshake_error(&e, addr, who, plain_hint)),
    }
}

/// One line for a failed handshake, naming the flag that fixes it.
fn handshake_error(e: &std::io::Error, addr: &str, who: &str, plain_hint: &str) -> anyhow::Error {
    let host = host_of(addr);
    match tls_error(e) {
        Some(rustls::Error::InvalidCertificate(c)) => match c {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => anyhow!(
                "the certificate of {who} at {addr} is not signed by a trusted CA: set --tls-ca-file to the CA that signed it"
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => anyhow!(
                "the certificate of {who} at {addr} is not valid for '{host}': connect with a name or address in its subject alternative names"
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => anyhow!(
                "the certificate of {who} at {addr} has expired: renew the broker's certificate"
            ),
            other => anyhow!(
                "the certificate of {who} at {addr} is not accepted ({other:?}): check --tls-ca-file and the broker's certificate"
            ),
        },
        Some(rustls::Error::InvalidMessage(_)) | Some(rustls::Error::InappropriateMessage { .. }) => {
            anyhow!("{who} at {addr} did not answer the TLS handshake with TLS: {plain_hint}")
        }
        Some(rustls::Error::AlertReceived(a)) => anyhow!(
            "{who} at {addr} refused the TLS handshake ({a:?}){}",
            alert_hint(*a)
        ),
        Some(other) => anyhow!("TLS handshake with {who} at {addr} failed ({other}): check --tls-ca-file"),
        None => anyhow!(
            "TLS handshake with {who} at {addr} failed ({}): {plain_hint}",
            io_reason(e)
        ),
    }
}

/// The rustls error inside an I/O error from a TLS stream, if it is one.
pub fn tls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

fn alert_hint(a: rustls::AlertDescription) -> &'static str {
    use rustls::AlertDescription::*;
    match a {
        CertificateRequired | HandshakeFailure | BadCertificate => {
            ": the listener may require a client certificate; set --tls-cert-file and --tls-key-file"
        }
        UnknownCA | CertificateUnknown => {
            ": the broker does not trust the client certificate; use one signed by a CA in its --tls-ca-file"
        }
        _ => "",
    }
}

/// A hint for an I/O error on an established TLS stream (a TLS 1.3 server refuses a missing
/// or untrusted client certificate only after the handshake, on the first read).
pub fn stream_hint(e: &std::io::Error) -> Option<String> {
    match tls_error(e)? {
        rustls::Error::AlertReceived(a) => {
            Some(format!("the broker sent TLS alert {a:?}{}", alert_hint(*a)))
        }
        other => Some(format!("TLS error: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("engine/src/security/testdata")
            .join(name)
    }

    /// A TLS server on loopback presenting `one.pem`; answers "ok" once per connection.
    async fn server() -> String {
        use tokio::io::AsyncWriteExt;
        let chain = load_certs(&testdata("one.pem"), "test").unwrap();
        let key = load_key(&testdata("one.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if let Ok(mut s) = acceptor.accept(tcp).await {
                    let _ = s.write_all(b"ok").await;
                    let _ = s.shutdown().await;
                }
            }
        });
        addr
    }

    async fn connect(args: &ClientArgs, addr: &str) -> Result<Box<dyn Io>> {
        let config = client_config(args)?.expect("tls on");
        let tcp = TcpStream::connect(addr).await?;
        handshake(&config, tcp, addr, "broker", "drop --tls").await
    }

    #[tokio::test]
    async fn pinned_certificate_is_the_only_one_trusted() {
        let addr = server().await;
        let pinned = |file: &str| ClientArgs {
            tls_pinned_cert: Some(testdata(file)),
            ..ClientArgs::defaults()
        };
        connect(&pinned("one.pem"), &addr)
            .await
            .expect("its own certificate");
        let e = connect(&pinned("two.pem"), &addr)
            .await
            .err()
            .expect("another certificate");
        assert!(e.to_string().contains("not signed by a trusted CA"), "{e}");
        // Without the CA (none signs one.pem among the system roots): the flag is named.
        let e = connect(
            &ClientArgs {
                tls: true,
                tls_ca_file: Some(testdata("two.pem")),
                ..ClientArgs::defaults()
            },
            &addr,
        )
        .await
        .err()
        .expect("untrusted");
        assert!(e.to_string().contains("--tls-ca-file"), "{e}");
    }

    #[test]
    fn tls_is_off_unless_asked_and_files_must_pair() {
        assert!(client_config(&ClientArgs::defaults()).unwrap().is_none());
        let half = ClientArgs {
            tls_cert_file: Some(testdata("one.pem")),
            ..ClientArgs::defaults()
        };
        let e = client_config(&half).expect_err("no key");
        assert!(e.to_string().contains("--tls-key-file"), "{e}");
        let mismatched = ClientArgs {
            tls_ca_file: Some(testdata("one.pem")),
            tls_cert_file: Some(testdata("one.pem")),
            tls_key_file: Some(testdata("two.key")),
            ..ClientArgs::defaults()
        };
        let e = client_config(&mismatched).expect_err("wrong key");
        assert!(e.to_string().contains("do not go together"), "{e}");
    }

    #[test]
    fn hosts() {
        assert_eq!(host_of("127.0.0.1:9092"), "127.0.0.1");
        assert_eq!(host_of("[::1]:9092"), "::1");
        assert_eq!(host_of("localhost:1"), "localhost");
        assert_eq!(host_of("example.com"), "example.com");
    }
}
