//! Read-only group requests a broker answers on the coordinator's behalf.
//!
//! A group's coordinator moves with the Raft leader of its `__consumer_offsets` partition (a
//! failover, then the preferred replica taking leadership back). Consumers follow it through
//! NOT_COORDINATOR, but librdkafka's admin client caches the coordinator it looked up and keeps
//! sending DescribeGroups, ConsumerGroupDescribe and OffsetFetch there after NOT_COORDINATOR
//! (its coordinator cache is evicted only by transactional requests), so
//! `describe_consumer_groups` and lag monitors stayed blind for as long as they kept asking.
//! These three APIs change nothing, so a broker that is not the coordinator asks the broker it
//! sees leading the group's partition and returns that answer. One hop only: a forwarded request
//! (client id [`FORWARD_CLIENT_ID`]) is never forwarded again, so brokers whose views disagree
//! during an election answer NOT_COORDINATOR instead of bouncing a request between them. Group
//! membership and commits are never forwarded: clients must talk to the coordinator itself.
//!
//! With a cluster secret, requests go to the other broker over the authenticated RPC
//! (`cluster::kafka_rpc`) carrying the client's principal and host, which that broker's handlers
//! authorize, so forwarding works when Kafka listeners require SASL; without one, to its Kafka
//! listener as a client of its own.
//!
//! For the same reason these requests wait (up to [`LOAD_WAIT`]) for a broker that has just
//! become a group's coordinator to finish loading it, rather than answer
//! COORDINATOR_LOAD_IN_PROGRESS, which librdkafka's admin client does not retry either.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, OffsetFetchRequest, OffsetFetchResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::ResponseError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::broker::Broker;
use crate::security::Session;

/// The client id of requests one broker forwards to another.
pub const FORWARD_CLIENT_ID: &str = "icestream-forward";
/// Connecting plus the round trip; the caller's own request timeout is longer.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a read-only request waits for its groups to finish loading (a load is a committed
/// marker and a replay of one `__consumer_offsets` partition: well under a second).
const LOAD_WAIT: Duration = Duration::from_secs(5);
/// Largest answer accepted (group descriptions and offsets are small).
const MAX_FRAME: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error("broker {0} is not a known member")]
    Unknown(i32),
    #[error("timed out after {}s", TIMEOUT.as_secs())]
    Timeout,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("bad frame: {0}")]
    Codec(String),
    #[error(transparent)]
    Rpc(#[from] crate::cluster::kafka_rpc::KafkaRpcError),
}

fn not_coordinator() -> i16 {
    ResponseError::NotCoordinator.code()
}

/// Runs a read-only group request until none of its groups is still loading on this broker (or
/// [`LOAD_WAIT`] has passed): `loading` tells whether an answer holds
/// COORDINATOR_LOAD_IN_PROGRESS.
async fn after_load<R>(mut run: impl FnMut() -> R, loading: impl Fn(&R) -> bool) -> R {
    let deadline = tokio::time::Instant::now() + LOAD_WAIT;
    loop {
        let r = run();
        if !loading(&r) || tokio::time::Instant::now() >= deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn codec(e: impl std::fmt::Display) -> ForwardError {
    ForwardError::Codec(e.to_string())
}

pub(crate) fn forwarded(h: &RequestHeader) -> bool {
    h.client_id.as_deref() == Some(FORWARD_CLIENT_ID)
}

/// [`ask`] for other handlers (ElectLeaders asks a partition's leader), errors as text.
pub(crate) async fn ask_broker<R: Request>(
    b: &Broker,
    s: &Session,
    node: i32,
    version: i16,
    req: &R,
) -> Result<R::Response, String> {
    ask(b, s, node, version, req)
        .await
        .map_err(|e| e.to_string())
}

/// Sends `req` at `version` to broker `node` for the client of session `s` and decodes its
/// answer: over the authenticated RPC with a cluster secret, else to its Kafka listener.
async fn ask<R: Request>(
    b: &Broker,
    s: &Session,
    node: i32,
    version: i16,
    req: &R,
) -> Result<R::Response, ForwardError> {
    let cluster = b.cluster.as_ref().ok_or(ForwardError::Unknown(node))?;
    let m = cluster
        .members
        .get(node)
        .ok_or(ForwardError::Unknown(node))?;
    let mut frame = BytesMut::with_capacity(128);
    frame.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str(FORWARD_CLIENT_ID)))
        .encode(&mut frame, R::header_version(version))
        .and_then(|()| req.encode(&mut frame, version))
        .map_err(codec)?;
    let len = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    if cluster.forwards_over_rpc() {
        let resp = cluster.forward_kafka(node, s, &frame[4..], TIMEOUT).await?;
        let mut body = Bytes::from(resp);
        ResponseHeader::decode(
            &mut body,
            <R::Response as HeaderVersion>::header_version(version),
        )
        .map_err(codec)?;
        return R::Response::decode(&mut body, version).map_err(codec);
    }
    let round_trip = async {
        let mut s = TcpStream::connect((m.kafka_host.as_str(), m.kafka_port)).await?;
        s.write_all(&frame).await?;
        let n = s.read_i32().await?;
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= MAX_FRAME)
            .ok_or_else(|| ForwardError::Codec(format!("frame of {n} bytes")))?;
        let mut body = vec![0; n];
        s.read_exact(&mut body).await?;
        Ok::<_, ForwardError>(Bytes::from(body))
    };
    let mut body = tokio::time::timeout(TIMEOUT, round_trip)
        .await
        .map_err(|_| ForwardError::Timeout)??;
    ResponseHeader::decode(
        &mut body,
        <R::Response as HeaderVersion>::header_version(version),
    )
    .map_err(codec)?;
    R::Response::decode(&mut body, version).map_err(codec)
}

/// The answer of the broker this one sees coordinating `group`, for a request about it alone.
async fn from_coordinator<R: Request>(
    b: &Broker,
    s: &Session,
    group: &str,
    version: i16,
    req: &R,
) -> Option<R::Response> {
    let node = b.groups.coordinator_elsewhere(b, group)?;
    match ask(b, s, node, version, req).await {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::debug!(group, node, error = %e, "cannot ask the group's coordinator");
            None
        }
    }
}

/// Puts the one entry of another broker's answer (`from`) in place of the entry of `entries`
/// that `is` picks; an answer without entries changes nothing.
fn put_entry<T>(entries: &mut [T], from: Vec<T>, is: impl Fn(&T) -> bool) {
    if let (Some(slot), Some(new)) = (entries.iter_mut().find(|e| is(e)), from.into_iter().next()) {
        *slot = new;
    }
}

/// A read-only request about groups whose answer holds one entry per group.
pub trait GroupRead: Request + Clone {
    /// (group id, error code) of each entry of `resp`.
    fn errors(&self, resp: &Self::Response) -> Vec<(String, i16)>;
    /// The request about `group` alone.
    fn only(&self, group: &str) -> Self;
    /// Puts `from`'s entry for `group` in place of `resp`'s.
    fn replace(resp: &mut Self::Response, group: &str, from: Self::Response);
}

/// Answers a read-only group request: `local` once this broker has finished loading the groups
/// it names, then each group another broker coordinates as that broker answers it.
pub async fn answer<R: GroupRead>(
    b: &Broker,
    s: &Session,
    h: &RequestHeader,
    req: &R,
    local: impl FnMut() -> R::Response,
) -> R::Response {
    let loading = ResponseError::CoordinatorLoadInProgress.code();
    let mut resp = after_load(local, |r| req.errors(r).iter().any(|(_, c)| *c == loading)).await;
    // With authorization on, only the authenticated RPC (a cluster secret or --rpc-tls) carries
    // the caller's principal for the coordinator to judge; over the Kafka listener it would
    // judge the forwarding broker, so nothing is forwarded then (the client follows
    // NOT_COORDINATOR).
    let over_rpc = b.cluster.as_ref().is_some_and(|c| c.forwards_over_rpc());
    if forwarded(h) || (super::authorize::enabled(b) && !over_rpc) {
        return resp;
    }
    let v = h.request_api_version;
    for (group, code) in req.errors(&resp) {
        if code != not_coordinator() {
            continue;
        }
        if let Some(r) = from_coordinator(b, s, &group, v, &req.only(&group)).await {
            R::replace(&mut resp, &group, r);
        }
    }
    resp
}

impl GroupRead for DescribeGroupsRequest {
    fn errors(&self, resp: &DescribeGroupsResponse) -> Vec<(String, i16)> {
        resp.groups
            .iter()
            .map(|g| (g.group_id.to_string(), g.error_code))
            .collect()
    }
    fn only(&self, group: &str) -> Self {
        let id = self.groups.iter().find(|g| g.as_str() == group).cloned();
        self.clone().with_groups(id.into_iter().collect())
    }
    fn replace(resp: &mut DescribeGroupsResponse, group: &str, from: DescribeGroupsResponse) {
        put_entry(&mut resp.groups, from.groups, |g| {
            g.group_id.as_str() == group
        });
    }
}

impl GroupRead for ConsumerGroupDescribeRequest {
    fn errors(&self, resp: &ConsumerGroupDescribeResponse) -> Vec<(String, i16)> {
        resp.groups
            .iter()
            .map(|g| (g.group_id.to_string(), g.error_code))
            .collect()
    }
    fn only(&self, group: &str) -> Self {
        let id = self.group_ids.iter().find(|g| g.as_str() == group).cloned();
        self.clone().with_group_ids(id.into_iter().collect())
    }
    fn replace(
        resp: &mut ConsumerGroupDescribeResponse,
        group: &str,
        from: ConsumerGroupDescribeResponse,
    ) {
        put_entry(&mut resp.groups, from.groups, |g| {
            g.group_id.as_str() == group
        });
    }
}

/// OffsetFetch v8+ answers per group; v2-7 name one group with a top-level error (v0-1 carry
/// errors per partition only: those clients retry by themselves and are not forwarded).
impl GroupRead for OffsetFetchRequest {
    fn errors(&self, resp: &OffsetFetchResponse) -> Vec<(String, i16)> {
        if self.groups.is_empty() {
            return vec![(self.group_id.to_string(), resp.error_code)];
        }
        resp.groups
            .iter()
            .map(|g| (g.group_id.to_string(), g.error_code))
            .collect()
    }
    fn only(&self, group: &str) -> Self {
        if self.groups.is_empty() {
            return self.clone();
        }
        let g = self.groups.iter().find(|g| g.group_id.as_str() == group);
        self.clone().with_groups(g.cloned().into_iter().collect())
    }
    fn replace(resp: &mut OffsetFetchResponse, group: &str, from: OffsetFetchResponse) {
        if resp.groups.is_empty() {
            *resp = from;
            return;
        }
        put_entry(&mut resp.groups, from.groups, |g| {
            g.group_id.as_str() == group
        });
    }
}
