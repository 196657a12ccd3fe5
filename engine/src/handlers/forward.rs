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

/// The client id of requests one broker forwards to another.
pub const FORWARD_CLIENT_ID: &str = "icestream-forward";
/// Connecting plus the round trip; the caller's own request timeout is longer.
const TIMEOUT: Duration = Duration::from_secs(5);
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
}

fn not_coordinator() -> i16 {
    ResponseError::NotCoordinator.code()
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
    node: i32,
    version: i16,
    req: &R,
) -> Result<R::Response, String> {
    ask(b, node, version, req).await.map_err(|e| e.to_string())
}

/// Sends `req` at `version` to broker `node`'s Kafka listener and decodes its answer.
async fn ask<R: Request>(
    b: &Broker,
    node: i32,
    version: i16,
    req: &R,
) -> Result<R::Response, ForwardError> {
    let m = b
        .cluster
        .as_ref()
        .and_then(|c| c.members.get(node))
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
    group: &str,
    version: i16,
    req: &R,
) -> Option<R::Response> {
    let node = b.groups.coordinator_elsewhere(b, group)?;
    match ask(b, node, version, req).await {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::debug!(group, node, error = %e, "cannot ask the group's coordinator");
            None
        }
    }
}

/// DescribeGroups: each group this broker does not coordinate is described by its coordinator.
pub async fn describe_groups(
    b: &Broker,
    h: &RequestHeader,
    req: &DescribeGroupsRequest,
    mut resp: DescribeGroupsResponse,
) -> DescribeGroupsResponse {
    if forwarded(h) {
        return resp;
    }
    let v = h.request_api_version;
    for g in resp
        .groups
        .iter_mut()
        .filter(|g| g.error_code == not_coordinator())
    {
        let one = req.clone().with_groups(vec![g.group_id.clone()]);
        if let Some(mut r) = from_coordinator(b, g.group_id.as_str(), v, &one).await {
            if r.groups.len() == 1 {
                *g = r.groups.remove(0);
            }
        }
    }
    resp
}

/// ConsumerGroupDescribe, as [`describe_groups`].
pub async fn consumer_group_describe(
    b: &Broker,
    h: &RequestHeader,
    req: &ConsumerGroupDescribeRequest,
    mut resp: ConsumerGroupDescribeResponse,
) -> ConsumerGroupDescribeResponse {
    if forwarded(h) {
        return resp;
    }
    let v = h.request_api_version;
    for g in resp
        .groups
        .iter_mut()
        .filter(|g| g.error_code == not_coordinator())
    {
        let one = req.clone().with_group_ids(vec![g.group_id.clone()]);
        if let Some(mut r) = from_coordinator(b, g.group_id.as_str(), v, &one).await {
            if r.groups.len() == 1 {
                *g = r.groups.remove(0);
            }
        }
    }
    resp
}

/// OffsetFetch: v8+ per group, older versions (one group, a top-level error) whole.
pub async fn offset_fetch(
    b: &Broker,
    h: &RequestHeader,
    req: &OffsetFetchRequest,
    mut resp: OffsetFetchResponse,
) -> OffsetFetchResponse {
    let v = h.request_api_version;
    if forwarded(h) || v < 2 {
        // v0-1 report NOT_COORDINATOR per partition only: clients of those versions retry.
        return resp;
    }
    if v < 8 {
        if resp.error_code == not_coordinator() {
            if let Some(r) = from_coordinator(b, req.group_id.as_str(), v, req).await {
                return r;
            }
        }
        return resp;
    }
    for g in resp
        .groups
        .iter_mut()
        .filter(|g| g.error_code == not_coordinator())
    {
        let Some(asked) = req.groups.iter().find(|r| r.group_id == g.group_id) else {
            continue;
        };
        let one = req.clone().with_groups(vec![asked.clone()]);
        if let Some(mut r) = from_coordinator(b, g.group_id.as_str(), v, &one).await {
            if r.groups.len() == 1 {
                *g = r.groups.remove(0);
            }
        }
    }
    resp
}
