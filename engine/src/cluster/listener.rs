//! The RPC listener's side of the cluster: what each frame from a peer does.
//!
//! With a cluster secret, a connection is served only once the caller has proven it holds the
//! secret, and every frame only once its MAC checks ([`super::rpc_auth`]). Even so (and
//! without a secret, when anyone reaching the port may send anything) nothing here trusts the
//! sender: proposals are checked ([`super::validate`]) before they reach the controller, hellos
//! that would replace a live member are refused ([`super::membership::Members::merge`]), and
//! Raft messages are checked against the group's replicas here and by [`crate::raft::guard`]
//! before raft-rs sees them.

use std::sync::Arc;
use std::time::Duration;

use super::controller::Input;
use super::membership::Hello;
use super::rpc::{self, frame, Kind};
use super::rpc_auth::{self, AuthError};
use super::{Cluster, Command, ProposeReply};

pub(super) async fn accept_loop(
    l: tokio::net::TcpListener,
    cluster: Arc<Cluster>,
    limiter: Arc<crate::limits::connections::ConnLimiter>,
) {
    loop {
        match l.accept().await {
            Ok((s, peer)) => {
                // Over the limit: dropping the stream closes it at once.
                let Ok(permit) = limiter.try_acquire(peer.ip()) else {
                    continue;
                };
                let _ = s.set_nodelay(true);
                let cluster = cluster.clone();
                tokio::spawn(async move {
                    serve_conn(s, peer.to_string(), cluster).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "rpc accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// How long a caller has to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one peer connection until it closes or sends something invalid.
async fn serve_conn(s: tokio::net::TcpStream, peer: String, cluster: Arc<Cluster>) {
    let secret = cluster.config.secret.as_ref();
    let accept = async {
        let s = rpc::accept(s, &peer, cluster.config.tls.as_ref()).await?;
        rpc::Conn::server(s, peer.clone(), secret, cluster.node_id()).await
    };
    let mut conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
        Ok(Ok(c)) => c,
        Ok(Err(rpc::RpcError::Auth(e))) => {
            cluster.reject("auth_failed", format_args!("{e}"));
            return;
        }
        Ok(Err(e @ (rpc::RpcError::Tls { .. } | rpc::RpcError::TlsHello { .. }))) => {
            cluster.reject("auth_failed", format_args!("{e}"));
            return;
        }
        // Without a secret nothing was asked of it yet: a connection closed before or in the
        // TLS handshake (a port probe) is no refusal.
        Ok(Err(e @ rpc::RpcError::Io { .. })) if secret.is_none() => {
            tracing::debug!(peer, error = %e, "rpc connection closed before it started");
            return;
        }
        Ok(Err(e)) => {
            cluster.reject(
                "auth_failed",
                format_args!("peer {peer} did not authenticate: {e}"),
            );
            return;
        }
        Err(_) => {
            cluster.reject(
                "auth_failed",
                format_args!(
                    "peer {peer} did not authenticate within {}s",
                    HANDSHAKE_TIMEOUT.as_secs()
                ),
            );
            return;
        }
    };
    loop {
        let (kind, body) = match conn.read().await {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(rpc::RpcError::Auth(e)) => {
                cluster.reject("auth_bad_mac", format_args!("{e}"));
                return;
            }
            Err(e @ rpc::RpcError::TlsHello { .. }) => {
                // A caller with --rpc-tls, and this broker has none: both logs say so.
                cluster.reject("auth_failed", format_args!("{e}"));
                let why = rpc::REFUSE_NO_TLS.as_bytes();
                if conn.write(frame(Kind::AuthRefused, why)).await.is_ok() {
                    conn.linger().await;
                }
                return;
            }
            Err(e @ rpc::RpcError::UnknownKind(_)) => {
                // A peer of a newer release: say so where an operator looks.
                cluster.reject("rpc_unknown_kind", format_args!("rpc from {peer}: {e}"));
                return;
            }
            Err(e) => {
                tracing::debug!(peer, error = %e, "closing rpc connection");
                return;
            }
        };
        let answer = match kind {
            Kind::Hello => match serde_json::from_slice::<Hello>(&body) {
                Ok(h) if h.cluster_id == cluster.cluster_id => {
                    // Another process claiming a live broker is the first thing to say.
                    if let Err(e) = cluster.members.check(&h.from) {
                        cluster.reject("hello_conflict", format_args!("hello from {peer}: {e}"));
                        return;
                    }
                    if h.from.rpc_version < rpc::MIN_VERSION {
                        cluster.reject(
                            "hello_unsupported",
                            format_args!(
                                "hello from broker {} at {peer} refused: its RPC version {} ({}) is older than the oldest this release speaks ({}); upgrade it",
                                h.from.node_id,
                                h.from.rpc_version,
                                h.from.release.as_deref().unwrap_or("a release before versions were announced"),
                                rpc::MIN_VERSION
                            ),
                        );
                        return;
                    }
                    let lacking = cluster.lacking_features(&h.from.features);
                    if !lacking.is_empty() {
                        // It would misread the entries that rely on them: kept out of the
                        // cluster (Metadata, placement, leadership) until upgraded.
                        cluster.reject(
                            "hello_unsupported",
                            format_args!(
                                "hello from broker {} at {peer} refused: it lacks the finalized features {} (upgrade it to this release)",
                                h.from.node_id,
                                lacking.join(", ")
                            ),
                        );
                        return;
                    }
                    if let Err(e) = cluster.members.merge(&h.from, &h.members) {
                        cluster.reject("hello_conflict", format_args!("hello from {peer}: {e}"));
                        return;
                    }
                    cluster.learn_isrs(h.from.node_id, h.isr);
                    let mut mine = cluster.members.hello(&cluster.cluster_id);
                    mine.isr = cluster.led_isrs();
                    serde_json::to_vec(&mine)
                        .ok()
                        .map(|b| frame(Kind::Members, &b))
                }
                Ok(h) => {
                    tracing::warn!(peer, theirs = %h.cluster_id, ours = %cluster.cluster_id, "hello from another cluster refused");
                    return;
                }
                Err(_) => return,
            },
            Kind::Raft => {
                let mut m = raft::eraftpb::Message::default();
                if protobuf::Message::merge_from_bytes(&mut m, &body).is_err() {
                    return;
                }
                if let Some(c) = cluster.controller.get() {
                    let _ = c.tx.send(Input::Raft(Box::new(m)));
                }
                None
            }
            Kind::Propose => {
                let Ok(cmd) = serde_json::from_slice::<Command>(&body) else {
                    return;
                };
                let reply = match cluster.check_proposal(&cmd) {
                    Err(e) => {
                        cluster
                            .reject("propose_invalid", format_args!("proposal from {peer}: {e}"));
                        ProposeReply::Applied(Err(e))
                    }
                    Ok(()) => cluster.propose_local(cmd).await,
                };
                serde_json::to_vec(&reply)
                    .ok()
                    .map(|b| frame(Kind::ProposeResult, &b))
            }
            Kind::PartitionRaft => {
                // Unknown partitions (not created here yet) drop it; Raft retransmits.
                let _ = cluster.route_partition_raft(&bytes::Bytes::from(body));
                None
            }
            Kind::PartitionRaftBatch => {
                // Entries decoded from the frame share its buffer: no copy of their records.
                let body = bytes::Bytes::from(body);
                let Ok(items) = rpc::split_batch(&body) else {
                    return;
                };
                for (topic, p, msg) in items {
                    let _ = cluster.route_to_partition(topic, p, &body.slice_ref(msg));
                }
                None
            }
            Kind::SnapshotRead => Some(super::snapshot_rpc::serve(&cluster, &body).await),
            Kind::AuthHello if !conn.authenticated() => {
                // A caller with a secret, and this broker has none.
                cluster.reject(
                    "auth_failed",
                    format_args!("{}", AuthError::NoSecretHere { peer: peer.clone() }),
                );
                let why = rpc_auth::REFUSE_NO_SECRET.as_bytes();
                let _ = conn.write(frame(Kind::AuthRefused, why)).await;
                return;
            }
            // With --rpc-tls every connection here carries a broker certificate of the CA.
            Kind::KafkaRequest if conn.authenticated() || cluster.config.tls.is_some() => {
                Some(cluster.serve_kafka_request(&body, &peer).await)
            }
            Kind::Members
            | Kind::ProposeResult
            | Kind::SnapshotChunk
            | Kind::AuthHello
            | Kind::AuthChallenge
            | Kind::AuthProof
            | Kind::AuthRefused
            | Kind::KafkaRequest
            | Kind::KafkaResponse => return,
        };
        if let Some(a) = answer {
            if conn.write(a).await.is_err() {
                return;
            }
        }
    }
}
