//! A small Kafka client: one TCP connection per broker (TLS and SASL when the flags ask for
//! them, on every connection), version negotiation through ApiVersions, and typed
//! request/response round trips with the `kafka-protocol` codecs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::errors::{code_detail, hint, one_line};
use super::sasl::Credentials;
use super::tls::Io;
use super::ClientArgs;

/// Time allowed for connecting and for each request/response round trip.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response frame we accept (a fetch answer is bounded by the max_bytes we ask for).
const MAX_FRAME: usize = 256 * 1024 * 1024;
const CLIENT_ID: &str = "icestream-cli";

/// The name of an API key for messages, e.g. `Metadata`.
pub fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(k) => format!("{k:?}"),
        Err(()) => format!("API {key}"),
    }
}

/// Versions this CLI is willing to speak, per API: the crate's range, narrowed where the
/// CLI relies on a wire shape (topic names in Fetch, `None` = all topics in Metadata...).
fn client_range<R: Request>() -> (i16, i16) {
    let v = R::VERSIONS;
    let (min, max) = match ApiKey::try_from(R::KEY) {
        Ok(ApiKey::Produce) => (v.min.max(3), v.max.min(12)),
        Ok(ApiKey::Fetch) => (v.min.max(4), v.max.min(12)),
        Ok(ApiKey::Metadata) => (v.min.max(1), v.max.min(12)),
        Ok(ApiKey::ListOffsets) => (v.min.max(1), v.max.min(9)),
        _ => (v.min, v.max),
    };
    (min, max)
}

/// How to reach the brokers: TLS settings and SASL credentials (both optional), from the
/// client flags; used for every connection a [`Client`] opens.
#[derive(Clone, Default, Debug)]
pub struct Security {
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub sasl: Option<Credentials>,
}

impl Security {
    /// `--tls*`, `--sasl-mechanism`, `--user` and `--password`.
    pub fn from_args(args: &ClientArgs) -> Result<Self> {
        Ok(Security {
            tls: super::tls::client_config(args)?,
            sasl: super::sasl::credentials(args)?,
        })
    }
}

/// One connection to one broker.
pub struct Connection {
    addr: String,
    stream: Box<dyn Io>,
    correlation_id: i32,
    versions: HashMap<i16, (i16, i16)>,
    tls: bool,
    sasl: Option<Credentials>,
    /// When to re-authenticate (KIP-368): before the broker's SASL session lifetime ends, or
    /// the broker closes the connection (a `topic consume` that follows runs for hours).
    reauth_at: Option<std::time::Instant>,
    /// Whether a request past ApiVersions was answered (a SASL listener closes the
    /// connection on the first one of an unauthenticated client).
    served: bool,
}

impl Connection {
    /// Connects, negotiates API versions and authenticates. `what_to_do` ends the error
    /// line when the broker cannot be reached.
    pub async fn open(
        addr: &str,
        who: &str,
        what_to_do: &str,
        security: &Security,
    ) -> Result<Self> {
        let stream = match tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(addr)).await {
            Err(_) => bail!(
                "cannot reach {who} at {addr} (no answer within {} s): {what_to_do}",
                REQUEST_TIMEOUT.as_secs()
            ),
            Ok(Err(e)) => bail!(
                "cannot reach {who} at {addr} ({}): {what_to_do}",
                io_reason(&e)
            ),
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        let stream: Box<dyn Io> = match &security.tls {
            Some(config) => {
                super::tls::handshake(
                    config,
                    stream,
                    addr,
                    who,
                    "is it a PLAINTEXT or SASL_PLAINTEXT listener? drop --tls",
                )
                .await?
            }
            None => Box::new(stream),
        };
        let mut conn = Connection {
            addr: addr.to_string(),
            stream,
            correlation_id: 0,
            versions: HashMap::new(),
            tls: security.tls.is_some(),
            sasl: security.sasl.clone(),
            reauth_at: None,
            served: false,
        };
        conn.negotiate().await?;
        conn.authenticate().await?;
        Ok(conn)
    }

    /// SASL authentication (again, when re-authenticating), if the flags ask for it.
    async fn authenticate(&mut self) -> Result<()> {
        let Some(creds) = self.sasl.clone() else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let lifetime_ms = super::sasl::authenticate(self, &creds).await?;
        // Kafka's clients re-authenticate at 85-95% of the lifetime; 85% leaves room for a
        // long poll in flight.
        self.reauth_at = u64::try_from(lifetime_ms)
            .ok()
            .filter(|ms| *ms > 0)
            .map(|ms| started + Duration::from_millis(ms * 85 / 100));
        Ok(())
    }

    async fn reauthenticate_if_due(&mut self) -> Result<()> {
        match self.reauth_at {
            Some(at) if std::time::Instant::now() >= at => self.authenticate().await,
            _ => Ok(()),
        }
    }

    /// The `host:port` this connection reached.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// ApiVersions v3, falling back to v0 when the broker answers UNSUPPORTED_VERSION (it
    /// then answers in the v0 shape) or with a body v3 cannot decode.
    async fn negotiate(&mut self) -> Result<()> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let body = self.round_trip(&req, 3).await?;
        let resp = match ApiVersionsResponse::decode(&mut body.clone(), 3) {
            Ok(r) if r.error_code == 0 => r,
            _ => {
                let body = self.round_trip(&ApiVersionsRequest::default(), 0).await?;
                let resp = ApiVersionsResponse::decode(&mut body.clone(), 0)
                    .map_err(|e| self.decode_error(ApiKey::ApiVersions as i16, 0, &e))?;
                if resp.error_code != 0 {
                    bail!(
                        "broker at {} refused ApiVersions ({}): {}",
                        self.addr,
                        code_detail(resp.error_code, None),
                        hint(resp.error_code)
                    );
                }
                resp
            }
        };
        self.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(())
    }

    /// Whether the broker advertises this API at a version the CLI speaks.
    pub fn supports<R: Request>(&self) -> bool {
        self.version::<R>().is_ok()
    }

    /// The highest version of `R` both sides support.
    pub fn version<R: Request>(&self) -> Result<i16> {
        let (cmin, cmax) = client_range::<R>();
        let name = api_name(R::KEY);
        let Some(&(bmin, bmax)) = self.versions.get(&R::KEY) else {
            bail!(
                "the broker at {} does not support {name}: upgrade the broker",
                self.addr
            );
        };
        let (lo, hi) = (cmin.max(bmin), cmax.min(bmax));
        if lo > hi {
            bail!(
                "the broker at {} speaks {name} v{bmin}-{bmax} and this CLI v{cmin}-{cmax}: upgrade the older one",
                self.addr
            );
        }
        Ok(hi)
    }

    /// Sends `req` at the negotiated version and decodes the answer.
    pub async fn send<R: Request>(&mut self, req: &R) -> Result<R::Response> {
        let version = self.version::<R>()?;
        self.send_at(req, version).await
    }

    /// Sends `req` at `version` (from [`Connection::version`]) and decodes the answer.
    pub async fn send_at<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        self.reauthenticate_if_due().await?;
        self.exchange(req, version).await
    }

    /// [`Connection::send`] without re-authenticating first: for the SASL requests.
    pub(crate) async fn exchange_negotiated<R: Request>(&mut self, req: &R) -> Result<R::Response> {
        let version = self.version::<R>()?;
        self.exchange(req, version).await
    }

    async fn exchange<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        let mut body = self.round_trip(req, version).await?;
        let resp = R::Response::decode(&mut body, version)
            .map_err(|e| self.decode_error(R::KEY, version, &e))?;
        Ok(resp)
    }

    /// Sends a request the broker does not answer (Produce with acks=0).
    pub async fn send_oneway<R: Request>(&mut self, req: &R, version: i16) -> Result<()> {
        self.reauthenticate_if_due().await?;
        let frame = self.frame(req, version)?;
        self.write_frame(R::KEY, &frame).await
    }

    fn frame<R: Request>(&mut self, req: &R, version: i16) -> Result<BytesMut> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0);
        let name = api_name(R::KEY);
        header
            .encode(&mut buf, R::header_version(version))
            .and_then(|_| req.encode(&mut buf, version))
            .map_err(|e| anyhow!("cannot encode the {name} v{version} request ({e}): check the command's arguments"))?;
        let len = i32::try_from(buf.len() - 4).map_err(|_| {
            anyhow!("the {name} request is too large to send: send less data at once")
        })?;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        Ok(buf)
    }

    async fn write_frame(&mut self, key: i16, frame: &[u8]) -> Result<()> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.stream.write_all(frame)).await {
            Err(_) => Err(self.timeout_error(key)),
            Ok(Err(e)) => Err(self.lost_error(key, &e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Writes one request frame and returns the response body after its header.
    async fn round_trip<R: Request>(&mut self, req: &R, version: i16) -> Result<Bytes> {
        let frame = self.frame(req, version)?;
        self.write_frame(R::KEY, &frame).await?;
        let mut body =
            match tokio::time::timeout(REQUEST_TIMEOUT, read_frame(&mut self.stream)).await {
                Err(_) => return Err(self.timeout_error(R::KEY)),
                Ok(Err(e)) => return Err(self.lost_error(R::KEY, &e)),
                Ok(Ok(b)) => b,
            };
        if R::KEY != ApiKey::ApiVersions as i16 {
            self.served = true;
        }
        let header_version = <R::Response as HeaderVersion>::header_version(version);
        let header = ResponseHeader::decode(&mut body, header_version)
            .map_err(|e| self.decode_error(R::KEY, version, &e))?;
        if header.correlation_id != self.correlation_id {
            bail!(
                "the broker at {} answered {} with correlation id {} instead of {}: check the broker log",
                self.addr,
                api_name(R::KEY),
                header.correlation_id,
                self.correlation_id
            );
        }
        Ok(body)
    }

    fn timeout_error(&self, key: i16) -> anyhow::Error {
        anyhow!(
            "the broker at {} did not answer {} within {} s: check 'icestream cluster health' and the broker log",
            self.addr,
            api_name(key),
            REQUEST_TIMEOUT.as_secs()
        )
    }

    fn lost_error(&self, key: i16, e: &std::io::Error) -> anyhow::Error {
        if let Some(tls) = super::tls::stream_hint(e) {
            return anyhow!(
                "lost the connection to the broker at {} during {} ({tls})",
                self.addr,
                api_name(key)
            );
        }
        let closed = matches!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
        );
        let tls_record = e.kind() == std::io::ErrorKind::InvalidData && e.to_string() == TLS_RECORD;
        if (closed || tls_record) && !self.tls && key == ApiKey::ApiVersions as i16 {
            return anyhow!(
                "the broker at {} {} during ApiVersions: is it a TLS listener? add --tls (and --tls-ca-file)",
                self.addr,
                if tls_record {
                    "answered with TLS"
                } else {
                    "closed the connection"
                }
            );
        }
        if closed && self.sasl.is_none() && !self.served {
            return anyhow!(
                "the broker at {} closed the connection during {}: is it a SASL listener? set --sasl-mechanism, --user and --password",
                self.addr,
                api_name(key)
            );
        }
        anyhow!(
            "lost the connection to the broker at {} during {} ({}): check the broker log and retry",
            self.addr,
            api_name(key),
            io_reason(e)
        )
    }

    fn decode_error(&self, key: i16, version: i16, e: &anyhow::Error) -> anyhow::Error {
        anyhow!(
            "cannot decode the {} v{version} answer from {} ({}): the broker sent a malformed response; check its version and log",
            api_name(key),
            self.addr,
            one_line(&e.to_string())
        )
    }
}

/// The error text of a TLS record where a Kafka response was expected.
const TLS_RECORD: &str = "the broker answered with TLS";

async fn read_frame<S: AsyncRead + Unpin + ?Sized>(stream: &mut S) -> std::io::Result<Bytes> {
    let len = stream.read_i32().await?;
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= MAX_FRAME)
        .ok_or_else(|| {
            // A TLS listener answers a plaintext request with a TLS alert or handshake record
            // (content type 0x15/0x16, version 0x03xx), read here as a huge length.
            let [kind, major, ..] = len.to_be_bytes();
            let why = if matches!(kind, 0x15 | 0x16) && major == 0x03 {
                TLS_RECORD.to_string()
            } else {
                format!("response frame of {len} bytes")
            };
            std::io::Error::new(std::io::ErrorKind::InvalidData, why)
        })?;
    // Grow as bytes arrive rather than trusting the length prefix with one allocation.
    let mut body = Vec::new();
    (&mut *stream)
        .take(len as u64)
        .read_to_end(&mut body)
        .await?;
    if body.len() != len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Bytes::from(body))
}

/// A short reason for an I/O error, e.g. `connection refused`.
pub fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset".into(),
        ConnectionAborted => "connection aborted".into(),
        UnexpectedEof => "the broker closed the connection".into(),
        BrokenPipe => "the broker closed the connection".into(),
        TimedOut => "timed out".into(),
        _ => one_line(&e.to_string()),
    }
}

/// Connections to the cluster: the bootstrap broker plus, on demand, partition leaders.
pub struct Client {
    boot: Connection,
    conns: HashMap<String, Connection>,
    nodes: HashMap<i32, String>,
    security: Security,
}

const BOOTSTRAP_HINT: &str = "is 'icestream serve' running? set --brokers";

impl Client {
    /// Connects to the first reachable address of `--brokers`, with the TLS and SASL
    /// settings of `args`.
    pub async fn connect(args: &ClientArgs) -> Result<Self> {
        Self::connect_to(&args.brokers, Security::from_args(args)?).await
    }

    /// Connects to the first reachable address of the comma-separated `brokers`.
    pub async fn connect_to(brokers: &str, security: Security) -> Result<Self> {
        let addrs: Vec<&str> = brokers
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .collect();
        if addrs.is_empty() {
            bail!("no broker address given: set --brokers host:port");
        }
        let mut last = None;
        for addr in addrs {
            match Connection::open(addr, "broker", BOOTSTRAP_HINT, &security).await {
                Ok(boot) => {
                    return Ok(Client {
                        boot,
                        conns: HashMap::new(),
                        nodes: HashMap::new(),
                        security,
                    })
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no broker address given: set --brokers host:port")))
    }

    /// The bootstrap connection, for requests any broker can answer.
    pub fn any(&mut self) -> &mut Connection {
        &mut self.boot
    }

    /// The connection to broker `node`, opened on first use.
    pub async fn node(&mut self, node: i32) -> Result<&mut Connection> {
        if !self.nodes.contains_key(&node) {
            self.metadata(Some(&[])).await?;
        }
        let Some(addr) = self.nodes.get(&node).cloned() else {
            bail!(
                "broker {node} is not in the cluster metadata: it may be down; check 'icestream cluster info'"
            );
        };
        if addr == self.boot.addr {
            return Ok(&mut self.boot);
        }
        if !self.conns.contains_key(&addr) {
            let who = format!("broker {node}");
            match Connection::open(
                &addr,
                &who,
                "the cluster advertises this address; check the broker's advertised listener",
                &self.security,
            )
            .await
            {
                Ok(conn) => {
                    self.conns.insert(addr.clone(), conn);
                }
                // A single broker that advertises an address we cannot use (0.0.0.0, a
                // container name...) is still the one we bootstrapped from.
                Err(_) if self.nodes.len() == 1 => return Ok(self.any()),
                Err(e) => return Err(e),
            }
        }
        self.conns
            .get_mut(&addr)
            .ok_or_else(|| anyhow!("internal error: no connection to {addr}: retry"))
    }

    /// Metadata for `topics` (`None`: all topics), remembering broker addresses.
    pub async fn metadata(&mut self, topics: Option<&[String]>) -> Result<MetadataResponse> {
        let req = MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                    })
                    .collect()
            }));
        let resp = self.any().send(&req).await?;
        self.nodes = resp
            .brokers
            .iter()
            .map(|b| {
                (
                    b.node_id.0,
                    format!("{}:{}", host_for_connect(&b.host), b.port),
                )
            })
            .collect();
        Ok(resp)
    }
}

/// Wraps IPv6 literals in brackets so `host:port` parses.
fn host_for_connect(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Reads a string from the wire for display.
pub fn text(s: &StrBytes) -> String {
    s.as_str().to_string()
}
