//! Kafka requests one broker forwards to another for a client, carried over the
//! authenticated RPC when the cluster has a secret or `--rpc-tls` (`handlers::forward`). The
//! caller's principal and host travel with the request and the receiver's handlers authorize
//! them, as for a client of its own: the forwarding broker vouches for who its client is, which
//! only a broker holding the cluster secret, or a broker certificate of the CA, can do. Without
//! either the RPC proves nothing about its sender, so requests are not forwarded this way (and
//! `KafkaRequest` frames are refused).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::rpc::{frame, Kind, RpcError};
use super::Cluster;
use crate::security::{Principal, Session};

/// The listener name a forwarded request's session carries.
pub const FORWARDED_LISTENER: &str = "FORWARDED";

#[derive(Debug, thiserror::Error)]
pub enum KafkaRpcError {
    #[error("broker {0} is not a known member")]
    Unknown(i32),
    #[error(
        "the cluster has neither a secret nor --rpc-tls: requests are not forwarded over the RPC"
    )]
    NoSecret,
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("broker {node} could not handle it: {why}")]
    Remote { node: i32, why: String },
}

impl Cluster {
    /// Whether Kafka requests are forwarded over the RPC: its peers are authenticated (the
    /// cluster has a secret, or mutual TLS).
    pub fn forwards_over_rpc(&self) -> bool {
        self.config.secret.is_some() || self.config.tls.is_some()
    }

    /// Sets what runs the requests peers forward here.
    pub fn set_kafka_host(&self, host: Arc<dyn super::host::KafkaHost>) {
        let _ = self.kafka_host.set(host);
    }

    /// Sends the request frame `request` (header and body, no length) to broker `node` on
    /// behalf of `session`; the response frame (header and body).
    pub async fn forward_kafka(
        &self,
        node: i32,
        session: &Session,
        request: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, KafkaRpcError> {
        if !self.forwards_over_rpc() {
            return Err(KafkaRpcError::NoSecret);
        }
        let m = self.members.get(node).ok_or(KafkaRpcError::Unknown(node))?;
        let body = encode_request(&session.principal, session.host, request);
        let answer = self
            .call(
                &m.rpc_addr,
                Kind::KafkaRequest,
                &body,
                Kind::KafkaResponse,
                timeout,
            )
            .await?;
        match answer.split_first() {
            Some((0, resp)) => Ok(resp.to_vec()),
            Some((_, why)) => Err(KafkaRpcError::Remote {
                node,
                why: String::from_utf8_lossy(why).into_owned(),
            }),
            None => Err(KafkaRpcError::Remote {
                node,
                why: "an empty answer".into(),
            }),
        }
    }

    /// Answers a `KafkaRequest` from an authenticated peer with a `KafkaResponse` frame.
    pub(super) async fn serve_kafka_request(&self, body: &[u8], peer: &str) -> Vec<u8> {
        let res = match (decode_request(body), self.kafka_host.get()) {
            (None, _) => Err("undecodable forwarded request".to_string()),
            (Some(_), None) => Err("the broker is starting".to_string()),
            (Some((principal, host, request)), Some(h)) => {
                let session = Session::new(principal, host, Arc::from(FORWARDED_LISTENER));
                tracing::trace!(peer, principal = %session.principal, "forwarded Kafka request");
                h.handle(session, bytes::Bytes::copy_from_slice(request))
                    .await
            }
        };
        let mut out = Vec::new();
        match res {
            Ok(resp) => {
                out.push(0);
                out.extend_from_slice(&resp);
            }
            Err(e) => {
                out.push(1);
                out.extend_from_slice(e.as_bytes());
            }
        }
        frame(Kind::KafkaResponse, &out)
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

fn encode_request(principal: &Principal, host: IpAddr, request: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(request.len() + 64);
    put_str(&mut out, &principal.to_string());
    put_str(&mut out, &host.to_string());
    out.extend_from_slice(request);
    out
}

fn decode_request(b: &[u8]) -> Option<(Principal, IpAddr, &[u8])> {
    fn take_str<'a>(b: &mut &'a [u8]) -> Option<&'a str> {
        let n = u16::from_be_bytes(b.get(..2)?.try_into().ok()?) as usize;
        let s = std::str::from_utf8(b.get(2..2 + n)?).ok()?;
        *b = &b[2 + n..];
        Some(s)
    }
    let mut rest = b;
    let principal = Principal::parse(take_str(&mut rest)?).ok()?;
    let host = take_str(&mut rest)?.parse().ok()?;
    Some((principal, host, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_garbage_is_refused() {
        let p = Principal::user("alice");
        let host: IpAddr = "10.1.2.3".parse().unwrap();
        let b = encode_request(&p, host, b"frame");
        assert_eq!(decode_request(&b), Some((p, host, &b"frame"[..])));
        for cut in 0..b.len() - 5 {
            assert_eq!(decode_request(&b[..cut]), None, "cut at {cut}");
        }
        let mut not_principal = Vec::new();
        put_str(&mut not_principal, "alice");
        put_str(&mut not_principal, "10.1.2.3");
        assert_eq!(decode_request(&not_principal), None);
    }
}
