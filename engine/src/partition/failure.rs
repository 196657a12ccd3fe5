//! A replica whose storage failed stops serving.
//!
//! The first write or sync error of the segment log or the Raft log puts the partition in a
//! failed state: it refuses produce, reads and record deletion with KAFKA_STORAGE_ERROR (which
//! clients retry after refreshing metadata), leaves its Raft group (it neither ticks nor
//! answers, so its peers elect another leader), and counts in
//! `icestream_storage_failed_partitions`, which makes the broker report itself not ready. It
//! never retries a failed sync (after an fdatasync error Linux may drop the dirty pages and
//! report the next sync as a success, so a later sync could acknowledge data that is gone) and
//! never falls back to unreplicated appends. A restart recovers it: start-up cuts whatever
//! fails its checks at the log tails, and a replica catches up from its leader.

use std::sync::Arc;

use super::{Actor, Cmd, PartitionError};

impl Actor {
    /// Stops the replica after a storage error (`what` failed).
    pub(super) fn fail_storage(&mut self, what: &str, e: &dyn std::fmt::Display) {
        if self.failed.is_some() {
            return;
        }
        tracing::error!(dir = %self.log.dir().display(), error = %e, "{what} failed: this replica stops serving until the broker restarts");
        let reason: Arc<str> = format!("{what}: {e}").into();
        self.failed = Some(reason.clone());
        self.metrics.storage_failed_partitions.inc();
        let err = || PartitionError::Failed(reason.clone());
        for w in self.waiters.drain(..) {
            let _ = w.reply.send(Err(err()));
        }
        for (_, p) in self.proposals.drain() {
            p.refuse(err());
        }
        self.fail_queued(&err);
        self.verifying.refuse_all(&err);
        self.local_acks.stop(err);
        for (_, reply) in self.deletions.drain() {
            let _ = reply.send(Err(err()));
        }
        if let Some(r) = &self.raft {
            r.withdraw();
        }
    }

    /// Answers what a failed replica refuses; passes the rest through.
    pub(super) fn refuse_if_failed(&mut self, cmd: Cmd) -> Option<Cmd> {
        let Some(reason) = &self.failed else {
            return Some(cmd);
        };
        let err = || PartitionError::Failed(reason.clone());
        match cmd {
            Cmd::Produce { reply, .. } => {
                let _ = reply.send(Err(err()));
            }
            Cmd::Read { reply, .. } => {
                let _ = reply.send(Err(err()));
            }
            Cmd::WriteMarker { reply, .. } => {
                let _ = reply.send(Err(err()));
            }
            Cmd::DeleteRecords { reply, .. } | Cmd::Roll { reply } => {
                let _ = reply.send(Err(err()));
            }
            Cmd::ReadChunk { reply, .. } => {
                let _ = reply.send(Err(err()));
            }
            Cmd::Seal { reply } => {
                let _ = reply.send(Err(err()));
            }
            Cmd::Raft(_) => {}
            other => return Some(other),
        }
        None
    }

    /// Called when the partition stops: a failed replica no longer counts.
    pub(super) fn forget_failure(&mut self) {
        if self.failed.take().is_some() {
            self.metrics.storage_failed_partitions.dec();
        }
    }
}
