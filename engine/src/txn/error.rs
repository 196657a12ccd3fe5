//! Why a transaction request was refused, in the coordinator's terms; the handlers give each
//! its Kafka error code (`crate::handlers::txn_error`), so the state machine never deals in
//! wire codes.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    /// Another broker leads the id's `__transaction_state` partition, nobody does, or this
    /// broker was deposed while writing to it.
    #[error("this broker is not the transaction's coordinator")]
    NotCoordinator,
    /// This broker leads the id's partition but has not replayed it yet.
    #[error("this broker is loading the transaction as its new coordinator")]
    CoordinatorLoadInProgress,
    /// `__transaction_state` cannot be created or written.
    #[error("the transaction coordinator is not available: {0}")]
    CoordinatorNotAvailable(String),
    /// A state change for this id is being written, or its markers are.
    #[error("another operation on this transaction is in progress")]
    ConcurrentTransactions,
    #[error("the producer id is not the one assigned to this transactional id")]
    InvalidProducerIdMapping,
    /// An older epoch: a newer producer with the same transactional id fenced this one.
    #[error("a newer producer with the same transactional id fenced this one")]
    ProducerFenced,
    #[error("the operation is not valid in the transaction's state")]
    InvalidTxnState,
    #[error("the transaction timeout is outside 1..=transaction.max.timeout.ms")]
    InvalidTransactionTimeout,
    #[error("the transactional id is not known")]
    TransactionalIdNotFound,
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// Another partition of the same request was refused; this one was not tried.
    #[error("not attempted: another partition of the request was refused")]
    OperationNotAttempted,
    /// No producer id could be allocated (the controller, or the local counter).
    #[error("cannot allocate a producer id: {0}")]
    ProducerIdUnavailable(String),
}
