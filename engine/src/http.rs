//! Serves an axum router (admin API, schema registry, Iceberg catalog) with the limits
//! `axum::serve` lacks: connections per listener and per client IP, a deadline for a request's
//! head, an idle (keep-alive) timeout and a per-request timeout; over TLS once [`set_tls`]
//! was called (`--http-tls`), with the client certificate's principal ([`ClientCert`]) on each
//! request when the client presented one. Also the TLS client configuration brokers call each
//! other's HTTP listeners with ([`set_peer_tls`], [`peer_client_config`]).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{Request, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower::ServiceExt;
use tower_http::timeout::TimeoutLayer;

use crate::limits::connections::{ConnLimiter, ConnLimits};
use crate::security::tls::{load_certs, ReloadingCert, TlsSettings};
use crate::security::Principal;

/// Limits and timers of one HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub connections: ConnLimits,
    /// From accepting a connection, or from the first byte of a later request, until the
    /// request's head is complete (slowloris).
    pub header_read_timeout: Duration,
    /// A kept-alive connection with no request and no I/O for this long is closed.
    pub idle_timeout: Duration,
    /// A handler (including reading the request body) running longer is answered 408.
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            connections: ConnLimits {
                max_total: 1024,
                max_per_ip: 256,
            },
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(300),
        }
    }
}

/// The connection limiter of HTTP listener `name`, counting refusals in `metrics`.
pub fn limiter(
    name: &'static str,
    limits: &HttpLimits,
    metrics: &crate::metrics::Metrics,
) -> Arc<ConnLimiter> {
    ConnLimiter::new(name, limits.connections, metrics.refused(name))
}

/// The TLS configuration every HTTP listener of this process serves with, once set.
static TLS: std::sync::OnceLock<tokio_rustls::TlsAcceptor> = std::sync::OnceLock::new();

/// Makes every HTTP listener (admin API, schema registry, Iceberg catalog) of this process
/// serve https with `config`; set once, before they start. One setting for the process, as
/// `--http-tls` is, so that each crate's `serve` keeps its signature.
pub fn set_tls(config: Arc<rustls::ServerConfig>) {
    let _ = TLS.set(tokio_rustls::TlsAcceptor::from(config));
}

/// Whether the HTTP listeners serve https.
pub fn is_tls() -> bool {
    TLS.get().is_some()
}

/// `https` or `http`: the scheme of this process's HTTP listeners, for the URLs other brokers
/// call them at.
pub fn scheme() -> &'static str {
    if is_tls() {
        "https"
    } else {
        "http"
    }
}

/// A request's verified TLS client certificate, as the principal it makes
/// (`User:<subject DN>`, as on the Kafka listeners): a request extension set on connections
/// whose client presented one (`--tls-client-auth requested|required` with `--http-tls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert(pub Principal);

/// The TLS client configuration brokers call each other's HTTP listeners with, once set.
static PEER_TLS: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();

/// Makes brokers of this process call other brokers' HTTP listeners (registry writes
/// forwarded to the registry leader, Iceberg rounds sent to the committer) over https with
/// `config`; set once at start, before any such call, as [`set_tls`] is.
pub fn set_peer_tls(config: Arc<rustls::ClientConfig>) {
    let _ = PEER_TLS.set(config);
}

/// The configuration of [`set_peer_tls`], if any: the callers build their HTTP clients on it.
pub fn peer_tls() -> Option<Arc<rustls::ClientConfig>> {
    PEER_TLS.get().cloned()
}

/// The HTTP client for calls to other brokers (registry writes, Iceberg commit rounds): over
/// https with [`peer_tls`]'s configuration when `--http-tls` set one before the first call.
pub fn peer_client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        let builder = reqwest::Client::builder();
        let builder = match peer_tls() {
            Some(tls) => builder.use_preconfigured_tls((*tls).clone()),
            None => builder,
        };
        builder.build().unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot build the HTTP client for calls to other brokers");
            reqwest::Client::new()
        })
    })
}

/// The TLS client configuration for calls to other brokers' HTTP listeners: their
/// certificates are checked against `settings.ca_file` (and the host or IP of the URL called);
/// this broker presents its own certificate (`--tls-cert-file`, reloaded as the server's is)
/// when the other asks for one (`--tls-client-auth`).
pub fn peer_client_config(
    settings: &TlsSettings,
) -> Result<rustls::ClientConfig, crate::security::tls::TlsError> {
    use crate::security::tls::TlsError;
    let Some(ca) = &settings.ca_file else {
        return Err(TlsError::Verifier(
            "calling other brokers over https needs a CA file to verify them (--tls-ca-file)"
                .into(),
        ));
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).map_err(|e| TlsError::Pem {
            path: ca.clone(),
            why: e.to_string(),
        })?;
    }
    let cert = Arc::new(ReloadingCert::load(
        &settings.cert_file,
        &settings.key_file,
    )?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(PeerCert(cert)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// This broker's certificate, presented when another broker's HTTP listener asks for one.
#[derive(Debug)]
struct PeerCert(Arc<ReloadingCert>);

impl rustls::client::ResolvesClientCert for PeerCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Serves `router` on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    limiter: Arc<ConnLimiter>,
) -> std::io::Result<()> {
    let router = router.layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        limits.request_timeout,
    ));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Over the limit: dropping the stream closes it at once.
        let Ok(permit) = limiter.try_acquire(peer.ip()) else {
            continue;
        };
        let router = router.clone();
        let tls = TLS.get().cloned();
        tokio::spawn(async move {
            match tls {
                None => serve_conn(stream, peer, None, router, limits).await,
                // The handshake is bounded as a request's head is.
                Some(tls) => {
                    match tokio::time::timeout(limits.header_read_timeout, tls.accept(stream)).await
                    {
                        Ok(Ok(stream)) => {
                            // Only a certificate the CA file verified gets this far.
                            let cert = stream.get_ref().1.peer_certificates().map(|chain| {
                                ClientCert(crate::security::tls::principal(Some(chain)))
                            });
                            serve_conn(stream, peer, cert, router, limits).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "HTTP TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "HTTP TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
}

/// What the watchdog of one connection needs to know, in milliseconds since it was accepted.
#[derive(Default)]
struct Activity {
    last_io: AtomicU64,
    /// When the head of the request being read started (`NONE`: not reading a head).
    head_since: AtomicU64,
    in_flight: AtomicUsize,
}

const NONE: u64 = u64::MAX;

async fn serve_conn<S>(
    stream: S,
    peer: std::net::SocketAddr,
    cert: Option<ClientCert>,
    router: Router,
    limits: HttpLimits,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let start = Instant::now();
    let activity = Arc::new(Activity::default());
    // The first request's head is due from the moment the connection is accepted.
    activity.head_since.store(0, Ordering::Relaxed);
    let io = Tracked {
        inner: stream,
        activity: activity.clone(),
        start,
    };
    let a = activity.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        // The client's address: sessions (host ACLs) and logs of the HTTP APIs.
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        if let Some(c) = &cert {
            req.extensions_mut().insert(c.clone());
        }
        a.head_since.store(NONE, Ordering::Relaxed);
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight(a.clone());
        let call = router.clone().oneshot(req);
        async move {
            let resp = call.await;
            drop(guard);
            resp
        }
    });
    // Hyper's own header timer is off: it would also bound the keep-alive wait, which has its
    // own (longer) timeout here.
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut check = start + limits.header_read_timeout;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "HTTP connection ended");
                }
                return;
            }
            _ = tokio::time::sleep_until(check) => {
                let now = start.elapsed().as_millis() as u64;
                match deadline(&activity, &limits) {
                    Some(due) if now >= due => {
                        // Dropping the connection closes the socket.
                        tracing::debug!("closing a stalled or idle HTTP connection");
                        return;
                    }
                    Some(due) => check = start + Duration::from_millis(due),
                    None => check = Instant::now() + limits.header_read_timeout,
                }
            }
        }
    }
}

/// When the connection should be closed unless something happens, in ms since accept; `None`
/// while a request is being handled (the request timeout bounds that).
fn deadline(a: &Activity, limits: &HttpLimits) -> Option<u64> {
    let ms = |d: Duration| d.as_millis() as u64;
    if a.in_flight.load(Ordering::Relaxed) > 0 {
        return None;
    }
    Some(match a.head_since.load(Ordering::Relaxed) {
        NONE => a.last_io.load(Ordering::Relaxed) + ms(limits.idle_timeout),
        since => since + ms(limits.header_read_timeout),
    })
}

struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The socket, noting when bytes move and when a new request's head starts arriving.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
    start: Instant,
}

impl<S> Tracked<S> {
    fn touch(&self, read: bool) {
        let now = self.start.elapsed().as_millis() as u64;
        self.activity.last_io.store(now, Ordering::Relaxed);
        if read && self.activity.in_flight.load(Ordering::Relaxed) == 0 {
            let _ = self.activity.head_since.compare_exchange(
                NONE,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch(true);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch(false);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch(false);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// `Infallible` is what hyper's service_fn needs the router's error type to be.
const _: fn() = || {
    fn infallible<S: tower::Service<Request<Incoming>, Error = Infallible>>() {}
    infallible::<Router>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_to_other_brokers_verify_them_against_the_ca_file() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/security/testdata");
        let mut s = TlsSettings {
            cert_file: dir.join("one.pem"),
            key_file: dir.join("one.key"),
            ca_file: None,
            client_auth: crate::security::tls::ClientAuth::None,
        };
        let e = peer_client_config(&s).unwrap_err().to_string();
        assert!(e.contains("--tls-ca-file"), "{e}");
        s.ca_file = Some(dir.join("two.pem"));
        let c = peer_client_config(&s).unwrap();
        assert!(c.client_auth_cert_resolver.has_certs());
        s.ca_file = Some(dir.join("missing.pem"));
        assert!(peer_client_config(&s).is_err());
    }

    #[test]
    fn deadlines_follow_the_connection_state() {
        let limits = HttpLimits {
            header_read_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(1000),
            ..HttpLimits::default()
        };
        let a = Activity::default();
        // Just accepted: the head is due.
        a.head_since.store(0, Ordering::Relaxed);
        assert_eq!(deadline(&a, &limits), Some(100));
        // A request is being handled: no deadline here.
        a.head_since.store(NONE, Ordering::Relaxed);
        a.in_flight.store(1, Ordering::Relaxed);
        a.last_io.store(50, Ordering::Relaxed);
        assert_eq!(deadline(&a, &limits), None);
        // Kept alive and quiet.
        a.in_flight.store(0, Ordering::Relaxed);
        a.last_io.store(2000, Ordering::Relaxed);
        assert_eq!(deadline(&a, &limits), Some(3000));
        // The next request's first bytes arrived at 2500 and its head is still incomplete.
        a.head_since.store(2500, Ordering::Relaxed);
        a.last_io.store(2550, Ordering::Relaxed);
        assert_eq!(deadline(&a, &limits), Some(2600));
    }
}
