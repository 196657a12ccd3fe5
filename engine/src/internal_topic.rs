//! The broker's own topics (`_schemas`: one partition; `__consumer_offsets`: one on a single
//! node, `group::store::CLUSTER_PARTITIONS` (6) in a cluster), through one seam their owners
//! (the group coordinator and the schema registry) share: [`InternalTopic`] creates the topic
//! on first use (compacted, kept forever; replicated in a cluster), appends with acks=all and
//! replays a partition to rebuild the owner's state (in a cluster the registry also tails
//! `_schemas` with [`read_range`]). The owners reach the broker only through [`TopicHost`],
//! which the broker implements, so nothing here or in them imports the broker.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kafka_protocol::records::{Record, RecordBatchDecoder};
use tokio::sync::oneshot;

use crate::log::batch::{self, split_batches, Compression, NewRecord};
use crate::metrics::Metrics;
use crate::partition::{Cmd, PartitionError, PartitionHandle, ProduceOk};
use crate::topics::{Topic, TopicTable};

/// What the owners of internal topics (the group coordinator, the schema registry) need of the
/// broker: its topics, who leads a partition, and creating a topic (through the controller in
/// a cluster).
pub trait TopicHost: Send + Sync {
    fn node_id(&self) -> i32;
    fn topics(&self) -> &TopicTable;
    fn metrics(&self) -> &Metrics;
    /// The number of brokers in the cluster; `None` on a single node.
    fn cluster_size(&self) -> Option<usize>;
    /// Wall-clock milliseconds for the records and timestamps the group coordinator writes:
    /// the machine's clock, or a simulation's.
    fn now_ms(&self) -> i64 {
        crate::time::now_ms()
    }
    /// Which broker leads a partition (-1 during an election) and its leader epoch.
    fn partition_leader_epoch(&self, t: &Topic, partition: i32) -> (i32, i32);
    fn partition_leader(&self, t: &Topic, partition: i32) -> i32 {
        self.partition_leader_epoch(t, partition).0
    }
    /// The partitions an internal topic is created with in a cluster, when configured
    /// (`--offsets-topic-partitions`); `None`: the topic's own default.
    fn internal_partitions(&self, _name: &str) -> Option<i32> {
        None
    }
    /// KIP-890: whether transaction `txn_id` of producer `producer_id` at `epoch` includes
    /// `partition` of `topic` (the group coordinator asks before a transactional offset
    /// commit). A host without transactions has nothing to check.
    fn verify_txn<'a>(
        &'a self,
        _txn_id: &'a str,
        _producer_id: i64,
        _epoch: i16,
        _topic: &'a str,
        _partition: i32,
    ) -> crate::partition::verify::VerifyFuture<'a> {
        Box::pin(async { Ok(()) })
    }
    /// Creates a topic with these settings (`replication` -1: the default).
    fn create_topic<'a>(
        &'a self,
        name: &'a str,
        partitions: i32,
        replication: i16,
        configs: &'a [(String, String)],
    ) -> CreateFuture<'a>;
}

pub type CreateFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Arc<Topic>, CreateError>> + Send + 'a>>;

/// Why [`TopicHost::create_topic`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// A config the broker does not support (compaction, where it has none).
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("topic '{0}' already exists")]
    Exists(String),
    #[error("{0}")]
    Other(String),
}

/// One internal topic and how many partitions it is created with.
#[derive(Debug, Clone, Copy)]
pub struct InternalTopic {
    pub name: &'static str,
    /// Partitions on a single node and in a cluster.
    pub partitions: (i32, i32),
}

#[derive(Debug, thiserror::Error)]
pub enum InternalTopicError {
    #[error("cannot create {topic}: {source}")]
    Create {
        topic: &'static str,
        source: CreateError,
    },
    #[error("cannot write to {topic}: {source}")]
    Append {
        topic: &'static str,
        source: PartitionError,
    },
    #[error("{topic} holds a malformed batch: {reason}")]
    Corrupt { topic: &'static str, reason: String },
}

impl InternalTopicError {
    /// The partition refused a write or read because this broker no longer leads it.
    pub fn not_leader(&self) -> bool {
        matches!(
            self,
            InternalTopicError::Append {
                source: PartitionError::NotLeader,
                ..
            }
        )
    }
}

impl InternalTopic {
    /// The topic, created on first use: compacted where the broker supports compaction
    /// (otherwise kept forever), `retention.ms=-1`. In a cluster it is created through the
    /// controller; concurrent creators race harmlessly (one record wins, the others find it).
    pub async fn topic(&self, b: &dyn TopicHost) -> Result<Arc<Topic>, InternalTopicError> {
        if let Some(t) = b.topics().get(self.name) {
            return Ok(t);
        }
        let create = |source| InternalTopicError::Create {
            topic: self.name,
            source,
        };
        let partitions = if b.cluster_size().is_some() {
            b.internal_partitions(self.name)
                .unwrap_or(self.partitions.1)
        } else {
            self.partitions.0
        };
        let (replication, mut configs) = replication(b.cluster_size());
        configs.push(("retention.ms".to_string(), "-1".to_string()));
        let mut compacted = configs.clone();
        compacted.push(("cleanup.policy".to_string(), "compact".to_string()));
        let created = match b
            .create_topic(self.name, partitions, replication, &compacted)
            .await
        {
            Err(CreateError::InvalidConfig(_)) => {
                b.create_topic(self.name, partitions, replication, &configs)
                    .await
            }
            other => other,
        };
        match created {
            Ok(t) => Ok(t),
            Err(CreateError::Exists(_)) => b
                .topics()
                .get(self.name)
                .ok_or_else(|| create(CreateError::Other(format!("{} vanished", self.name)))),
            Err(e) => Err(create(e)),
        }
    }

    /// Partition `p`, the topic created on first use.
    pub async fn partition(
        &self,
        b: &dyn TopicHost,
        p: i32,
    ) -> Result<PartitionHandle, InternalTopicError> {
        let t = self.topic(b).await?;
        self.nth(&t, p)
    }

    fn nth(&self, t: &Topic, p: i32) -> Result<PartitionHandle, InternalTopicError> {
        t.partition(p).cloned().ok_or(InternalTopicError::Corrupt {
            topic: self.name,
            reason: format!("no partition {p}"),
        })
    }

    /// Sends records to a partition as one uncompressed batch; the receiver answers once they
    /// are committed (acks=all). For writes the caller need not wait for.
    pub fn send(
        &self,
        p: &PartitionHandle,
        records: &[NewRecord],
    ) -> oneshot::Receiver<Result<ProduceOk, PartitionError>> {
        match batch::encode_batch(records, Compression::None) {
            Ok(bytes) => self.send_batch(p, &bytes),
            Err(e) => failed(PartitionError::Storage(std::io::Error::other(
                e.to_string(),
            ))),
        }
    }

    /// Sends a batch already encoded (the group coordinator's transactional offset commits,
    /// which carry their producer id and epoch); answers as [`InternalTopic::send`].
    pub fn send_batch(
        &self,
        p: &PartitionHandle,
        bytes: &bytes::Bytes,
    ) -> oneshot::Receiver<Result<ProduceOk, PartitionError>> {
        let batches = match split_batches(bytes) {
            Ok(b) => b,
            Err(e) => {
                return failed(PartitionError::Storage(std::io::Error::other(
                    e.to_string(),
                )))
            }
        };
        let (tx, rx) = oneshot::channel();
        if let Err(e) = p.tx.send(Cmd::Produce {
            batches,
            reply: tx,
            acks_all: true,
            verify: None,
        }) {
            if let Cmd::Produce { reply, .. } = e.0 {
                let _ = reply.send(Err(PartitionError::Stopped));
            }
        }
        rx
    }

    /// Appends an encoded batch to partition `p` and waits until it is committed.
    pub async fn append_batch(
        &self,
        b: &dyn TopicHost,
        p: i32,
        bytes: &bytes::Bytes,
    ) -> Result<ProduceOk, InternalTopicError> {
        let handle = self.partition(b, p).await?;
        let append = |source| InternalTopicError::Append {
            topic: self.name,
            source,
        };
        self.send_batch(&handle, bytes)
            .await
            .map_err(|_| append(PartitionError::Stopped))?
            .map_err(append)
    }

    /// Appends records to partition `p` and waits until they are committed.
    pub async fn append(
        &self,
        b: &dyn TopicHost,
        p: i32,
        records: &[NewRecord],
    ) -> Result<ProduceOk, InternalTopicError> {
        let handle = self.partition(b, p).await?;
        let append = |source| InternalTopicError::Append {
            topic: self.name,
            source,
        };
        self.send(&handle, records)
            .await
            .map_err(|_| append(PartitionError::Stopped))?
            .map_err(append)
    }

    /// Calls `apply` with every data record of partition `p` up to its high watermark (nothing
    /// if the topic does not exist yet).
    pub async fn replay(
        &self,
        b: &dyn TopicHost,
        p: i32,
        apply: impl FnMut(Record),
    ) -> Result<(), InternalTopicError> {
        self.replay_records(b, p, false, apply).await
    }

    /// As [`InternalTopic::replay`], with the control records (transaction markers) too: an
    /// owner that writes transactional batches must see where each transaction ends.
    pub async fn replay_with_control(
        &self,
        b: &dyn TopicHost,
        p: i32,
        apply: impl FnMut(Record),
    ) -> Result<(), InternalTopicError> {
        self.replay_records(b, p, true, apply).await
    }

    async fn replay_records(
        &self,
        b: &dyn TopicHost,
        p: i32,
        control: bool,
        apply: impl FnMut(Record),
    ) -> Result<(), InternalTopicError> {
        let Some(t) = b.topics().get(self.name) else {
            return Ok(());
        };
        let handle = self.nth(&t, p)?;
        let marks = *handle.marks.borrow();
        read_records(&handle, marks.log_start, marks.high, control, apply)
            .await
            .map(|_| ())
            .map_err(|e| match e {
                ReplayError::Partition(source) => InternalTopicError::Append {
                    topic: self.name,
                    source,
                },
                ReplayError::Corrupt(reason) => InternalTopicError::Corrupt {
                    topic: self.name,
                    reason,
                },
            })
    }
}

/// A receiver already answered with `e`.
fn failed(e: PartitionError) -> oneshot::Receiver<Result<ProduceOk, PartitionError>> {
    let (tx, rx) = oneshot::channel();
    let _ = tx.send(Err(e));
    rx
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Partition(#[from] PartitionError),
    #[error("malformed record batch: {0}")]
    Corrupt(String),
}

/// Replication factor and configs of an internal topic: in a cluster RF = min(3, brokers)
/// and min.insync.replicas = min(2, RF), so an acknowledged write survives one broker's loss
/// (on a single node: the default, 1, and no override).
pub fn replication(cluster_size: Option<usize>) -> (i16, Vec<(String, String)>) {
    match cluster_size {
        Some(n) => {
            let rf = n.clamp(1, 3) as i16;
            (
                rf,
                vec![("min.insync.replicas".to_string(), rf.min(2).to_string())],
            )
        }
        None => (-1, vec![]),
    }
}

/// Calls `apply` with every data record (control records skipped) from the log start up to
/// the high watermark as it is when the replay starts, in offset order.
pub async fn replay(p: &PartitionHandle, apply: impl FnMut(Record)) -> Result<(), ReplayError> {
    let marks = *p.marks.borrow();
    read_range(p, marks.log_start, marks.high, apply).await?;
    Ok(())
}

/// Calls `apply` with every data record from `from` up to `until` (exclusive), in offset
/// order; returns the offset to continue from.
pub async fn read_range(
    p: &PartitionHandle,
    from: i64,
    until: i64,
    apply: impl FnMut(Record),
) -> Result<i64, ReplayError> {
    read_records(p, from, until, false, apply).await
}

/// [`read_range`], with the control records when `control`.
async fn read_records(
    p: &PartitionHandle,
    from: i64,
    until: i64,
    control: bool,
    mut apply: impl FnMut(Record),
) -> Result<i64, ReplayError> {
    let corrupt = |e: &dyn std::fmt::Display| ReplayError::Corrupt(e.to_string());
    let mut next = from;
    while next < until {
        let from = next;
        let read = p
            .ask(|reply| Cmd::Read {
                offset: from,
                max_bytes: 1 << 20,
                committed: false,
                in_place: false,
                reply,
            })
            .await?;
        let Some(stored) = read.records else { break };
        let bytes = stored.into_bytes().map_err(PartitionError::Storage)?;
        for (h, batch) in split_batches(&bytes).map_err(|e| corrupt(&e))? {
            let last = h.last_offset();
            if last < next {
                continue;
            }
            let mut buf = batch.clone();
            let set = RecordBatchDecoder::decode(&mut buf).map_err(|e| corrupt(&e))?;
            for r in set.records {
                if r.offset >= next && r.offset < until && (control || !r.control) {
                    apply(r);
                }
            }
            next = next.max(last + 1);
        }
        if next == from {
            break;
        }
    }
    Ok(next.min(until).max(from))
}
