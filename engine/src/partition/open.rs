//! Opening a partition: its log (cut back to the Raft checkpoint in a cluster), its tier, and
//! the actor spawned on the shard with what the shard gives it ([`Env`]).

use std::cell::Cell;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::tiered::{RemoteLink, Tiered};
use super::{Actor, PartitionHandle, Watermarks};
use crate::config::ResolvedTopicConfig;
use crate::durability::Flusher;
use crate::log::PartitionLog;
use crate::metrics::Metrics;
use crate::replication::SingleNode;

/// What a shard gives each partition actor it runs: its syncs, metrics and clock.
#[derive(Clone)]
pub struct Env {
    pub shard: usize,
    pub flusher: Flusher,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn crate::time::Clock>,
}

/// Opens the log and spawns the actor on the current shard's `LocalSet`.
pub fn spawn(
    dir: PathBuf,
    config: ResolvedTopicConfig,
    env: Env,
    remote: Option<RemoteLink>,
    raft: Option<crate::raft::RaftSetup>,
) -> io::Result<PartitionHandle> {
    let Env {
        shard,
        flusher,
        metrics,
        clock,
    } = env;
    let raft_leader = raft.as_ref().map(|r| r.leader.clone());
    let raft_view = raft.as_ref().map(|r| r.isr.clone());
    let raft = match raft {
        Some(setup) => {
            let r = crate::raft::PartitionRaft::open(setup).map_err(io::Error::other)?;
            match r.checkpoint_offset() {
                // The segments hold everything up to the checkpoint: what was applied after
                // it is cut, and the Raft log applies it again.
                Some(offset) if dir.exists() => {
                    let cut = crate::log::cut::cut_at(&dir, offset, clock.now_ms())?;
                    if cut > 0 {
                        tracing::info!(dir = %dir.display(), offset, bytes = cut, "cut the segment log back to the raft checkpoint");
                    }
                }
                // The segments are gone: refused below (unless the checkpoint holds nothing).
                Some(_) => {}
                // No checkpoint yet (a new replica, or a log written before checkpoints
                // existed): the Raft log holds every entry from the first, and the segment
                // log is rebuilt from it.
                None => {
                    if dir.exists() {
                        std::fs::remove_dir_all(&dir)?;
                    }
                }
            }
            Some(r)
        }
        None => None,
    };
    let log = PartitionLog::open(&dir, config.log.clone(), clock.now_ms())?;
    if let Some(offset) = raft.as_ref().and_then(|r| r.checkpoint_offset()) {
        if log.next_offset() < offset {
            return Err(io::Error::other(format!(
                "{}: the segment log ends at {} but the raft checkpoint says {offset} was applied; \
                 the segments were lost or damaged. Remove this directory and its raft directory \
                 to copy the replica from the others again",
                dir.display(),
                log.next_offset()
            )));
        }
    }
    if log.recovered_bytes_truncated > 0 {
        tracing::warn!(dir = %dir.display(), bytes = log.recovered_bytes_truncated, "truncated a torn write at the log tail");
        metrics
            .recovery_truncated_bytes
            .inc_by(log.recovered_bytes_truncated);
    }
    let end = log.next_offset();
    let mut tiered = remote.map(Tiered::new);
    if let Some(t) = &mut tiered {
        // Whatever was sealed but not uploaded before a restart goes to the tier again.
        t.offer_sealed(&log);
    }
    let marks = Watermarks {
        log_start: tiered
            .as_ref()
            .map_or(log.log_start_offset(), |t| t.start(&log)),
        local_start: log.local_start_offset(),
        high: end,
        log_end: end,
    };
    let (mtx, mrx) = watch::channel(marks);
    let (tx, rx) = mpsc::unbounded_channel();
    let actor = Actor {
        group: SingleNode {
            epoch: log.latest_epoch(),
        },
        log,
        tiered,
        config,
        marks: mtx,
        flusher,
        metrics,
        flushed: end,
        waiters: Vec::new(),
        unflushed_since: Cell::new(None),
        unflushed_bytes: 0,
        compacted_through: -1,
        last_compaction_ms: 0,
        compaction_retry_at: 0,
        raft,
        proposals: crate::raft::Pending::new(),
        assigner: None,
        queued: Vec::new(),
        deletions: crate::raft::Pending::new(),
        raft_unsynced: Vec::new(),
        failed: None,
        install: None,
        install_next: None,
        deferred_snapshot: None,
        held: Default::default(),
        checkpointing: false,
        sealed: None,
        sealing: false,
        seals: crate::raft::Pending::new(),
        local_acks: Default::default(),
        clock,
    };
    tokio::task::spawn_local(actor.run(rx));
    Ok(PartitionHandle {
        tx,
        marks: mrx,
        shard,
        raft_leader,
        raft_view,
    })
}
