//! Why a broker operation or a broker's start failed.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::InvalidConfig;
use crate::topics::MetaError;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("invalid topic name: {0}")]
    InvalidTopicName(String),
    /// A name that would make an unsafe path (refused where the path is built).
    #[error(transparent)]
    UnsafeName(#[from] crate::names::NameError),
    #[error("'{0}' is an internal topic and cannot be deleted; delete consumer groups with 'icestream group delete'")]
    InternalTopic(String),
    #[error("'{0}' is an internal topic: its partition count is fixed when it is created (consumer groups and schemas are placed by it)")]
    InternalPartitions(String),
    #[error("invalid partition count {0}: must be between 1 and 100000")]
    InvalidPartitions(i32),
    #[error("topic '{topic}' has {current} partitions; the new count {requested} must be larger")]
    PartitionsNotIncreased {
        topic: String,
        current: usize,
        requested: i32,
    },
    #[error("replication factor {0} is not possible on a {1}-broker cluster")]
    InvalidReplicationFactor(i16, usize),
    #[error("controller: {0}")]
    Controller(String),
    #[error(transparent)]
    InvalidConfig(#[from] InvalidConfig),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("storage error: {0}")]
    Storage(#[from] std::io::Error),
    #[error("remote storage: {0}")]
    Remote(#[from] crate::remote::RemoteError),
    /// An unmount would cut these transactions off from their markers.
    #[error("topic '{topic}' has transactions open (partition, producer id, first offset): {open:?}; unmount it once they end")]
    TransactionsOpen {
        topic: String,
        open: Vec<(i32, i64, i64)>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    #[error("cannot start shards: {0}")]
    Shards(std::io::Error),
    #[error("cannot listen for Kafka clients on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("cannot read producer id state: {0}")]
    ProducerIds(std::io::Error),
    #[error("cannot read the dynamic broker configs: {0}")]
    DynamicConfigs(std::io::Error),
    #[error("cannot read the users, ACLs and quotas: {0}")]
    Security(std::io::Error),
    #[error("cannot open a partition: {0}")]
    Partition(#[from] BrokerError),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("cannot join a cluster with this data directory: {0}")]
    Adopt(String),
    #[error("TLS: {0}")]
    Tls(#[from] crate::security::tls::TlsError),
    #[error("listener {0} is SSL or SASL_SSL but no TLS certificate is configured")]
    NoTls(String),
    #[error("--rpc-tls needs --tls-cert-file, --tls-key-file and --tls-ca-file")]
    NoRpcTls,
    #[error("--rpc-tls (its --tls-cert-file, --tls-key-file and --tls-ca-file): {0}")]
    RpcTls(crate::security::tls::TlsError),
}

impl From<crate::cluster::ApplyError> for BrokerError {
    fn from(e: crate::cluster::ApplyError) -> Self {
        use crate::cluster::ApplyError;
        match e {
            ApplyError::TopicExists(n) => BrokerError::TopicExists(n),
            ApplyError::UnknownTopic(n) => BrokerError::UnknownTopic(n),
            ApplyError::Invalid(m) => BrokerError::Controller(format!("refused: {m}")),
            ApplyError::Other(m) => BrokerError::Controller(m),
        }
    }
}
