//! Why a group request was refused, in the coordinator's terms. The group layer returns these
//! (`Result<_, GroupError>`, or `Option<GroupError>` in answers that carry other fields with an
//! error); the handlers turn each into its Kafka error code in one place
//! (`crate::handlers::group_error`), so the state machines never deal in wire codes.

use super::store::StoreError;

/// The text of each is also the message ConsumerGroupHeartbeat and ConsumerGroupDescribe send
/// with the coordinator errors (`NotCoordinator`, `CoordinatorLoadInProgress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("the group id is empty")]
    InvalidGroupId,
    /// Another broker leads the group's `__consumer_offsets` partition, nobody does, or this
    /// broker was deposed while writing to it.
    #[error("this broker is not the group's coordinator")]
    NotCoordinator,
    /// This broker leads the group's partition but has not replayed it yet.
    #[error("this broker is loading the group as its new coordinator")]
    CoordinatorLoadInProgress,
    /// `__consumer_offsets` cannot be created or written.
    #[error("the group coordinator is not available")]
    CoordinatorNotAvailable,
    #[error("the session timeout is outside the broker's bounds")]
    InvalidSessionTimeout,
    #[error("the member's protocols do not fit the group's")]
    InconsistentGroupProtocol,
    /// JoinGroup v4+: the member must join again with the id it was given.
    #[error("the member must rejoin with the member id it was given")]
    MemberIdRequired,
    #[error("the group has no such member")]
    UnknownMemberId,
    #[error("the generation is not the group's current one")]
    IllegalGeneration,
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    /// Another member holds the static member's group instance id.
    #[error("the group instance id belongs to another member")]
    FencedInstanceId,
    #[error("the group does not exist (or is not of the kind asked about)")]
    GroupIdNotFound,
    #[error("the group still has members")]
    NonEmptyGroup,
    #[error("the group's members subscribe to the topic")]
    GroupSubscribedToTopic,
    #[error("the topic or partition does not exist")]
    UnknownTopicOrPartition,
    #[error("the commit's metadata is too large")]
    OffsetMetadataTooLarge,
    /// KIP-848: a commit or fetch with an epoch other than the member's current one.
    #[error("the member epoch is stale")]
    StaleMemberEpoch,
    /// KIP-848: a heartbeat with an epoch the group does not know for the member.
    #[error("the member epoch is fenced")]
    FencedMemberEpoch,
    /// KIP-848 members must commit with OffsetCommit v9+.
    #[error("the request version is too old for a consumer-protocol group")]
    UnsupportedVersion,
    #[error("the request is invalid")]
    InvalidRequest,
    #[error("the subscription's regular expression is invalid")]
    InvalidRegularExpression,
    #[error("the server assignor is not supported")]
    UnsupportedAssignor,
    /// KIP-848: a static member rejoined while its previous incarnation still holds partitions.
    #[error("the static member's previous incarnation has not released its id")]
    UnreleasedInstanceId,
    #[error("the group has reached its maximum size")]
    GroupMaxSizeReached,
    /// TxnOffsetCommit: `__consumer_offsets` refused the batch, a newer epoch of the producer
    /// having written there.
    #[error("the producer's epoch is fenced by a newer one")]
    InvalidProducerEpoch,
    /// TxnOffsetCommit (KIP-890): the producer's transaction does not include the group's
    /// `__consumer_offsets` partition (no AddOffsetsToTxn), or has ended.
    #[error("the producer's transaction does not include the group's offsets")]
    InvalidTxnState,
}

/// A write `__consumer_offsets` refused: a deposed leader is no longer the coordinator (the
/// client looks it up again); anything else is unavailability.
impl From<&StoreError> for GroupError {
    fn from(e: &StoreError) -> Self {
        use crate::internal_topic::InternalTopicError;
        use crate::log::producer_state::SequenceError;
        use crate::partition::PartitionError;
        if let InternalTopicError::Append {
            source: PartitionError::Sequence(SequenceError::Fenced { .. }),
            ..
        } = e
        {
            return GroupError::InvalidProducerEpoch;
        }
        if e.not_leader() {
            GroupError::NotCoordinator
        } else {
            GroupError::CoordinatorNotAvailable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::GroupError;

    /// These texts go to clients as ConsumerGroupHeartbeat's and ConsumerGroupDescribe's error
    /// messages.
    #[test]
    fn coordinator_errors_read_as_before() {
        assert_eq!(
            GroupError::NotCoordinator.to_string(),
            "this broker is not the group's coordinator"
        );
        assert_eq!(
            GroupError::CoordinatorLoadInProgress.to_string(),
            "this broker is loading the group as its new coordinator"
        );
    }
}
