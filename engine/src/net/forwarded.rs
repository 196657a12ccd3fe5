//! The requests other brokers forward for their clients over the authenticated RPC
//! (`cluster::kafka_rpc`): decoded and handled on a shard as a client's of this broker, with
//! the session (principal and host) the forwarding broker vouches for.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::connection::{self, Decoded};
use crate::broker::Broker;
use crate::cluster::host::{KafkaFuture, KafkaHost};
use crate::handlers;
use crate::security::Session;

pub struct ForwardedRequests {
    broker: Weak<Broker>,
    /// The shard the next request runs on (they take turns).
    next: AtomicUsize,
}

impl ForwardedRequests {
    pub fn new(broker: &Arc<Broker>) -> Self {
        ForwardedRequests {
            broker: Arc::downgrade(broker),
            next: AtomicUsize::new(0),
        }
    }
}

impl KafkaHost for ForwardedRequests {
    fn handle(&self, session: Session, request: Bytes) -> KafkaFuture {
        let Some(b) = self.broker.upgrade() else {
            return Box::pin(async { Err("the broker is stopping".to_string()) });
        };
        let shard = self.next.fetch_add(1, Ordering::Relaxed) % b.shards.len().max(1);
        let (tx, rx) = oneshot::channel();
        let on_shard = b.clone();
        b.shards.run_on(shard, move |_| {
            // Handlers run on a shard's LocalSet, as a connection's do.
            tokio::task::spawn_local(async move {
                let _ = tx.send(run(on_shard, session, request).await);
            });
        });
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err("the shard stopped before answering".to_string()))
        })
    }
}

async fn run(b: Arc<Broker>, session: Session, request: Bytes) -> Result<Vec<u8>, String> {
    let (version, header, body) = match connection::decode_request(request) {
        Ok(Decoded::Request {
            version,
            header,
            body,
            ..
        }) => (version, header, body),
        Ok(Decoded::UnsupportedApiVersions { .. }) => {
            return Err("an ApiVersions version this broker does not support".into())
        }
        Err(e) => return Err(e.to_string()),
    };
    let correlation_id = header.correlation_id;
    let handled = handlers::dispatch(b, Arc::new(session), *header, *body).await;
    let resp = handled
        .response
        .ok_or_else(|| "the request has no response".to_string())?;
    let framed = connection::encode(correlation_id, version, &resp, resp.header_version(version))?;
    // Without the length prefix: the RPC frame has its own.
    Ok(framed[4..].to_vec())
}
