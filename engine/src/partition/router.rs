//! How a partition's Raft messages from other replicas reach its actor: through a
//! [`RaftRouter`], which the topic table implements for the partitions this broker runs. The
//! cluster's RPC listener routes through it after checking who sent the message; a simulator
//! can deliver through the same trait without a network.

use raft::eraftpb::Message;

/// Why a message was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The partition does not run here (not created yet, or deleted): dropped, Raft
    /// retransmits.
    #[error("partition {0}-{1} is not here")]
    Unknown(String, i32),
    /// The sender is not a replica of the partition in this broker's metadata.
    #[error("broker {from} is not a replica of {topic}-{partition}")]
    NotAReplica {
        topic: String,
        partition: i32,
        from: i32,
    },
}

pub trait RaftRouter: Send + Sync {
    /// Hands `msg`, from broker `from`, to the partition's actor.
    fn deliver(
        &self,
        topic: &str,
        partition: i32,
        from: i32,
        msg: Message,
    ) -> Result<(), RouteError>;
}
