//! The one mapping from the transaction coordinator's errors ([`TxnError`]) to Kafka error
//! codes.

use kafka_protocol::ResponseError;

use crate::txn::TxnError;

/// The code of `e`. `fenced_known`: the request's version knows PRODUCER_FENCED (KIP-588:
/// InitProducerId v4+, AddPartitionsToTxn, AddOffsetsToTxn and EndTxn v2+); older ones get
/// INVALID_PRODUCER_EPOCH.
pub(crate) fn code(e: &TxnError, fenced_known: bool) -> i16 {
    match e {
        TxnError::NotCoordinator => ResponseError::NotCoordinator,
        TxnError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
        // Retriable: the client asks again (no controller leader for a moment, say).
        TxnError::CoordinatorNotAvailable(_) | TxnError::ProducerIdUnavailable(_) => {
            ResponseError::CoordinatorNotAvailable
        }
        TxnError::ConcurrentTransactions => ResponseError::ConcurrentTransactions,
        TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
        TxnError::ProducerFenced if fenced_known => ResponseError::ProducerFenced,
        TxnError::ProducerFenced => ResponseError::InvalidProducerEpoch,
        TxnError::InvalidTxnState => ResponseError::InvalidTxnState,
        TxnError::InvalidTransactionTimeout => ResponseError::InvalidTransactionTimeout,
        TxnError::TransactionalIdNotFound => ResponseError::TransactionalIdNotFound,
        TxnError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        TxnError::OperationNotAttempted => ResponseError::OperationNotAttempted,
    }
    .code()
}

/// The code of an outcome (0: none).
pub(crate) fn result_code(r: &Result<(), TxnError>, fenced_known: bool) -> i16 {
    r.as_ref().map_or_else(|e| code(e, fenced_known), |()| 0)
}
