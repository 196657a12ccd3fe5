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
