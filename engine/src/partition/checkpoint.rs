//! Checkpoints of a replicated partition: once the segment log is synced past what a batch of
//! committed Raft entries appended, that point is written (off the shard thread) as the
//! checkpoint a restart starts from, and the Raft log files wholly before it are deleted
//! (`raft::applied`).

use std::future::Future;
use std::pin::Pin;

use super::Actor;
use crate::raft::checkpoint::Checkpoint;

pub(super) type CheckpointIo =
    Pin<Box<dyn Future<Output = (Checkpoint, Result<(), crate::raft::log_file::StoreError>)>>>;

impl Actor {
    /// Starts writing a checkpoint, if one is due.
    pub(super) fn start_checkpoint(&mut self) -> Option<CheckpointIo> {
        // UNSAFE test mode (`--unsafe-skip-fsync-for-tests`) syncs no segment, so no
        // checkpoint may claim one: a restart then rebuilds from the Raft log, as before
        // checkpoints, and a power cut loses what was never synced.
        if self.failed.is_some() || self.install.is_some() || crate::log::power::skip_fsync() {
            return None;
        }
        let r = self.raft.as_mut()?;
        let cp = r.checkpoint_due(self.flushed)?;
        let writer = r.checkpoint_writer();
        self.checkpointing = true;
        let flusher = self.flusher.clone();
        Some(Box::pin(async move {
            let c = cp.clone();
            let res = flusher
                .offload(move || writer.write(&c).map(|_| ()))
                .await
                .unwrap_or_else(|e| {
                    Err(crate::raft::log_file::StoreError::Corrupt(
                        Default::default(),
                        e.to_string(),
                    ))
                });
            (cp, res)
        }))
    }

    /// A checkpoint was written: the Raft log before it can go.
    pub(super) fn checkpoint_done(
        &mut self,
        cp: Checkpoint,
        res: Result<(), crate::raft::log_file::StoreError>,
    ) {
        self.checkpointing = false;
        if self.failed.is_some() {
            return;
        }
        let res = res.and_then(|()| match &mut self.raft {
            Some(r) => r.checkpoint_written(cp),
            None => Ok(()),
        });
        if let Err(e) = res {
            self.fail_storage("raft checkpoint", &e);
            return;
        }
        self.finish_install();
    }
}
