//! The broker's own topics (`_schemas`: one partition; `__consumer_offsets`: one on a single
//! node, `group::store::CLUSTER_PARTITIONS` (6) in a cluster): how they are
//! replicated in a cluster, and reading them back (their owners replay them to rebuild their
//! state, and in a cluster the registry tails `_schemas`).

use kafka_protocol::records::{Record, RecordBatchDecoder};

use crate::broker::Broker;
use crate::log::batch::split_batches;
use crate::partition::{Cmd, PartitionError, PartitionHandle};

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
pub fn replication(b: &Broker) -> (i16, Vec<(String, String)>) {
    match &b.cluster {
        Some(c) => {
            let rf = c.members.all().len().clamp(1, 3) as i16;
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
                reply,
            })
            .await?;
        let Some(bytes) = read.records else { break };
        for (h, batch) in split_batches(&bytes).map_err(|e| corrupt(&e))? {
            let last = h.last_offset();
            if last < next {
                continue;
            }
            let mut buf = batch.clone();
            let set = RecordBatchDecoder::decode(&mut buf).map_err(|e| corrupt(&e))?;
            for r in set.records {
                if r.offset >= next && r.offset < until && !r.control {
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
