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
    // The segments first: a torn tail is cut before the Raft log checks that the batches it
    // placed there are all present.
    let mut log = PartitionLog::open(&dir, config.log.clone(), clock.now_ms())?;
    let mut applied_end = log.next_offset();
    let mut unplaced = 0;
    let raft = match raft {
        Some(mut setup) => {
            setup.segments = Some(dir.clone());
            let r = crate::raft::PartitionRaft::open(setup).map_err(io::Error::other)?;
            let checkpoint = r.checkpoint_offset();
            if let Some(offset) = checkpoint {
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
            // Without a checkpoint (a new replica, or a log written before checkpoints) the
            // Raft log holds every entry from the first, and the segments start empty.
            let from = checkpoint.unwrap_or(0);
            let (keep, last_unplaced) = restart_point(&r, &log, from)?;
            unplaced = last_unplaced;
            if log.next_offset() > keep {
                // What was applied after the placed entries is applied again; a torn or
                // never-recorded tail goes.
                drop(log);
                if dir.exists() {
                    let cut = crate::log::cut::cut_at(&dir, keep, clock.now_ms())?;
                    if cut > 0 {
                        tracing::info!(dir = %dir.display(), offset = keep, bytes = cut, "cut the segment log back to what the raft log holds");
                    }
                }
                log = PartitionLog::open(&dir, config.log.clone(), clock.now_ms())?;
            }
            if keep > from {
                // Batches a crashed process wrote are in the page cache, maybe not on disk.
                crate::log::power::sync_file(&log.active_file(), false)?;
            }
            applied_end = from.min(log.next_offset());
            Some(r)
        }
        None => None,
    };
    if log.recovered_bytes_truncated > 0 {
        tracing::warn!(dir = %dir.display(), bytes = log.recovered_bytes_truncated, "truncated a torn write at the log tail");
        metrics
            .recovery_truncated_bytes
            .inc_by(log.recovered_bytes_truncated);
    }
    let end = log.next_offset();
    // In a cluster only what the Raft log applies again is committed here: the batches placed
    // after the checkpoint become visible as their entries are applied.
    let high = if raft.is_some() { applied_end } else { end };
    if let Some(r) = &raft {
        // The Raft log read back entries before the checkpoint from files it keeps; their
        // segments may be gone or compacted since, so raft-rs no longer reads them.
        let checkpoint = r.checkpoint_offset();
        r.forget_below(checkpoint.unwrap_or(i64::MIN));
        log.set_raft_bounds(checkpoint.unwrap_or(i64::MIN), applied_end);
    }
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
        high,
        log_end: end,
        stable: log.last_stable_offset(high),
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
        flushed: high,
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
        placed_files: Vec::new(),
        unplaced,
        applied_end,
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
        verifying: Default::default(),
    };
    let task = tokio::task::spawn_local(Box::new(actor).run(rx)).abort_handle();
    Ok(PartitionHandle {
        task,
        tx,
        marks: mrx,
        shard,
        raft_leader,
        raft_view,
    })
}

/// Where the segment log must end for a restart, and the last entry proposed as the client
/// sent it (nothing is placed until the checkpoint passes it). The
/// entries after the checkpoint at `from` are walked in order: placed ones are in the segments
/// (the Raft log dropped those whose batches a crash cut), and so is a whole assigned entry
/// the segments already reach past (applied before the crash); the first other produce entry
/// ends the walk, and everything after it is applied again from there. No placed entry may
/// follow it (`placement` waits for the checkpoint to pass such entries).
fn restart_point(
    r: &crate::raft::PartitionRaft,
    log: &PartitionLog,
    from: i64,
) -> io::Result<(i64, u64)> {
    use crate::raft::Recorded;
    let recorded = r.recorded_after_checkpoint().map_err(io::Error::other)?;
    let mut keep = from;
    let mut walking = true;
    let mut unplaced = 0;
    for (index, what) in recorded {
        let bad = |why: String| {
            io::Error::other(format!(
                "{}: raft entry {index} {why}; remove this directory and its raft directory to \
                 copy the replica from the others again",
                log.dir().display()
            ))
        };
        match what {
            Recorded::Placed { offset, next } => {
                if !walking || offset != keep {
                    return Err(bad(format!(
                        "placed its batches at {offset}, but the segment log continues at {keep}"
                    )));
                }
                keep = next;
            }
            Recorded::Assigned { offset, next } => {
                if walking && offset == keep && log.next_offset() >= next {
                    keep = next;
                } else {
                    walking = false;
                }
            }
            Recorded::AsSent => {
                unplaced = index;
                walking = false;
            }
            Recorded::Other => {}
        }
    }
    Ok((keep, unplaced))
}
