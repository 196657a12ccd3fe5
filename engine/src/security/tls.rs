//! TLS for the listeners (rustls): the server configuration from PEM files, a certificate
//! that is reloaded when its files change, the client-certificate policy (mTLS) and the
//! principal a client certificate makes (`User:<subject DN, RFC 2253>`, Kafka's default).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};
use x509_parser::asn1_rs::{Any, Tag, ToDer};
use x509_parser::x509::X509Name;

use super::Principal;

/// Whether TLS listeners ask clients for a certificate (Kafka's `ssl.client.auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificate asked for.
    #[default]
    None,
    /// Asked for; a client without one is served as `User:ANONYMOUS`.
    Requested,
    /// A client without a certificate trusted by the CA file is refused in the handshake.
    Required,
}

impl ClientAuth {
    /// Parses `none`, `requested` or `required`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Some(ClientAuth::None),
            "requested" => Some(ClientAuth::Requested),
            "required" => Some(ClientAuth::Required),
            _ => None,
        }
    }
}

/// The operator's TLS files and policy (`--tls-cert-file`, `--tls-key-file`, `--tls-ca-file`,
/// `--tls-client-auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificate chain, leaf first (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CAs trusted for client certificates (PEM); needed unless `client_auth` is `None`.
    pub ca_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

/// Why TLS cannot be set up from the configured files.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {why}", path.display())]
    Pem { path: PathBuf, why: String },
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    #[error("the client certificate CAs: {0}")]
    Verifier(String),
}

/// Rechecked at most this often, on a handshake: a replaced certificate is served within
/// seconds, and handshakes in between cost no file system calls.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(2);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The certificates of a PEM file, in order.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            why: "no CERTIFICATE in the file".into(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        why: format!("no usable private key (PKCS#8, PKCS#1 or SEC1): {e}"),
    })
}

/// The chain and key of `settings`, checked to belong together.
fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = load_certs(cert)?;
    let key = load_key(key)?;
    Ok(CertifiedKey::from_der(chain, key, &provider())?)
}

/// What identifies a file's version: modification time, size and inode (a file replaced by
/// a rename has a new inode even within one mtime tick).
pub(crate) type Stamp = Option<(std::time::SystemTime, u64, u64)>;

pub(crate) fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// The server certificate, reloaded when its files change: checked at most every
/// [`CHECK_EVERY`] on a handshake; a new pair that cannot be loaded (unreadable, not PEM, key
/// not matching) keeps the old certificate and logs an error, once per change.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    check_every: Duration,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    current: Arc<CertifiedKey>,
    stamps: (Stamp, Stamp),
    checked: Instant,
}

impl ReloadingCert {
    /// Loads the pair; fails when it cannot (the broker then does not start).
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let stamps = (stamp(cert), stamp(key));
        let current = Arc::new(certified_key(cert, key)?);
        Ok(ReloadingCert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            check_every: CHECK_EVERY,
            state: Mutex::new(Loaded {
                current,
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// The certificate to present now, reloading it first if its files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut s = self.state.lock();
        if s.checked.elapsed() >= self.check_every {
            s.checked = Instant::now();
            let stamps = (stamp(&self.cert), stamp(&self.key));
            if stamps != s.stamps {
                s.stamps = stamps;
                match certified_key(&self.cert, &self.key) {
                    Ok(k) => {
                        tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                        s.current = Arc::new(k);
                    }
                    Err(e) => tracing::error!(
                        cert = %self.cert.display(),
                        key = %self.key.display(),
                        error = %e,
                        "cannot load the changed TLS certificate; still serving the previous one"
                    ),
                }
            }
        }
        s.current.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A broker presents the same certificate when it calls another over TLS RPC.
impl ResolvesClientCert for ReloadingCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The CAs of a PEM file as a root store.
fn load_roots(ca: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).map_err(|e| TlsError::Pem {
            path: ca.to_path_buf(),
            why: e.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}

/// The RPC listener's check of a caller's certificate: chained to the CA file as any client
/// certificate (clientAuth), and a broker's, with the serverAuth usage too, so that a Kafka
/// client certificate of the same CA (clientAuth only) is no way into the cluster.
#[derive(Debug)]
struct BrokerCertVerifier(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for BrokerCertVerifier {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self.0.verify_client_cert(end_entity, intermediates, now)?;
        let server_auth = x509_parser::parse_x509_certificate(end_entity.as_ref())
            .ok()
            .and_then(|(_, c)| {
                c.extended_key_usage()
                    .ok()
                    .flatten()
                    .map(|e| e.value.server_auth || e.value.any)
            });
        match server_auth {
            Some(true) => Ok(ok),
            _ => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::InvalidPurpose,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The TLS of the inter-broker RPC (`--rpc-tls`): mutual, both ends present the broker's
/// certificate (reloaded when its files change) and require the other's to chain to the CA
/// file (and the caller's to be a broker's: serverAuth as well as clientAuth); a caller also
/// checks that the listener's certificate names the host it dialled.
#[derive(Debug, Clone)]
pub struct RpcTlsConfigs {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
}

impl RpcTlsConfigs {
    pub fn new(settings: &TlsSettings) -> Result<Self, TlsError> {
        let ca = settings.ca_file.as_ref().ok_or_else(|| {
            TlsError::Verifier(
                "--rpc-tls needs --tls-ca-file (the CA broker certificates are checked against)"
                    .into(),
            )
        })?;
        let roots = load_roots(ca)?;
        let cert = Arc::new(ReloadingCert::load(
            &settings.cert_file,
            &settings.key_file,
        )?);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let verifier = Arc::new(BrokerCertVerifier(verifier));
        let versions: &[&rustls::SupportedProtocolVersion] =
            &[&rustls::version::TLS13, &rustls::version::TLS12];
        let server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(cert.clone());
        let client = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)?
            .with_root_certificates(roots)
            .with_client_cert_resolver(cert);
        Ok(RpcTlsConfigs {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

/// The TLS server configurations of one broker: the Kafka listeners' and the HTTP listeners'
/// (ALPN http/1.1), with the same client certificate policy, sharing one reloading
/// certificate.
#[derive(Clone)]
pub struct TlsConfigs {
    pub kafka: Arc<ServerConfig>,
    pub http: Arc<ServerConfig>,
}

impl TlsConfigs {
    pub fn new(settings: &TlsSettings) -> Result<Self, TlsError> {
        let cert = Arc::new(ReloadingCert::load(
            &settings.cert_file,
            &settings.key_file,
        )?);
        let builder = || {
            ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        };
        let verifier = match (settings.client_auth, &settings.ca_file) {
            (ClientAuth::None, _) => None,
            (_, None) => {
                return Err(TlsError::Verifier(
                    "client certificates are asked for, but no CA file is given".into(),
                ))
            }
            (auth, Some(ca)) => {
                let b = WebPkiClientVerifier::builder_with_provider(load_roots(ca)?, provider());
                let b = match auth {
                    ClientAuth::Requested => b.allow_unauthenticated(),
                    _ => b,
                };
                Some(b.build().map_err(|e| TlsError::Verifier(e.to_string()))?)
            }
        };
        let kafka = match verifier.clone() {
            Some(v) => builder()?
                .with_client_cert_verifier(v)
                .with_cert_resolver(cert.clone()),
            None => builder()?
                .with_no_client_auth()
                .with_cert_resolver(cert.clone()),
        };
        // The same client certificate policy: a verified certificate is a principal there too.
        let mut http = match verifier {
            Some(v) => builder()?
                .with_client_cert_verifier(v)
                .with_cert_resolver(cert),
            None => builder()?.with_no_client_auth().with_cert_resolver(cert),
        };
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsConfigs {
            kafka: Arc::new(kafka),
            http: Arc::new(http),
        })
    }
}

/// The principal of a client that presented `chain` (leaf first): `User:<subject DN>`, or
/// `User:ANONYMOUS` without a certificate (client auth `requested`).
pub fn principal(chain: Option<&[CertificateDer<'_>]>) -> Principal {
    chain
        .and_then(|c| c.first())
        .and_then(|leaf| x509_parser::parse_x509_certificate(leaf.as_ref()).ok())
        .map(|(_, cert)| Principal::user(rfc2253(cert.subject())))
        .unwrap_or_else(Principal::anonymous)
}

/// The attribute types RFC 2253 names by keyword; others are written as their OID.
const KEYWORDS: [(&str, &str); 9] = [
    ("2.5.4.3", "CN"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.6", "C"),
    ("2.5.4.9", "STREET"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
];

/// A distinguished name in RFC 2253 form, as Java's `X500Principal.getName()` (which Kafka's
/// default principal builder uses): the most specific RDN first, keywords for the RFC's
/// attribute types, `OID=#hex` (the value's DER) for the others, special characters escaped.
pub fn rfc2253(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type().to_id_string();
                    match KEYWORDS.iter().find(|(o, _)| *o == oid) {
                        Some((_, kw)) => match text(atv.attr_value()) {
                            Some(v) => format!("{kw}={}", escape(&v)),
                            None => format!("{kw}=#{}", der_hex(atv.attr_value())),
                        },
                        None => format!("{oid}=#{}", der_hex(atv.attr_value())),
                    }
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// The value as text, for the string types certificates use.
fn text(v: &Any<'_>) -> Option<String> {
    match v.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString
        | Tag::T61String => std::str::from_utf8(v.data).ok().map(str::to_string),
        Tag::BmpString => {
            let units: Vec<u16> = v
                .data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

fn der_hex(v: &Any<'_>) -> String {
    let der = v.to_der_vec().unwrap_or_default();
    der.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 2253 section 2.4: `,`, `+`, `"`, `\`, `<`, `>`, `;` escaped, and a leading `#` or
/// space and a trailing space.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/security/testdata")
            .join(name)
    }

    fn subject(pem: &str) -> String {
        let certs = load_certs(&testdata(pem)).unwrap();
        principal(Some(&certs)).name
    }

    /// As Java's `X500Principal.getName()`: the most specific RDN first, multi-valued RDNs
    /// joined by `+`, special characters and edge spaces escaped, an attribute without an
    /// RFC 2253 keyword (emailAddress) as its OID and DER value.
    #[test]
    fn subject_dn_in_rfc_2253_form() {
        assert_eq!(
            subject("dn.pem"),
            r"CN=\ alice\+bob\ ,1.2.840.113549.1.9.1=#16066140782e696f,OU=eng+UID=a1,O=Acme\, Inc.,C=US"
        );
        assert_eq!(subject("one.pem"), "CN=one");
        assert_eq!(principal(None), Principal::anonymous());
        assert_eq!(principal(Some(&[])), Principal::anonymous());
    }

    #[test]
    fn escapes_what_rfc_2253_reserves() {
        assert_eq!(escape("#a,b;c<d>e\"f\\"), "\\#a\\,b\\;c\\<d\\>e\\\"f\\\\");
        assert_eq!(escape("a b"), "a b");
        assert_eq!(escape(""), "");
    }

    fn subject_of(k: &CertifiedKey) -> String {
        let (_, c) = x509_parser::parse_x509_certificate(k.cert[0].as_ref()).unwrap();
        c.subject().to_string()
    }

    /// A changed pair is served from the next check on; a bad one keeps the old certificate.
    #[test]
    fn reloads_changed_files_and_keeps_the_old_on_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("c.key"));
        std::fs::copy(testdata("one.pem"), &cert).unwrap();
        std::fs::copy(testdata("one.key"), &key).unwrap();
        let mut r = ReloadingCert::load(&cert, &key).unwrap();
        r.check_every = Duration::ZERO;
        assert_eq!(subject_of(&r.current()), "CN=one");
        // A certificate whose key does not match yet: still the old one.
        let tmp = dir.path().join("new");
        std::fs::copy(testdata("two.pem"), &tmp).unwrap();
        std::fs::rename(&tmp, &cert).unwrap();
        assert_eq!(subject_of(&r.current()), "CN=one");
        std::fs::copy(testdata("two.key"), &tmp).unwrap();
        std::fs::rename(&tmp, &key).unwrap();
        assert_eq!(subject_of(&r.current()), "CN=two");
        std::fs::write(&tmp, "not a certificate").unwrap();
        std::fs::rename(&tmp, &cert).unwrap();
        assert_eq!(subject_of(&r.current()), "CN=two");
        // Loading fails at start on the same bad file.
        assert!(matches!(
            ReloadingCert::load(&cert, &key),
            Err(TlsError::Pem { .. })
        ));
    }

    #[test]
    fn client_certificates_need_a_ca_file() {
        let mut s = TlsSettings {
            cert_file: testdata("one.pem"),
            key_file: testdata("one.key"),
            ca_file: None,
            client_auth: ClientAuth::Required,
        };
        assert!(matches!(TlsConfigs::new(&s), Err(TlsError::Verifier(_))));
        s.ca_file = Some(testdata("two.pem"));
        assert!(TlsConfigs::new(&s).is_ok());
        s.client_auth = ClientAuth::None;
        s.ca_file = None;
        assert!(TlsConfigs::new(&s).is_ok());
    }
}
