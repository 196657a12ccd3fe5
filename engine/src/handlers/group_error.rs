//! The one mapping from the group coordinator's errors ([`GroupError`]) to Kafka error codes.
//! The group layer decides what went wrong; which code a client sees for it is wire format.
//! Also the per-partition answers (OffsetCommit, OffsetDelete) built from its outcomes.

use kafka_protocol::ResponseError;

use kafka_protocol::messages::TopicName;

use super::topic_name;
use crate::group::{GroupError, PartitionResults};

impl From<GroupError> for ResponseError {
    fn from(e: GroupError) -> Self {
        match e {
            GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
            GroupError::NotCoordinator => ResponseError::NotCoordinator,
            GroupError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
            GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
            GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
            GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
            GroupError::MemberIdRequired => ResponseError::MemberIdRequired,
            GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
            GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
            GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
            GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
            GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound,
            GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
            GroupError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
            GroupError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
            GroupError::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge,
            GroupError::StaleMemberEpoch => ResponseError::StaleMemberEpoch,
            GroupError::FencedMemberEpoch => ResponseError::FencedMemberEpoch,
            GroupError::UnsupportedVersion => ResponseError::UnsupportedVersion,
            GroupError::InvalidRequest => ResponseError::InvalidRequest,
            GroupError::InvalidRegularExpression => ResponseError::InvalidRegularExpression,
            GroupError::UnsupportedAssignor => ResponseError::UnsupportedAssignor,
            GroupError::UnreleasedInstanceId => ResponseError::UnreleasedInstanceId,
            GroupError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
            GroupError::InvalidProducerEpoch => ResponseError::InvalidProducerEpoch,
            GroupError::InvalidTxnState => ResponseError::InvalidTxnState,
        }
    }
}

/// The error code of a group outcome: 0 when there is no error.
pub(crate) fn code(e: Option<GroupError>) -> i16 {
    e.map_or(0, |e| ResponseError::from(e).code())
}

/// A response's topics from per-partition outcomes (OffsetCommit, OffsetDelete): `topic` builds
/// one topic's entry from its name and partitions, `partition` one partition's from its index
/// and error code.
pub(crate) fn per_partition<T, P>(
    results: PartitionResults,
    topic: impl Fn(TopicName, Vec<P>) -> T,
    partition: impl Fn(i32, i16) -> P,
) -> Vec<T> {
    results
        .into_iter()
        .map(|(t, ps)| {
            let ps = ps
                .into_iter()
                .map(|(p, outcome)| partition(p, code(outcome.err())))
                .collect();
            topic(topic_name(&t), ps)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each error keeps the code the coordinator answered before errors were typed.
    #[test]
    fn codes_are_kafkas() {
        let cases = [
            (GroupError::InvalidGroupId, 24),
            (GroupError::NotCoordinator, 16),
            (GroupError::CoordinatorLoadInProgress, 14),
            (GroupError::CoordinatorNotAvailable, 15),
            (GroupError::InvalidSessionTimeout, 26),
            (GroupError::InconsistentGroupProtocol, 23),
            (GroupError::MemberIdRequired, 79),
            (GroupError::UnknownMemberId, 25),
            (GroupError::IllegalGeneration, 22),
            (GroupError::RebalanceInProgress, 27),
            (GroupError::FencedInstanceId, 82),
            (GroupError::GroupIdNotFound, 69),
            (GroupError::NonEmptyGroup, 68),
            (GroupError::GroupSubscribedToTopic, 86),
            (GroupError::UnknownTopicOrPartition, 3),
            (GroupError::OffsetMetadataTooLarge, 12),
            (GroupError::StaleMemberEpoch, 113),
            (GroupError::FencedMemberEpoch, 110),
            (GroupError::UnsupportedVersion, 35),
            (GroupError::InvalidRequest, 42),
            (GroupError::InvalidRegularExpression, 128),
            (GroupError::UnsupportedAssignor, 112),
            (GroupError::UnreleasedInstanceId, 111),
            (GroupError::GroupMaxSizeReached, 81),
            (GroupError::InvalidProducerEpoch, 47),
            (GroupError::InvalidTxnState, 48),
        ];
        for (e, c) in cases {
            assert_eq!(code(Some(e)), c, "{e:?}");
        }
        assert_eq!(code(None), 0);
    }
}
