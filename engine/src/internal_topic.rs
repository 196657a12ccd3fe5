//! Reading back the broker's own single-partition topics (`__consumer_offsets`, `_schemas`),
//! which their owners replay on start to rebuild their state.

use kafka_protocol::records::{Record, RecordBatchDecoder};

use crate::log::batch::split_batches;
use crate::partition::{Cmd, PartitionError, PartitionHandle};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Partition(#[from] PartitionError),
    #[error("malformed record batch: {0}")]
    Corrupt(String),
}

/// Calls `apply` with every data record (control records skipped) from the log start up to
/// the high watermark as it is when the replay starts, in offset order.
pub async fn replay(p: &PartitionHandle, mut apply: impl FnMut(Record)) -> Result<(), ReplayError> {
    let corrupt = |e: &dyn std::fmt::Display| ReplayError::Corrupt(e.to_string());
    let marks = *p.marks.borrow();
    let mut next = marks.log_start;
    while next < marks.high {
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
                if r.offset >= next && !r.control {
                    apply(r);
                }
            }
            next = next.max(last + 1);
        }
        if next == from {
            break;
        }
    }
    Ok(())
}
