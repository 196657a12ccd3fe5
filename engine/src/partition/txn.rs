//! Transactions in a partition: the markers transaction coordinators write, and what
//! DescribeProducers shows. A marker goes through the produce path (Raft in a cluster) like any
//! batch; its producer-state checks fence markers of an older producer epoch and markers from
//! a coordinator older than one that already wrote for the producer.

use bytes::Bytes;

use super::{Actor, PartitionError, ProduceOk, Reply};
use crate::log::batch::{split_batches, BatchHeader};
use crate::log::control::{self, ControlType};
use crate::replication::ReplicationGroup;

/// A commit or abort marker to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub control: ControlType,
    /// The leader epoch of the coordinator's `__transaction_state` partition.
    pub coordinator_epoch: i32,
}

/// One producer's state in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerView {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    pub coordinator_epoch: i32,
    /// The first offset of its open transaction, or -1.
    pub txn_start_offset: i64,
}

/// The offset after the last batch in `records` (stored batches, as read).
pub fn end_of(records: &Bytes) -> i64 {
    // A read returns whole batches from its first; a torn tail is not returned.
    let mut end = i64::MIN;
    let mut pos = 0;
    while pos + crate::log::batch::HEADER_LEN <= records.len() {
        let Ok(h) = BatchHeader::parse(&records[pos..]) else {
            break;
        };
        end = h.next_offset();
        pos += h.total_len();
    }
    end
}

impl Actor {
    pub(super) fn write_marker(&mut self, m: Marker, reply: Reply<ProduceOk>) {
        // The leader's decisions, when it has them, are newer than the log's end.
        let states = match &self.assigner {
            Some(a) => a.producers(),
            None => self.log.producers(),
        };
        if let Err(e) = states.check_marker(m.producer_id, m.producer_epoch, m.coordinator_epoch) {
            let _ = reply.send(Err(PartitionError::Sequence(e)));
            return;
        }
        self.verifying
            .marker_written(m.producer_id, m.producer_epoch);
        let now = self.clock.now_ms();
        let bytes = control::encode_marker(
            m.producer_id,
            m.producer_epoch,
            m.control,
            m.coordinator_epoch,
            now,
        );
        let batches = match split_batches(&bytes) {
            Ok(b) => b,
            Err(e) => {
                let _ = reply.send(Err(PartitionError::Storage(std::io::Error::other(
                    e.to_string(),
                ))));
                return;
            }
        };
        self.log
            .producers_mut()
            .note_coordinator_epoch(m.producer_id, m.coordinator_epoch);
        if let Some(a) = &mut self.assigner {
            a.producers_mut()
                .note_coordinator_epoch(m.producer_id, m.coordinator_epoch);
        }
        if self.raft.is_some() {
            self.propose(batches, reply, true);
        } else {
            let epoch = self.group.leader_epoch();
            self.produce(batches, reply, true, epoch, now);
        }
    }

    pub(super) fn producer_views(&self) -> Vec<ProducerView> {
        self.log
            .producers()
            .entries()
            .map(|(pid, e)| ProducerView {
                producer_id: pid,
                producer_epoch: e.epoch,
                last_sequence: e.batches.back().map_or(-1, |b| b.last_seq),
                last_timestamp: e.last_append_ms,
                coordinator_epoch: e.coordinator_epoch,
                txn_start_offset: e.txn_first_offset.unwrap_or(-1),
            })
            .collect()
    }
}
