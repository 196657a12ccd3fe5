//! Client quotas at the connection (KIP-219): which quotas a connection's requests count
//! against (`limits::quotas`), the throttle a response carries in `throttle_time_ms`, and the
//! muting that enforces it: the connection reads no request until the throttle has passed, as a
//! Kafka broker mutes the channel (the client also backs off by itself).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use kafka_protocol::messages::{RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::Encodable;

use crate::broker::Broker;
use crate::limits::quotas::{ClientLimits, QuotaType};
use crate::security::{Principal, Session};

/// A connection's quota state: the limits its requests count against (kept while the quotas,
/// the principal and the client id stay the same) and until when it is muted.
#[derive(Default)]
pub(super) struct ConnQuotas {
    limits: Option<Arc<ClientLimits>>,
    until: Option<tokio::time::Instant>,
}

impl ConnQuotas {
    /// The limits a request of `session` with `client_id` counts against: `None` when no
    /// quota is set anywhere (one atomic load, all the request path pays then) and for the
    /// broker's own calls (Kafka exempts inter-broker requests).
    pub fn limits(
        &mut self,
        broker: &Broker,
        session: &Session,
        client_id: &str,
    ) -> Option<Arc<ClientLimits>> {
        let quotas = &broker.security.quotas;
        if !quotas.active() {
            self.limits = None;
            return None;
        }
        if session.principal == Principal::broker() {
            return None;
        }
        let generation = quotas.generation();
        let user = &session.principal.name;
        if let Some(l) = &self.limits {
            if l.generation == generation && l.user == *user && l.client_id == client_id {
                return Some(l.clone());
            }
        }
        let state = broker.security.state();
        let l =
            Arc::new(quotas.resolve(&state.quotas, generation, user, client_id, Instant::now()));
        self.limits = Some(l.clone());
        Some(l)
    }

    /// A request's start: the limits it counts against (see [`ConnQuotas::limits`]) and, for a
    /// Produce, the throttle its bytes earned (the connection is muted for it at once, so
    /// that requests a client pipelines cannot slip past the quota). A Fetch is capped to
    /// what the client's consumer_byte_rate allows over the window, as Kafka does.
    pub fn begin(
        &mut self,
        broker: &Broker,
        session: &Session,
        header: &RequestHeader,
        request: &mut RequestKind,
        size: usize,
    ) -> (Option<Arc<ClientLimits>>, Throttle) {
        let client_id = header.client_id.as_deref().unwrap_or("");
        let Some(limits) = self.limits(broker, session, client_id) else {
            return (None, Throttle::NONE);
        };
        let mut earlier = Throttle::NONE;
        match request {
            RequestKind::Produce(_) => {
                earlier = record_produce(broker, &limits, size);
                self.mute(earlier.time);
            }
            RequestKind::Fetch(r) => {
                if let Some(max) = limits.fetch_max_bytes(broker.security.quotas.config()) {
                    r.max_bytes = r.max_bytes.min(max);
                }
            }
            _ => {}
        }
        (Some(limits), earlier)
    }

    /// Reads nothing more for `throttle` from now (or longer, if muted longer already).
    pub fn mute(&mut self, throttle: Duration) {
        if throttle.is_zero() {
            return;
        }
        let end = tokio::time::Instant::now() + throttle;
        self.until = Some(self.until.map_or(end, |u| u.max(end)));
    }

    /// Whether the connection is waiting out a throttle.
    pub fn muted(&mut self) -> bool {
        match self.until {
            None => false,
            Some(u) if u > tokio::time::Instant::now() => true,
            Some(_) => {
                self.until = None;
                false
            }
        }
    }

    /// When the current throttle ends.
    pub fn until(&self) -> Option<tokio::time::Instant> {
        self.until
    }
}

/// A throttle a client earned, and the quota type that set it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Throttle {
    pub time: Duration,
    pub kind: QuotaType,
}

impl Throttle {
    pub const NONE: Throttle = Throttle {
        time: Duration::ZERO,
        kind: QuotaType::Request,
    };

    fn max(self, other: Throttle) -> Throttle {
        if other.time > self.time {
            other
        } else {
            self
        }
    }
}

/// Records a Produce request's bytes (Kafka counts the whole request) before it is handled.
fn record_produce(broker: &Broker, limits: &ClientLimits, bytes: usize) -> Throttle {
    let time =
        broker
            .security
            .quotas
            .record(limits, QuotaType::Produce, bytes as f64, Instant::now());
    Throttle {
        time,
        kind: QuotaType::Produce,
    }
}

/// Records what a handled request counts against its client's other quotas (a Fetch
/// response's bytes; the time spent handling it, in Kafka's request_percentage units), sets the
/// largest throttle earned in the response's `throttle_time_ms` and returns it.
pub(super) fn settle(
    broker: &Broker,
    limits: &ClientLimits,
    version: i16,
    response: Option<&mut ResponseKind>,
    handling: Duration,
    earlier: Throttle,
) -> Duration {
    let quotas = &broker.security.quotas;
    let now = Instant::now();
    let mut worst = earlier;
    if let Some(resp) = response {
        if let (ResponseKind::Fetch(f), true) = (&*resp, limits.has(QuotaType::Fetch)) {
            let bytes = f.compute_size(version).unwrap_or(0);
            let time = quotas.record(limits, QuotaType::Fetch, bytes as f64, now);
            worst = worst.max(Throttle {
                time,
                kind: QuotaType::Fetch,
            });
        }
        let time = quotas.record(limits, QuotaType::Request, percent(handling), now);
        worst = worst.max(Throttle {
            time,
            kind: QuotaType::Request,
        });
        if !worst.time.is_zero() {
            set_throttle_time(resp, worst.time.as_millis().min(i32::MAX as u128) as i32);
        }
    }
    if !worst.time.is_zero() {
        quotas.count_throttle(worst.kind, worst.time);
    }
    worst.time
}

/// Records the time spent encoding a response, unchecked (as Kafka records its network
/// thread's time): it counts towards the next request's throttle.
pub(super) fn record_encoding(broker: &Broker, limits: &ClientLimits, spent: Duration) {
    let quotas = &broker.security.quotas;
    if limits.has(QuotaType::Request) {
        let _ = quotas.record(limits, QuotaType::Request, percent(spent), Instant::now());
    }
}

/// Seconds of one thread as Kafka's request_percentage counts them.
fn percent(d: Duration) -> f64 {
    d.as_secs_f64() * 100.0
}

/// A handler's future, timed while it runs on the thread (not while it waits) when `spent`
/// is `Some`: the request time a request_percentage quota counts.
pub(super) struct Timed<F> {
    pub inner: F,
    pub spent: Option<Duration>,
}

impl<F: Future + Unpin> Future for Timed<F> {
    type Output = (F::Output, Duration);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let start = self.spent.map(|_| Instant::now());
        let polled = Pin::new(&mut self.inner).poll(cx);
        if let (Some(start), Some(spent)) = (start, self.spent.as_mut()) {
            *spent += start.elapsed();
        }
        polled.map(|out| (out, self.spent.unwrap_or_default()))
    }
}

/// Sets `throttle_time_ms` in every response type that has it (encoded in the versions
/// where Kafka defines it, dropped in the others by the encoder).
pub(super) fn set_throttle_time(resp: &mut ResponseKind, ms: i32) {
    macro_rules! set {
        ($($api:ident),* $(,)?) => {
            match resp {
                $(ResponseKind::$api(r) => r.throttle_time_ms = ms,)*
                _ => {}
            }
        };
    }
    set!(
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        OffsetCommit,
        OffsetFetch,
        FindCoordinator,
        JoinGroup,
        Heartbeat,
        LeaveGroup,
        SyncGroup,
        DescribeGroups,
        ListGroups,
        ApiVersions,
        CreateTopics,
        DeleteTopics,
        DeleteRecords,
        InitProducerId,
        OffsetForLeaderEpoch,
        AddPartitionsToTxn,
        AddOffsetsToTxn,
        EndTxn,
        TxnOffsetCommit,
        DescribeAcls,
        CreateAcls,
        DeleteAcls,
        DescribeConfigs,
        AlterConfigs,
        AlterReplicaLogDirs,
        DescribeLogDirs,
        CreatePartitions,
        CreateDelegationToken,
        RenewDelegationToken,
        ExpireDelegationToken,
        DescribeDelegationToken,
        DeleteGroups,
        ElectLeaders,
        IncrementalAlterConfigs,
        AlterPartitionReassignments,
        ListPartitionReassignments,
        OffsetDelete,
        DescribeClientQuotas,
        AlterClientQuotas,
        DescribeUserScramCredentials,
        AlterUserScramCredentials,
        AlterPartition,
        UpdateFeatures,
        FetchSnapshot,
        DescribeCluster,
        DescribeProducers,
        BrokerRegistration,
        BrokerHeartbeat,
        UnregisterBroker,
        DescribeTransactions,
        ListTransactions,
        AllocateProducerIds,
        ConsumerGroupHeartbeat,
        ConsumerGroupDescribe,
        ControllerRegistration,
        GetTelemetrySubscriptions,
        PushTelemetry,
        AssignReplicasToDirs,
        ListConfigResources,
        DescribeTopicPartitions,
        ShareGroupHeartbeat,
        ShareGroupDescribe,
        ShareFetch,
        ShareAcknowledge,
        AddRaftVoter,
        RemoveRaftVoter,
        UpdateRaftVoter,
        DescribeShareGroupOffsets,
        AlterShareGroupOffsets,
        DeleteShareGroupOffsets,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{FetchResponse, ProduceResponse, SaslHandshakeResponse};

    #[test]
    fn throttle_time_is_set_where_the_response_has_it() {
        let mut p = ResponseKind::Produce(ProduceResponse::default());
        set_throttle_time(&mut p, 250);
        assert!(matches!(p, ResponseKind::Produce(r) if r.throttle_time_ms == 250));
        let mut f = ResponseKind::Fetch(FetchResponse::default());
        set_throttle_time(&mut f, 7);
        assert!(matches!(f, ResponseKind::Fetch(r) if r.throttle_time_ms == 7));
        // No such field: left as it is.
        let mut s = ResponseKind::SaslHandshake(SaslHandshakeResponse::default());
        set_throttle_time(&mut s, 7);
        assert!(matches!(s, ResponseKind::SaslHandshake(_)));
    }
}
