//! One listening socket per shard on the same port (SO_REUSEPORT): the kernel spreads new
//! connections over shards, and each connection lives on the shard that accepted it.

use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};

use crate::broker::Broker;

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

/// Accepts on each socket from its own shard.
pub fn serve(sockets: Vec<std::net::TcpListener>, broker: &Arc<Broker>) {
    for (shard, l) in sockets.into_iter().enumerate() {
        let b = broker.clone();
        broker.shards.run_on(shard, move |ctx| {
            let id = ctx.id;
            tokio::task::spawn_local(accept_loop(l, b, id));
        });
    }
}

/// Accepts connections on this shard until the listener fails.
pub async fn accept_loop(listener: std::net::TcpListener, broker: Arc<Broker>, shard: usize) {
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
                tokio::task::spawn_local(async move {
                    let sasl = b.config.sasl.default_listener;
                    super::connection::serve(stream, peer, b, sasl).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(shard, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
