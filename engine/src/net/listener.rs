//! One listening socket per shard on the same port (SO_REUSEPORT), for each Kafka listener:
//! the kernel spreads new connections over shards, and each connection lives on the shard
//! that accepted it. Connections to SSL and SASL_SSL listeners do their TLS handshake first.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::broker::Broker;
use crate::config::KafkaListener;

/// A client that has not finished its TLS handshake by then is dropped: it holds a
/// connection slot meanwhile.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `n` listeners on `addr`; with port 0 the first picks the port and the rest share it.
pub fn bind(addr: SocketAddr, n: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut out: Vec<std::net::TcpListener> = Vec::with_capacity(n);
    let mut addr = addr;
    for _ in 0..n.max(1) {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        s.listen(1024)?;
        let l: std::net::TcpListener = s.into();
        if addr.port() == 0 {
            addr = l.local_addr()?;
        }
        out.push(l);
    }
    Ok(out)
}

/// How one listener's connections are served: its name (the sessions') and, on SSL and
/// SASL_SSL listeners, the TLS acceptor.
#[derive(Clone)]
pub struct Served {
    pub listener: Arc<KafkaListener>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Accepts on each listener's sockets, each socket from its own shard.
pub fn serve(listeners: Vec<(Served, Vec<std::net::TcpListener>)>, broker: &Arc<Broker>) {
    for (served, sockets) in listeners {
        for (shard, l) in sockets.into_iter().enumerate() {
            let b = broker.clone();
            let served = served.clone();
            broker.shards.run_on(shard, move |ctx| {
                let id = ctx.id;
                tokio::task::spawn_local(accept_loop(l, b, id, served));
            });
        }
    }
}

/// Accepts connections on this shard until the listener fails.
pub async fn accept_loop(
    listener: std::net::TcpListener,
    broker: Arc<Broker>,
    shard: usize,
    served: Served,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(shard, error = %e, "cannot register Kafka listener");
            return;
        }
    };
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // Over the limit: dropping the stream closes it at once.
                let Ok(permit) = broker.kafka_limiter.try_acquire(peer.ip()) else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let b = broker.clone();
                let name = served.listener.name.clone();
                match &served.tls {
                    None => {
                        tokio::task::spawn_local(async move {
                            super::connection::serve(stream, peer, b, name).await;
                            drop(permit);
                        });
                    }
                    Some(tls) => {
                        let accept = tls.accept(stream);
                        tokio::task::spawn_local(async move {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
                                Ok(Ok(stream)) => {
                                    super::connection::serve_tls(stream, peer, b, name).await
                                }
                                // A plaintext client, a certificate refused, a client that
                                // went away: theirs to see, nothing for the broker to do.
                                Ok(Err(e)) => {
                                    b.metrics.tls_handshake_failures.inc();
                                    tracing::debug!(%peer, listener = %name, error = %e, "TLS handshake failed")
                                }
                                Err(_) => {
                                    b.metrics.tls_handshake_failures.inc();
                                    tracing::debug!(%peer, listener = %name, "TLS handshake timed out")
                                }
                            }
                            drop(permit);
                        });
                    }
                }
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(shard, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
