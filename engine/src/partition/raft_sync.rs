//! Syncing the Raft log off the shard thread.
//!
//! A partition's Readies are written to its Raft log as raft-rs produces them, and synced by
//! the shard's flusher (io_uring, or the blocking pool as a fallback) while the shard goes on
//! with other work; the syncs of a shard's partitions go into its ring together. One sync in
//! flight per partition covers every Ready written before it started; when it completes, the
//! messages those Readies held back (acknowledgements, votes) leave and raft-rs counts their
//! entries as persisted, in Ready order. A failed sync stops the replica
//! ([`super::failure`]): nothing written before it is ever acknowledged by a later sync.

use std::io;

use super::{Actor, RaftSync};
use crate::raft::log_file::Unsynced;

impl Actor {
    /// Starts a sync covering every Ready written so far, if there is any.
    pub(super) fn start_raft_sync(&mut self) -> Option<RaftSync> {
        if self.raft_unsynced.is_empty() || self.failed.is_some() {
            return None;
        }
        let mut files = self.raft.as_mut()?.take_dirty();
        // The batches the Readies placed in the segments are synced with them (one log).
        files.append(&mut self.placed_files);
        let flusher = self.flusher.clone();
        let metrics = self.metrics.clone();
        let done = std::mem::take(&mut self.raft_unsynced);
        Some((
            done,
            Box::pin(async move {
                let t = std::time::Instant::now();
                flusher.sync_all(files).await?;
                metrics.fsync_seconds.observe(t.elapsed().as_secs_f64());
                Ok(())
            }),
        ))
    }

    /// A sync finished: release what it made durable, or stop the replica.
    pub(super) fn raft_synced(&mut self, done: Vec<Unsynced>, res: io::Result<()>) {
        if self.failed.is_some() {
            return;
        }
        match res {
            Ok(()) => {
                if let Some(r) = &mut self.raft {
                    r.persisted(done);
                    self.local_acks.synced(r.persisted_index());
                }
            }
            Err(e) => {
                let path = self
                    .raft
                    .as_ref()
                    .map(|r| r.log_path().display().to_string());
                let what = format!("raft log fdatasync ({})", path.unwrap_or_default());
                self.fail_storage(&what, &e);
            }
        }
    }
}
