//! Frames between brokers: a send queue and writer per peer, partition Raft messages out
//! (heartbeats gathered per peer and sent once a tick) and in (checked against the partition's
//! replicas, then handed to its actor).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::rpc::{self, frame, Kind};

/// Most bytes of queued frames a peer's writer sends in one write.
const WRITE_BATCH_BYTES: usize = 4 << 20;
use super::{controller, send_queue, Cluster};
use crate::partition::router::RouteError;

impl Cluster {
    /// How this broker calls its peers: from its RPC address, with its secret.
    pub(crate) fn caller(&self) -> rpc::Caller<'_> {
        rpc::Caller {
            source: Some(self.config.rpc_addr.ip()),
            secret: self.config.secret.as_ref(),
            tls: self.config.tls.as_ref(),
            node: self.node_id(),
        }
    }

    /// [`rpc::call`] from this broker; an authentication failure is counted and logged.
    pub(crate) async fn call(
        &self,
        addr: &str,
        kind: Kind,
        body: &[u8],
        answer: Kind,
        timeout: Duration,
    ) -> Result<Vec<u8>, rpc::RpcError> {
        let r = rpc::call(addr, self.caller(), kind, body, answer, timeout).await;
        if let Err(e) = &r {
            self.note_auth_error(e);
        }
        r
    }

    /// Counts and logs an authentication or TLS failure (other errors are the caller's to
    /// report).
    pub(crate) fn note_auth_error(&self, e: &rpc::RpcError) {
        if matches!(e, rpc::RpcError::Auth(_) | rpc::RpcError::Tls { .. }) {
            self.reject("auth_failed", format_args!("{e}"));
        }
    }

    /// Queues a frame for broker `to` without blocking; frames that cannot be delivered, or
    /// that a full queue evicts, are dropped (Raft retransmits, heartbeats recur).
    pub fn send_frame(self: &Arc<Self>, to: i32, frame: Vec<u8>) {
        // Before `start` there is no runtime for the peer's writer (partitions opening at
        // start-up may already send): drop the frame, which Raft sends again, rather than
        // create a queue nobody drains and that would hold every later frame to that peer.
        let Some(rt) = self.runtime.get() else {
            return;
        };
        self.frames_sent.inc();
        let class = if frame.get(4) == Some(&(Kind::PartitionRaftBatch as u8)) {
            send_queue::Class::Heartbeat
        } else {
            send_queue::Class::Raft
        };
        let queue = self
            .peers
            .lock()
            .entry(to)
            .or_insert_with(|| self.spawn_peer(rt, to))
            .clone();
        queue.push(class, frame);
    }

    fn spawn_peer(
        self: &Arc<Self>,
        rt: &tokio::runtime::Handle,
        to: i32,
    ) -> Arc<send_queue::SendQueue> {
        let queue = Arc::new(send_queue::SendQueue::new(
            self.config.send_queue,
            self.frames_dropped.clone(),
        ));
        let cluster = self.clone();
        let rx = queue.clone();
        rt.spawn(async move {
            let mut conn: Option<rpc::Conn<rpc::Stream>> = None;
            loop {
                // What queued while the previous write ran leaves in one write.
                let frames = rx.pop_batch(WRITE_BATCH_BYTES).await;
                if conn.is_none() {
                    let Some(m) = cluster.members.get(to) else {
                        continue;
                    };
                    // Connecting and, with a secret, the handshake's round trip.
                    let open = rpc::open(&m.rpc_addr, cluster.caller());
                    match tokio::time::timeout(Duration::from_millis(1000), open).await {
                        Ok(Ok(c)) => conn = Some(c),
                        Ok(Err(e)) => {
                            cluster.note_auth_error(&e);
                            continue;
                        }
                        Err(_) => continue,
                    }
                }
                if let Some(c) = conn.as_mut() {
                    if c.write_batch(frames).await.is_err() {
                        conn = None;
                    }
                }
            }
        });
        queue
    }

    /// How a partition's Raft group reaches the other replicas.
    pub fn partition_sender(self: &Arc<Self>, topic: &str, partition: i32) -> crate::raft::SendFn {
        let cluster = self.clone();
        let batch = self.config.batch_heartbeats;
        let topic_owned = topic.to_string();
        let mut head = Vec::with_capacity(topic.len() + 6);
        head.extend_from_slice(&(topic.len().min(u16::MAX as usize) as u16).to_be_bytes());
        head.extend_from_slice(&topic.as_bytes()[..topic.len().min(u16::MAX as usize)]);
        head.extend_from_slice(&partition.to_be_bytes());
        Arc::new(move |to: u64, m: raft::eraftpb::Message| {
            cluster.partition_messages_sent.inc();
            // Heartbeats of every group bound for one peer leave together once per tick, so
            // idle partitions cost one frame per peer pair rather than one per partition.
            use raft::eraftpb::MessageType::{MsgHeartbeat, MsgHeartbeatResponse};
            if batch && matches!(m.get_msg_type(), MsgHeartbeat | MsgHeartbeatResponse) {
                let Ok(body) = protobuf::Message::write_to_bytes(&m) else {
                    return;
                };
                let mut hb = cluster.heartbeats.lock();
                let (n, items) = hb.entry(to as i32).or_default();
                *n += 1;
                rpc::push_batch_item(items, &topic_owned, partition, &body);
                return;
            }
            // An append carries up to 1 MiB of batches: serialised once, straight into the
            // frame (it used to be copied three times on its way there).
            let size = protobuf::Message::compute_size(&m) as usize;
            let Some(f) = rpc::frame_with(Kind::PartitionRaft, &head, size, |out| {
                protobuf::Message::write_to_vec(&m, out).is_ok()
            }) else {
                return;
            };
            cluster.send_frame(to as i32, f);
        })
    }

    /// Sends the heartbeats gathered since the last call, one frame per peer.
    pub(super) fn flush_heartbeats(self: &Arc<Self>) {
        let batches = std::mem::take(&mut *self.heartbeats.lock());
        for (to, (n, items)) in batches {
            let mut body = Vec::with_capacity(4 + items.len());
            body.extend_from_slice(&n.to_be_bytes());
            body.extend_from_slice(&items);
            self.send_frame(to, frame(Kind::PartitionRaftBatch, &body));
        }
    }

    /// Hands a partition Raft message to the partition's actor.
    pub(super) fn route_partition_raft(&self, body: &Bytes) -> Option<()> {
        let len = u16::from_be_bytes(body.get(..2)?.try_into().ok()?) as usize;
        let topic = std::str::from_utf8(body.get(2..2 + len)?).ok()?;
        let p = i32::from_be_bytes(body.get(2 + len..6 + len)?.try_into().ok()?);
        let msg = body.slice_ref(body.get(6 + len..)?);
        self.route_to_partition(topic, p, &msg)
    }

    /// Decodes one partition Raft message and hands it to the partition's actor; `None` when
    /// it does not decode or the partition is unknown here (dropped: Raft retransmits).
    /// Entries' data are slices of `msg` (protobuf's `bytes` support), not copies.
    pub(super) fn route_to_partition(&self, topic: &str, p: i32, msg: &Bytes) -> Option<()> {
        let m: raft::eraftpb::Message = protobuf::Message::parse_from_carllerche_bytes(msg).ok()?;
        let router = self.router.get()?;
        let from = i32::try_from(m.from).unwrap_or(-1);
        if m.to != self.node_id() as u64 || from == self.node_id() {
            self.reject(
                "raft_unknown_peer",
                format_args!(
                    "partition {topic}-{p} raft {:?} from {} to {}: not between this broker and a replica",
                    m.get_msg_type(),
                    m.from,
                    m.to
                ),
            );
            return None;
        }
        let msg_type = m.get_msg_type();
        match router.deliver(topic, p, from, m) {
            Ok(()) => Some(()),
            Err(RouteError::Unknown(..)) => None,
            Err(e @ RouteError::NotAReplica { .. }) => {
                self.reject(
                    "raft_unknown_peer",
                    format_args!("partition {topic}-{p} raft {msg_type:?}: {e}"),
                );
                None
            }
        }
    }
}

/// Sends the gathered partition Raft heartbeats once per Raft tick.
pub(super) async fn heartbeat_batch_loop(cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(controller::TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        cluster.flush_heartbeats();
    }
}
