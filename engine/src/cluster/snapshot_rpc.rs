//! The RPC a replica installing a snapshot reads the leader's log with, a chunk per call
//! (`partition::snapshot`).
//!
//! Request `SnapshotRead`: `u16` topic length, topic, `i32` partition, `u64` requester, `i64`
//! from, `i64` upto, `u32` max bytes. Answer `SnapshotChunk`: `u8` 0, `i64` log start, `i64`
//! local start, the batches; or `u8` 1 and an error message. Like Fetch, it serves anyone who
//! reaches the RPC listener: with a cluster secret, only the brokers holding it
//! ([`super::rpc_auth`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::rpc::{frame, Kind};
use super::Cluster;
use crate::raft::snapshot::{Chunk, ChunkFn, ChunkRequest};

/// A chunk is at most 16 MiB read from local disk: far less than this, unless the peer stalls.
const TIMEOUT: Duration = Duration::from_secs(30);

impl Cluster {
    /// How a replica of `topic`-`partition` reads chunks of another replica's log.
    pub fn chunk_fn(self: &Arc<Self>, topic: &str, partition: i32) -> ChunkFn {
        let cluster = self.clone();
        let topic = topic.to_string();
        Arc::new(move |node, req| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let Some(rt) = cluster.runtime.get() else {
                let _ = tx.send(Err("the cluster is not started".into()));
                return rx;
            };
            let cluster = cluster.clone();
            let body = encode_request(&topic, partition, &req);
            rt.spawn(async move {
                let res = match cluster.members.get(node as i32) {
                    None => Err(format!("broker {node} is not a known member")),
                    Some(m) => cluster
                        .call(
                            &m.rpc_addr,
                            Kind::SnapshotRead,
                            &body,
                            Kind::SnapshotChunk,
                            TIMEOUT,
                        )
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|b| decode_answer(&b)),
                };
                let _ = tx.send(res);
            });
            rx
        })
    }
}

/// Answers a `SnapshotRead` from a peer with a `SnapshotChunk` frame.
pub(super) async fn serve(cluster: &Arc<Cluster>, body: &[u8]) -> Vec<u8> {
    let res = match decode_request(body) {
        None => Err("undecodable request".to_string()),
        Some((topic, p, req)) => read(cluster, &topic, p, req).await,
    };
    let mut out = Vec::new();
    match res {
        Ok(c) => {
            out.push(0);
            out.extend_from_slice(&c.log_start.to_be_bytes());
            out.extend_from_slice(&c.local_start.to_be_bytes());
            out.extend_from_slice(&c.records);
        }
        Err(e) => {
            out.push(1);
            out.extend_from_slice(e.as_bytes());
        }
    }
    frame(Kind::SnapshotChunk, &out)
}

async fn read(
    cluster: &Arc<Cluster>,
    topic: &str,
    p: i32,
    req: ChunkRequest,
) -> Result<Chunk, String> {
    let topics = cluster.topics.get().ok_or("broker starting")?;
    let missing = || format!("no replica of {topic}-{p} here");
    let t = topics.get_internal(topic).ok_or_else(missing)?;
    let handle = t.partition(p).cloned().ok_or_else(missing)?;
    handle
        .ask(|reply| crate::partition::Cmd::ReadChunk { req, reply })
        .await
        .map_err(|e| e.to_string())
}

fn encode_request(topic: &str, p: i32, req: &ChunkRequest) -> Vec<u8> {
    let t = &topic.as_bytes()[..topic.len().min(u16::MAX as usize)];
    let mut b = Vec::with_capacity(t.len() + 34);
    b.extend_from_slice(&(t.len() as u16).to_be_bytes());
    b.extend_from_slice(t);
    b.extend_from_slice(&p.to_be_bytes());
    b.extend_from_slice(&req.requester.to_be_bytes());
    b.extend_from_slice(&req.from.to_be_bytes());
    b.extend_from_slice(&req.upto.to_be_bytes());
    b.extend_from_slice(&req.max_bytes.to_be_bytes());
    b
}

fn decode_request(b: &[u8]) -> Option<(String, i32, ChunkRequest)> {
    let n = u16::from_be_bytes(b.get(..2)?.try_into().ok()?) as usize;
    let topic = std::str::from_utf8(b.get(2..2 + n)?).ok()?.to_string();
    let r = b.get(2 + n..)?;
    if r.len() != 32 {
        return None;
    }
    let i64_at = |i: usize| i64::from_be_bytes(r[i..i + 8].try_into().expect("8 bytes"));
    Some((
        topic,
        i32::from_be_bytes(r[..4].try_into().ok()?),
        ChunkRequest {
            requester: i64_at(4) as u64,
            from: i64_at(12),
            upto: i64_at(20),
            max_bytes: u32::from_be_bytes(r[28..32].try_into().ok()?),
        },
    ))
}

fn decode_answer(b: &[u8]) -> Result<Chunk, String> {
    match b.first() {
        Some(0) if b.len() >= 17 => Ok(Chunk {
            log_start: i64::from_be_bytes(b[1..9].try_into().expect("8 bytes")),
            local_start: i64::from_be_bytes(b[9..17].try_into().expect("8 bytes")),
            records: Bytes::copy_from_slice(&b[17..]),
        }),
        Some(1) => Err(String::from_utf8_lossy(&b[1..]).into_owned()),
        _ => Err("undecodable snapshot chunk".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_round_trip_and_garbage_is_refused() {
        let req = ChunkRequest {
            requester: 3,
            from: 100,
            upto: 5000,
            max_bytes: 1 << 20,
        };
        let b = encode_request("t", 7, &req);
        assert_eq!(decode_request(&b), Some(("t".to_string(), 7, req)));
        assert_eq!(decode_request(&b[..b.len() - 1]), None);
        assert_eq!(decode_request(&[0, 9, b'x']), None);
        assert!(decode_answer(&[0, 1]).is_err());
        assert_eq!(decode_answer(&[1, b'n', b'o']), Err("no".to_string()));
    }
}
