//! Writing transaction markers: a coordinator's commit or abort marker goes to each partition
//! of the transaction through its leader, here (the partition actor's `WriteMarker`) or on
//! another broker (WriteTxnMarkers, as Kafka's coordinators send it). A marker written to a
//! `__consumer_offsets` partition also settles the transaction's offsets in the group
//! coordinator, which only then makes them visible.

use kafka_protocol::ResponseError;

use super::Broker;
use crate::log::control::ControlType;
use crate::log::producer_state::SequenceError;
use crate::partition::txn::Marker;
use crate::partition::{Cmd, PartitionError};
use crate::topics::OFFSETS_TOPIC;
use crate::txn::{MarkerBatch, MarkerOutcome};

/// Why a marker was not written to a partition.
#[derive(Debug, thiserror::Error)]
pub enum MarkerError {
    #[error("no such topic or partition")]
    Unknown,
    #[error("this broker does not lead the partition")]
    NotLeader,
    #[error(transparent)]
    Partition(PartitionError),
}

impl MarkerError {
    /// The Kafka error code WriteTxnMarkers answers with.
    pub fn code(&self) -> i16 {
        match self {
            MarkerError::Unknown => ResponseError::UnknownTopicOrPartition.code(),
            MarkerError::NotLeader => ResponseError::NotLeaderOrFollower.code(),
            MarkerError::Partition(PartitionError::Sequence(SequenceError::Fenced { .. })) => {
                ResponseError::InvalidProducerEpoch.code()
            }
            MarkerError::Partition(e) => crate::handlers::partition_error(e),
        }
    }

    /// Whether writing again can never succeed: the producer moved to a newer epoch, or a newer
    /// coordinator already wrote for it.
    pub fn is_final(&self) -> bool {
        matches!(self, MarkerError::Partition(PartitionError::Sequence(_)))
    }
}

/// Writes a marker to a partition this broker leads and waits until it is committed.
pub(crate) async fn write_local(
    b: &Broker,
    topic: &str,
    partition: i32,
    marker: Marker,
) -> Result<(), MarkerError> {
    let t = b.topics.get_internal(topic).ok_or(MarkerError::Unknown)?;
    let p = t.partition(partition).ok_or(MarkerError::Unknown)?.clone();
    if !b.leads(&t, partition) {
        return Err(MarkerError::NotLeader);
    }
    p.ask(|reply| Cmd::WriteMarker { marker, reply })
        .await
        .map_err(|e| match e {
            PartitionError::NotLeader | PartitionError::Stopped => MarkerError::NotLeader,
            e => MarkerError::Partition(e),
        })?;
    if topic == OFFSETS_TOPIC {
        b.groups.complete_txn(
            partition,
            marker.producer_id,
            marker.control == ControlType::Commit,
        );
    }
    Ok(())
}

/// How writing a marker to one partition ended, for the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    Yes,
    /// Not now (no leader, not the leader, a timeout, storage): try again later.
    Retry(String),
    /// Never: the partition is gone, or refuses this producer epoch or coordinator for good.
    Gone(String),
}

/// Writes `marker` to every partition of `partitions` through its leader (this broker's
/// partitions directly, the others' with one WriteTxnMarkers request per leader) and answers
/// per partition, in the order given.
pub(crate) async fn write_all(
    b: &Broker,
    marker: Marker,
    partitions: &[(String, i32)],
) -> Vec<Written> {
    let mut out = vec![Written::Retry("not attempted".into()); partitions.len()];
    let mut by_leader: std::collections::BTreeMap<i32, Vec<usize>> = Default::default();
    for (i, (topic, p)) in partitions.iter().enumerate() {
        match b.topics.get_internal(topic) {
            None => out[i] = Written::Gone(format!("topic {topic} does not exist")),
            Some(t) if t.partition(*p).is_none() => {
                out[i] = Written::Gone(format!("topic {topic} has no partition {p}"))
            }
            Some(t) => by_leader
                .entry(b.partition_leader(&t, *p))
                .or_default()
                .push(i),
        }
    }
    let me = b.config.node_id;
    let sends = by_leader.into_iter().map(|(leader, idx)| async move {
        let answers: Vec<Written> = if leader < 0 {
            idx.iter()
                .map(|_| Written::Retry("no leader".into()))
                .collect()
        } else if leader == me {
            let writes = idx.iter().map(|&i| {
                let (topic, p) = &partitions[i];
                write_local(b, topic, *p, marker)
            });
            futures_util::future::join_all(writes)
                .await
                .into_iter()
                .map(|r| match r {
                    Ok(()) => Written::Yes,
                    Err(e) if e.is_final() => Written::Gone(e.to_string()),
                    Err(e) => Written::Retry(e.to_string()),
                })
                .collect()
        } else {
            ask_leader(b, leader, marker, idx.iter().map(|&i| &partitions[i])).await
        };
        (idx, answers)
    });
    for (idx, answers) in futures_util::future::join_all(sends).await {
        for (i, a) in idx.into_iter().zip(answers) {
            out[i] = a;
        }
    }
    out
}

/// Sends one WriteTxnMarkers to broker `leader` for `partitions`, answered in their order.
async fn ask_leader<'a>(
    b: &Broker,
    leader: i32,
    marker: Marker,
    partitions: impl Iterator<Item = &'a (String, i32)>,
) -> Vec<Written> {
    use kafka_protocol::messages::write_txn_markers_request::{
        WritableTxnMarker, WritableTxnMarkerTopic,
    };
    use kafka_protocol::messages::{ProducerId, WriteTxnMarkersRequest};
    let partitions: Vec<&(String, i32)> = partitions.collect();
    let mut topics: Vec<WritableTxnMarkerTopic> = Vec::new();
    for (t, p) in &partitions {
        match topics.iter_mut().find(|x| x.name.as_str() == t) {
            Some(x) => x.partition_indexes.push(*p),
            None => topics.push(
                WritableTxnMarkerTopic::default()
                    .with_name(crate::handlers::topic_name(t))
                    .with_partition_indexes(vec![*p]),
            ),
        }
    }
    let req = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(marker.producer_id))
        .with_producer_epoch(marker.producer_epoch)
        .with_transaction_result(marker.control == ControlType::Commit)
        .with_coordinator_epoch(marker.coordinator_epoch)
        .with_topics(topics)]);
    let resp = match crate::handlers::forward::ask_broker(
        b,
        &crate::security::Session::internal(),
        leader,
        1,
        &req,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            let why = format!("broker {leader}: {e}");
            return partitions
                .iter()
                .map(|_| Written::Retry(why.clone()))
                .collect();
        }
    };
    partitions
        .iter()
        .map(|(t, p)| {
            let code = resp
                .markers
                .iter()
                .flat_map(|m| &m.topics)
                .filter(|x| x.name.as_str() == t)
                .flat_map(|x| &x.partitions)
                .find(|x| x.partition_index == *p)
                .map(|x| x.error_code);
            match code.map(ResponseError::try_from_code) {
                Some(None) => Written::Yes,
                None => Written::Retry(format!("broker {leader} did not answer for {t}-{p}")),
                Some(Some(e)) => match e {
                    ResponseError::InvalidProducerEpoch
                    | ResponseError::TransactionCoordinatorFenced => {
                        Written::Gone(format!("broker {leader}: {e}"))
                    }
                    e => Written::Retry(format!("broker {leader}: {e}")),
                },
            }
        })
        .collect()
}

/// The transaction coordinator's [`crate::txn::TxnHost::write_markers`].
pub(crate) async fn write(b: &Broker, m: MarkerBatch) -> Vec<MarkerOutcome> {
    let marker = Marker {
        producer_id: m.producer_id,
        producer_epoch: m.producer_epoch,
        control: ControlType::from_commit(m.commit),
        coordinator_epoch: m.coordinator_epoch,
    };
    write_all(b, marker, &m.partitions)
        .await
        .into_iter()
        .map(|w| match w {
            Written::Yes => MarkerOutcome::Written,
            Written::Retry(why) => MarkerOutcome::Retry(why),
            Written::Gone(why) => MarkerOutcome::Gone(why),
        })
        .collect()
}
