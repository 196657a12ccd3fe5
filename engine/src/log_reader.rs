//! Reading a partition's records from an offset across both tiers, for in-process consumers
//! such as the Iceberg translator. Local offsets come from the partition actor (`Cmd::Read`,
//! like Fetch); offsets below the local start come from the remote tier directly, so a slow
//! object store never holds up the partition's producers.

use bytes::Bytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};
use uuid::Uuid;

use crate::broker::Broker;
use crate::log::batch::split_batches;
use crate::log::file_slice::Stored;
use crate::log::producer_state::AbortedTxn;
use crate::partition::{Cmd, PartitionError, PartitionHandle, Watermarks};
use crate::remote::{RemoteError, RemotePartition};

#[derive(Debug, thiserror::Error)]
pub enum LogReadError {
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("topic '{0}' has no partition {1}")]
    UnknownPartition(String, i32),
    #[error(transparent)]
    Partition(#[from] PartitionError),
    #[error("remote tier: {0}")]
    Remote(#[from] RemoteError),
    #[error("malformed record batch at offset {offset}: {reason}")]
    Corrupt { offset: i64, reason: String },
}

/// Records read from one partition.
#[derive(Debug)]
pub struct LogRead {
    /// Data records (control records left out) at or after the requested offset, in order.
    pub records: Vec<Record>,
    /// The offset to read next: after the last batch returned (control batches and compacted
    /// gaps included), or the requested offset when nothing was readable.
    pub next_offset: i64,
    /// Stored bytes the batches took (compressed, as on disk).
    pub bytes: usize,
    pub marks: Watermarks,
}

impl Broker {
    /// In-process readers (the Iceberg translation, internal topics) also read a topic hidden
    /// for an unmount: what finishes with it reads it to the end.
    fn partition_handle(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(Uuid, PartitionHandle), LogReadError> {
        let t = self
            .topics
            .get_internal(topic)
            .ok_or_else(|| LogReadError::UnknownTopic(topic.into()))?;
        let p = t
            .partition(partition)
            .ok_or_else(|| LogReadError::UnknownPartition(topic.into(), partition))?;
        Ok((t.id, p.clone()))
    }

    /// The partition's watermarks now.
    pub fn watermarks(&self, topic: &str, partition: i32) -> Result<Watermarks, LogReadError> {
        let (_, p) = self.partition_handle(topic, partition)?;
        let marks = *p.marks.borrow();
        Ok(marks)
    }

    /// Stored batches from `offset`, about `max_bytes` of them, with the watermarks they were
    /// read under: below the local start from the remote tier, straight from the handler so a
    /// slow object store never holds up the partition's producers; otherwise from the
    /// partition actor. Fetch and in-process readers both read through here. `committed`
    /// (read_committed) reads stop at the last stable offset and come with the aborted
    /// transactions they overlap. `in_place` answers local batches as where they lie in their
    /// segment file (for sendfile) rather than read into memory.
    pub async fn read_stored(
        &self,
        id: &RemotePartition,
        p: &PartitionHandle,
        offset: i64,
        max_bytes: usize,
        committed: bool,
        in_place: bool,
    ) -> Result<StoredRead, LogReadError> {
        let marks = *p.marks.borrow();
        if offset >= marks.log_start && offset < marks.local_start {
            if let Some(tier) = &self.remote {
                let mut records = tier.read(id, offset, max_bytes).await?;
                if let Some(r) = &records {
                    self.metrics.fetched_bytes.inc_by(r.len() as u64);
                }
                let mut aborted = Vec::new();
                if committed {
                    records = records.and_then(|r| below(&r, marks.stable));
                    if let Some(r) = &records {
                        let to = crate::partition::txn::end_of(r);
                        aborted = p
                            .ask(|reply| Cmd::AbortedTxns {
                                from: offset,
                                to,
                                reply,
                            })
                            .await?;
                    }
                }
                return Ok(StoredRead {
                    records: records.map(Stored::Mem),
                    marks,
                    aborted,
                });
            }
        }
        let ok = p
            .ask(|reply| Cmd::Read {
                offset,
                max_bytes,
                committed,
                in_place,
                reply,
            })
            .await?;
        Ok(StoredRead {
            records: ok.records,
            marks: ok.marks,
            aborted: ok.aborted,
        })
    }

    /// Reads the committed records from the batch holding `offset`, about `max_bytes` of
    /// batches (at least one), never past the last stable offset: records of aborted
    /// transactions and markers are left out, as a read_committed consumer skips them. An
    /// offset below the log start reads from the log start: the caller sees the jump in
    /// `records[0].offset`.
    pub async fn read_log(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<LogRead, LogReadError> {
        let (topic_id, p) = self.partition_handle(topic, partition)?;
        let marks = *p.marks.borrow();
        let offset = offset.max(marks.log_start);
        if offset >= marks.stable {
            return Ok(LogRead {
                records: Vec::new(),
                next_offset: offset,
                bytes: 0,
                marks,
            });
        }
        let id = RemotePartition {
            topic: topic.to_string(),
            topic_id,
            partition,
        };
        let read = self
            .read_stored(&id, &p, offset, max_bytes, true, false)
            .await?;
        let data = match read.records {
            Some(r) => r.into_bytes().map_err(PartitionError::Storage)?,
            None => Bytes::new(),
        };
        decode(&data, offset, read.marks.stable, read.marks, &read.aborted)
    }
}

/// What [`Broker::read_stored`] read.
#[derive(Debug)]
pub struct StoredRead {
    pub records: Option<Stored>,
    pub marks: Watermarks,
    /// read_committed: the aborted transactions overlapping `records`.
    pub aborted: Vec<AbortedTxn>,
}

/// The whole batches of `records` that start below `limit`.
fn below(records: &Bytes, limit: i64) -> Option<Bytes> {
    let mut end = 0;
    while end + crate::log::batch::HEADER_LEN <= records.len() {
        match crate::log::batch::BatchHeader::parse(&records[end..]) {
            Ok(h) if h.base_offset < limit && end + h.total_len() <= records.len() => {
                end += h.total_len()
            }
            _ => break,
        }
    }
    (end > 0).then(|| records.slice(..end))
}

/// Splits and decodes stored batches, keeping the records in `[from, high)` that no aborted
/// transaction holds.
fn decode(
    data: &Bytes,
    from: i64,
    high: i64,
    marks: Watermarks,
    aborted: &[AbortedTxn],
) -> Result<LogRead, LogReadError> {
    let corrupt = |reason: String| LogReadError::Corrupt {
        offset: from,
        reason,
    };
    let mut records = Vec::new();
    let mut next = from;
    for (h, batch) in split_batches(data).map_err(|e| corrupt(e.to_string()))? {
        if h.base_offset >= high {
            break;
        }
        if h.last_offset() < next {
            continue;
        }
        let aborted_batch = h.is_transactional()
            && aborted.iter().any(|a| {
                a.producer_id == h.producer_id
                    && a.first_offset <= h.base_offset
                    && h.base_offset <= a.last_offset
            });
        if !h.is_control() && !aborted_batch {
            let mut buf = batch.clone();
            let set = RecordBatchDecoder::decode(&mut buf).map_err(|e| corrupt(e.to_string()))?;
            records.extend(
                set.records
                    .into_iter()
                    .filter(|r| r.offset >= next && r.offset < high && !r.control),
            );
        }
        next = next.max(h.last_offset() + 1).min(high.max(next));
    }
    Ok(LogRead {
        records,
        next_offset: next,
        bytes: data.len(),
        marks,
    })
}
