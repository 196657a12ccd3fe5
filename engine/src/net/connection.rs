//! One client connection: frames in, requests decoded by `kafka-protocol`, handlers run
//! concurrently (up to a bound), responses written back in request order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::stream::{FuturesOrdered, StreamExt};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::AsyncRead;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::server::TlsStream;

use super::frame::{FrameError, FrameReader};
use super::outgoing::{self, Frame, FrameSink};
use super::throttle::{self, ConnQuotas, Timed};
use crate::broker::Broker;
use crate::handlers::{self, Handled};
use crate::limits::fetch_memory::{ConnFetchMemory, Reservation};
use crate::log::file_slice::FileSlice;
use crate::metrics::{ApiLabels, ErrorLabels};
use crate::security::{Principal, Session};

/// Requests handled concurrently per connection; Kafka clients pipeline up to 5 by default.
const MAX_IN_FLIGHT: usize = 32;

/// Kafka's `connection.failed.authentication.delay.ms` default.
const FAILED_AUTHENTICATION_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// Why a connection is closed instead of answered, as Kafka brokers do for these cases.
#[derive(Debug, thiserror::Error)]
pub enum Reject {
    #[error("request frame of {0} bytes is too short for a request header")]
    ShortFrame(usize),
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    #[error("{api:?} v{version} is not supported")]
    UnsupportedVersion { api: ApiKey, version: i16 },
    #[error("cannot decode {api:?} v{version}: {reason}")]
    Malformed {
        api: ApiKey,
        version: i16,
        reason: String,
    },
}

/// Serves a plaintext connection to listener `listener`: anonymous until it authenticates
/// (with SASL, when `sasl`).
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    listener: Arc<str>,
    sasl: bool,
) {
    let session = Session::new(Principal::anonymous(), peer.ip(), listener);
    // tokio's own split of a TCP stream: no lock between the read and write halves.
    let (rd, wr) = stream.into_split();
    serve_io(rd, wr, peer, broker, session, sasl).await
}

/// Serves a connection whose TLS handshake is done: a client certificate (mTLS) makes its
/// principal `User:<subject DN>`.
pub async fn serve_tls(
    stream: TlsStream<TcpStream>,
    peer: SocketAddr,
    broker: Arc<Broker>,
    listener: Arc<str>,
    sasl: bool,
) {
    let principal = crate::security::tls::principal(stream.get_ref().1.peer_certificates());
    let session = Session::new(principal, peer.ip(), listener);
    let (rd, wr) = tokio::io::split(stream);
    serve_io(rd, wr, peer, broker, session, sasl).await
}

/// The connection loop, over either stream's halves.
async fn serve_io<R, W>(
    mut rd: R,
    mut wr: W,
    peer: SocketAddr,
    broker: Arc<Broker>,
    session: Session,
    sasl: bool,
) where
    R: AsyncRead + Unpin,
    W: FrameSink,
{
    broker.metrics.connections.inc();
    let mut frames = FrameReader::new(broker.config.max_request_bytes);
    let mut fetches = ConnFetches {
        memory: broker.fetch_memory.connection(),
        previous: None,
        in_place: W::IN_PLACE,
    };
    let stall = broker.config.write_stall_timeout;
    let mut pending = FuturesOrdered::new();
    // Bytes of the requests being handled, in request order: reading pauses while they exceed
    // one maximal request, so a connection never buffers more than about twice that.
    let mut pending_sizes = std::collections::VecDeque::new();
    let mut pending_bytes = 0usize;
    let byte_budget = broker.config.max_request_bytes;
    // Who this connection is: on a SASL listener, anonymous until it authenticates.
    let mut auth = ConnAuth {
        session: Arc::new(session),
        sasl: sasl.then(|| super::sasl::SaslConn::new(broker.config.sasl.clone())),
        closing: false,
    };
    // Client quotas: a throttled connection reads nothing until its throttle has passed.
    let mut quotas = ConnQuotas::default();
    let mut eof = false;
    let outcome: Result<(), String> = 'conn: loop {
        while !auth.closing
            && pending.len() < MAX_IN_FLIGHT
            && pending_bytes < byte_budget
            && !quotas.muted()
        {
            match frames.try_frame() {
                Ok(Some(frame)) => {
                    let size = frame.len();
                    match start_request(&broker, &mut auth, &mut fetches, &mut quotas, frame) {
                        Ok(fut) => {
                            pending.push_back(fut);
                            pending_sizes.push_back(size);
                            pending_bytes += size;
                        }
                        Err(Refusal::Reject(reject)) => break 'conn Err(reject.to_string()),
                        Err(Refusal::Close(why)) => {
                            tracing::info!(%peer, reason = %why, "closing Kafka connection");
                            break 'conn Ok(());
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => break 'conn Err(e.to_string()),
            }
        }
        if eof && pending.is_empty() {
            break Ok(());
        }
        // A refused authentication closes the connection once its answer is written, after
        // Kafka's connection.failed.authentication.delay.ms: the client reads the answer
        // before the close, and a password guesser is slowed down.
        if auth.closing && pending.is_empty() {
            tokio::time::sleep(FAILED_AUTHENTICATION_DELAY).await;
            break Ok(());
        }
        let reading = !eof
            && !auth.closing
            && pending.len() < MAX_IN_FLIGHT
            && pending_bytes < byte_budget
            && !quotas.muted();
        let unmuted = quotas.until();
        tokio::select! {
            r = frames.fill(&mut rd), if reading => match r {
                Ok(true) => {}
                Ok(false) => eof = true,
                // The peer went away: ordinary, not bad input.
                Err(FrameError::Io(e)) => {
                    tracing::debug!(%peer, error = %e, "Kafka connection read failed");
                    break Ok(());
                }
                Err(e) => break Err(e.to_string()),
            },
            Some(resp) = pending.next(), if !pending.is_empty() => {
                pending_bytes -= pending_sizes.pop_front().unwrap_or(0);
                match resp {
                    Ok(Some(out)) => {
                        if let Err(e) = outgoing::write_frame(&mut wr, &out.frame, stall).await {
                            tracing::debug!(%peer, error = %e, "Kafka connection write failed");
                            break Ok(());
                        }
                        // Muted from when the client has the response (KIP-219).
                        quotas.mute(out.throttle);
                        // Written: the fetch memory it held is free again.
                        drop(out);
                    }
                    Ok(None) => {}
                    // A response we cannot encode must not leave the client waiting forever.
                    Err(e) => break Err(e),
                }
            }
            // The throttle has passed: read again. (Lazy: no timer unless muted.)
            _ = async move {
                if let Some(t) = unmuted {
                    tokio::time::sleep_until(t).await
                }
            }, if unmuted.is_some() => {}
        }
    };
    if let Err(why) = outcome {
        tracing::info!(%peer, reason = %why, "closing Kafka connection on bad input");
        broker.metrics.connections_closed_bad_input.inc();
    }
    drop(pending);
    broker.metrics.connections.dec();
}

/// Who a connection is, and its SASL exchange on a SASL listener.
struct ConnAuth {
    session: Arc<crate::security::Session>,
    sasl: Option<super::sasl::SaslConn>,
    /// No more requests are read: the connection closes once the answers queued are written.
    closing: bool,
}

/// Why a frame closes the connection.
enum Refusal {
    /// Bad input (counted in `kafka_connections_closed_bad_input`).
    Reject(Reject),
    /// A request the connection may not make now (before SASL authentication, or after its
    /// session expired), or a raw SASL token that failed.
    Close(String),
}

impl From<Reject> for Refusal {
    fn from(r: Reject) -> Self {
        Refusal::Reject(r)
    }
}

/// Resolves to the encoded response frame, `None` when the request gets no response (acks=0),
/// or an error that closes the connection.
type ResponseFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<Outgoing>, String>>>>;

/// An encoded response, what a Fetch holds until it is written, and the throttle the client
/// earned (quotas).
struct Outgoing {
    frame: Frame,
    _fetch: FetchHold,
    throttle: std::time::Duration,
}

/// The Fetch requests of one connection: its memory budget, and when the previous fetch's
/// response was written. Fetches are answered one at a time, in request order, each keeping its
/// memory until written (Kafka answers one request per connection at a time): a later fetch
/// then never holds memory an earlier one waits for, which would deadlock the connection.
struct ConnFetches {
    memory: ConnFetchMemory,
    previous: Option<oneshot::Receiver<()>>,
    /// Records are answered as file slices, sent with sendfile (plaintext connections).
    in_place: bool,
}

/// Dropped once the response is written: frees its memory and lets the next fetch start.
#[derive(Default)]
struct FetchHold {
    _memory: Option<Reservation>,
    _written: Option<oneshot::Sender<()>>,
    /// The file slices whose placeholders stand in the response, in order.
    files: Vec<FileSlice>,
}

/// A request frame after decoding.
#[derive(Debug)]
pub enum Decoded {
    Request {
        api: ApiKey,
        version: i16,
        header: Box<RequestHeader>,
        body: Box<RequestKind>,
    },
    /// An ApiVersions request of a version we do not know: Kafka answers it in v0 format with
    /// the versions it supports, so the client can retry with one of them.
    UnsupportedApiVersions { correlation_id: i32 },
}

/// Decodes one request frame (without its length prefix) with `kafka-protocol`, rejecting
/// unknown APIs and versions the broker does not serve before looking at the body.
/// Never panics, whatever the bytes (fuzzed by `fuzz/fuzz_targets/request.rs`).
pub fn decode_request(mut frame: Bytes) -> Result<Decoded, Reject> {
    if frame.len() < 8 {
        return Err(Reject::ShortFrame(frame.len()));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api = ApiKey::try_from(key).map_err(|_| Reject::UnknownApi(key))?;
    if !handlers::supports(api, version) {
        if api == ApiKey::ApiVersions {
            return Ok(Decoded::UnsupportedApiVersions { correlation_id });
        }
        return Err(Reject::UnsupportedVersion { api, version });
    }
    let malformed = |reason: String| Reject::Malformed {
        api,
        version,
        reason,
    };
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
        .map_err(|e| malformed(e.to_string()))?;
    let body =
        RequestKind::decode(api, &mut frame, version).map_err(|e| malformed(format!("{e:#}")))?;
    Ok(Decoded::Request {
        api,
        version,
        header: Box::new(header),
        body: Box::new(body),
    })
}

/// Decodes a frame and starts its handler. The handler's synchronous part (for Produce:
/// handing batches to partitions) runs now, so writes keep the order requests arrived in.
fn start_request(
    broker: &Arc<Broker>,
    auth: &mut ConnAuth,
    fetches: &mut ConnFetches,
    quotas: &mut ConnQuotas,
    frame: Bytes,
) -> Result<ResponseFuture, Refusal> {
    let size = frame.len();
    if let Some(sasl) = auth.sasl.as_mut().filter(|s| s.expects_raw_token()) {
        // After a v0 SaslHandshake the tokens come as raw frames, answered as raw frames.
        let (bytes, session) = sasl
            .raw_token(
                &frame,
                &broker.security.state(),
                &auth.session,
                &broker.metrics,
            )
            .map_err(Refusal::Close)?;
        if let Some(s) = session {
            auth.session = s;
        }
        let mut out = BytesMut::with_capacity(4 + bytes.len());
        out.put_i32(bytes.len() as i32);
        out.put_slice(&bytes);
        let out = Outgoing {
            frame: out.freeze().into(),
            _fetch: FetchHold::default(),
            throttle: std::time::Duration::ZERO,
        };
        return Ok(Box::pin(async move { Ok(Some(out)) }));
    }
    let (api, version, header, request) = match decode_request(frame)? {
        Decoded::Request {
            api,
            version,
            header,
            body,
        } => (api, version, *header, *body),
        Decoded::UnsupportedApiVersions { correlation_id } => {
            let resp = handlers::api_versions::unsupported();
            let bytes = encode(correlation_id, 0, &ResponseKind::ApiVersions(resp), 0);
            return Ok(Box::pin(async move {
                bytes.map(|bytes| {
                    Some(Outgoing {
                        frame: bytes.into(),
                        _fetch: FetchHold::default(),
                        throttle: std::time::Duration::ZERO,
                    })
                })
            }));
        }
    };
    if let Some(sasl) = &auth.sasl {
        if let super::sasl::Verdict::Close(why) = sasl.admit(api) {
            return Err(Refusal::Close(why));
        }
    }
    let correlation_id = header.correlation_id;
    let started = Instant::now();
    let mut request = request;
    let (limits, earlier) = quotas.begin(broker, &auth.session, &header, &mut request, size);
    // Fetch is answered after the previous one was written, within this connection's memory
    // budget, which it holds until written.
    type Answer = std::pin::Pin<Box<dyn std::future::Future<Output = (Handled, FetchHold)>>>;
    let handled: Answer = match request {
        RequestKind::Fetch(r) => {
            let (b, m, s) = (broker.clone(), fetches.memory.clone(), auth.session.clone());
            let in_place = fetches.in_place;
            let (written, next) = oneshot::channel();
            let previous = fetches.previous.replace(next);
            Box::pin(async move {
                if let Some(p) = previous {
                    // Resolves (with an error) once the previous response's hold is dropped.
                    let _ = p.await;
                }
                let answer = handlers::fetch::handle(&b, &s, version, r, &m, in_place).await;
                let handled = Handled {
                    response: Some(ResponseKind::Fetch(answer.response)),
                    errors: Vec::new(),
                };
                let hold = FetchHold {
                    _memory: answer.memory,
                    _written: Some(written),
                    files: answer.files,
                };
                (handled, hold)
            })
        }
        // SASL changes the connection's state, so it is answered here, at once: the requests
        // after it are served as the principal it authenticated.
        RequestKind::SaslHandshake(r) if auth.sasl.is_some() => {
            let sasl = auth.sasl.as_mut().expect("checked");
            let a = sasl.handshake(version, &r);
            auth.closing |= a.close;
            let handled = Handled {
                errors: error_codes(a.response.error_code),
                response: Some(ResponseKind::SaslHandshake(a.response)),
            };
            Box::pin(async move { (handled, FetchHold::default()) })
        }
        RequestKind::SaslAuthenticate(r) if auth.sasl.is_some() => {
            let sasl = auth.sasl.as_mut().expect("checked");
            let state = broker.security.state();
            let a = sasl.authenticate(version, &r, &state, &auth.session, &broker.metrics);
            auth.closing |= a.close;
            if let Some(s) = a.session {
                auth.session = s;
            }
            let handled = Handled {
                errors: error_codes(a.response.error_code),
                response: Some(ResponseKind::SaslAuthenticate(a.response)),
            };
            Box::pin(async move { (handled, FetchHold::default()) })
        }
        request => {
            let h = handlers::dispatch(broker.clone(), auth.session.clone(), header, request);
            Box::pin(async move { (h.await, FetchHold::default()) })
        }
    };
    // Request time (quotas): the handler's synchronous start and its polls.
    let handled = Timed {
        inner: handled,
        spent: limits.as_ref().map(|_| started.elapsed()),
    };
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let (
            (
                Handled {
                    mut response,
                    errors,
                },
                mut held,
            ),
            handling,
        ) = handled.await;
        let throttle = limits.as_ref().map_or(std::time::Duration::ZERO, |l| {
            throttle::settle(&broker, l, version, response.as_mut(), handling, earlier)
        });
        let name = format!("{api:?}");
        let labels = ApiLabels { api: name.clone() };
        broker.metrics.requests.get_or_create(&labels).inc();
        broker
            .metrics
            .request_seconds
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        for code in errors {
            let error = kafka_protocol::ResponseError::try_from_code(code)
                .map_or_else(|| code.to_string(), |e| format!("{e:?}"));
            broker
                .metrics
                .request_errors
                .get_or_create(&ErrorLabels {
                    api: name.clone(),
                    error,
                })
                .inc();
        }
        let Some(resp) = response else {
            return Ok(None);
        };
        let encoding = limits.as_ref().map(|_| Instant::now());
        let header_version = resp.header_version(version);
        let encoded = match resp {
            // A Fetch's records become pieces of the frame, never copied into it.
            ResponseKind::Fetch(f) => {
                let files = std::mem::take(&mut held.files);
                outgoing::encode_fetch(correlation_id, version, &f, header_version, files)
            }
            _ => encode(correlation_id, version, &resp, header_version).map(Frame::from),
        };
        if let (Some(l), Some(t)) = (&limits, encoding) {
            throttle::record_encoding(&broker, l, t.elapsed());
        }
        match encoded {
            Ok(frame) => Ok(Some(Outgoing {
                frame,
                _fetch: held,
                throttle,
            })),
            Err(e) => {
                tracing::error!(api = ?api, version, error = %e, "cannot encode response");
                Err(format!("cannot encode {api:?} v{version} response: {e}"))
            }
        }
    }))
}

fn error_codes(code: i16) -> Vec<i16> {
    if code == 0 {
        Vec::new()
    } else {
        vec![code]
    }
}

pub(crate) fn encode(
    correlation_id: i32,
    version: i16,
    resp: &ResponseKind,
    header_version: i16,
) -> anyhow_free::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, header_version)
        .map_err(|e| e.to_string())?;
    resp.encode(&mut buf, version)
        .map_err(|e| format!("{e:#}"))?;
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// `kafka-protocol` reports errors as `anyhow::Error`; the engine keeps them as strings.
mod anyhow_free {
    pub type Result<T> = std::result::Result<T, String>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{
        ApiVersionsRequest, MetadataRequest, ProduceRequest, TopicName,
    };
    use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};

    fn frame<T: Encodable + HeaderVersion>(api: ApiKey, version: i16, body: &T) -> Bytes {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("fuzz")))
            .encode(&mut buf, T::header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    /// Deterministic mutations of valid requests: the decoder must accept or reject them,
    /// never panic. (`cargo fuzz run request` explores much further.)
    #[test]
    fn mutated_requests_never_panic() {
        let topic = kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("orders"))));
        let seeds = [
            frame(
                ApiKey::Metadata,
                12,
                &MetadataRequest::default().with_topics(Some(vec![topic])),
            ),
            frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()),
            frame(ApiKey::Produce, 9, &ProduceRequest::default().with_acks(-1)),
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for seed in &seeds {
            assert!(matches!(
                decode_request(seed.clone()),
                Ok(Decoded::Request { .. })
            ));
            for _ in 0..20_000 {
                let mut m = BytesMut::from(&seed[..]);
                for _ in 0..(next() % 4 + 1) {
                    let i = (next() as usize) % m.len();
                    m[i] = next() as u8;
                }
                if next() % 8 == 0 {
                    let cut = (next() as usize) % m.len();
                    m.truncate(cut);
                }
                let _ = decode_request(m.freeze());
            }
        }
    }

    /// A Metadata v1 request whose topic array claims two billion entries in a few bytes is
    /// rejected without allocating for them.
    #[test]
    fn lying_array_length_is_rejected_cheaply() {
        let mut f = BytesMut::from(
            &frame(
                ApiKey::Metadata,
                1,
                &MetadataRequest::default().with_topics(Some(vec![])),
            )[..],
        );
        let n = f.len();
        f[n - 4..].copy_from_slice(&2_000_000_000i32.to_be_bytes());
        assert!(matches!(
            decode_request(f.freeze()),
            Err(Reject::Malformed { .. })
        ));
    }

    #[test]
    fn rejects_unknown_apis_and_versions() {
        let mut f = BytesMut::from(&frame(ApiKey::Metadata, 12, &MetadataRequest::default())[..]);
        f[0..2].copy_from_slice(&9999i16.to_be_bytes());
        assert!(matches!(
            decode_request(f.freeze()),
            Err(Reject::UnknownApi(9999))
        ));
        let mut f =
            BytesMut::from(&frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())[..]);
        f[2..4].copy_from_slice(&99i16.to_be_bytes());
        assert!(matches!(
            decode_request(f.freeze()),
            Ok(Decoded::UnsupportedApiVersions { correlation_id: 7 })
        ));
        let mut f = BytesMut::from(&frame(ApiKey::Metadata, 12, &MetadataRequest::default())[..]);
        f[2..4].copy_from_slice(&40i16.to_be_bytes());
        assert!(matches!(
            decode_request(f.freeze()),
            Err(Reject::UnsupportedVersion { .. })
        ));
        assert!(matches!(
            decode_request(Bytes::from_static(b"abc")),
            Err(Reject::ShortFrame(3))
        ));
    }
}
