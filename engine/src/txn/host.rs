//! The seam between the transaction coordinator and the broker: what the coordinator needs
//! besides its internal topic (a fresh producer id, markers written to the data partitions).
//! The broker implements it (`broker/txn_host.rs`), so nothing in `txn` imports the broker.

pub trait TxnHost: crate::internal_topic::TopicHost {
    /// A producer id never handed out before (through the controller in a cluster).
    fn new_producer_id(&self) -> HostFuture<'_, Result<i64, String>>;
    /// Writes one marker to each partition (to its leader, here or on another broker) and
    /// answers per partition, in the order given.
    fn write_markers(&self, m: MarkerBatch) -> HostFuture<'_, Vec<MarkerOutcome>>;
}
pub type HostFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone)]
pub struct MarkerBatch {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    /// The leader epoch (Raft term) of the coordinator's `__transaction_state` partition.
    pub coordinator_epoch: i32,
    pub partitions: Vec<(String, i32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkerOutcome {
    Written,
    /// Not written now (no leader, not leader, timeout, storage): try again later.
    Retry(String),
    /// Nothing to write: the topic or partition no longer exists, or a newer epoch has
    /// already fenced this one (the partition refuses it for good).
    Gone(String),
}
