//! The partition actor: the single owner of one partition's log, running on its shard.
//!
//! Every request for the partition arrives as a [`Cmd`] on its channel, so the log needs no
//! lock. Appends go to the page cache at once; one fdatasync at a time runs beside them, and
//! when it completes every produce it covers is answered together (group commit).

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::ResolvedTopicConfig;
use crate::durability::Flusher;
use crate::log::batch::BatchHeader;
use crate::log::file_slice::Stored;
use crate::log::producer_state::Check;
use crate::log::PartitionLog;
use crate::metrics::Metrics;
use crate::replication::{ReplicationGroup, SingleNode};

mod assign;
mod checkpoint;
mod compaction;
mod delete_records;
mod failure;
#[cfg(test)]
mod group_tests;
mod local_ack;
mod open;
mod placement;
mod raft_sync;
mod replicated;
pub mod router;
mod seal;
mod snapshot;
mod throttled;
mod tick;
mod tiered;
pub mod txn;
#[cfg(test)]
mod txn_group_tests;
pub mod verify;
pub use open::{spawn, Env};
pub use tiered::RemoteLink;
use tiered::Tiered;

/// Offsets a consumer can observe, published on every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Watermarks {
    /// The first offset over both tiers.
    pub log_start: i64,
    /// The first offset on local disk; below it (down to `log_start`) reads go remote.
    pub local_start: i64,
    pub high: i64,
    pub log_end: i64,
    /// The last stable offset: the high watermark, or the first offset of the oldest
    /// transaction still open if lower (what read_committed consumers read up to).
    pub stable: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: usize },
    #[error("offset {offset} is outside the log [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error(transparent)]
    Sequence(#[from] crate::log::producer_state::SequenceError),
    #[error("storage error: {0}")]
    Storage(#[from] io::Error),
    #[error("partition is stopping")]
    Stopped,
    #[error("this broker does not lead the partition")]
    NotLeader,
    #[error("{active} replicas in sync, min.insync.replicas is {min}")]
    NotEnoughReplicas { active: usize, min: usize },
    #[error("the partition is sealed: its topic is being unmounted")]
    Sealed,
    #[error("this replica's storage failed ({0}); it serves nothing until the broker restarts")]
    Failed(Arc<str>),
    #[error("control batches are written by transaction coordinators only")]
    ControlFromClient,
    #[error(transparent)]
    Verification(#[from] verify::VerifyError),
}

#[derive(Debug, Clone, Copy)]
pub struct ProduceOk {
    pub base_offset: i64,
    pub log_append_time: i64,
    pub log_start_offset: i64,
}

#[derive(Debug)]
pub struct ReadOk {
    pub records: Option<Stored>,
    pub marks: Watermarks,
    /// For a read_committed read: the aborted transactions overlapping what it returns.
    pub aborted: Vec<crate::log::producer_state::AbortedTxn>,
}

/// ListOffsets queries.
#[derive(Debug, Clone, Copy)]
pub enum OffsetQuery {
    Earliest,
    /// The first offset on local disk (KIP-405's -4).
    EarliestLocal,
    Latest,
    /// The last stable offset (read_committed's latest).
    LatestStable,
    MaxTimestamp,
    Timestamp(i64),
}

type Reply<T> = oneshot::Sender<Result<T, PartitionError>>;

pub enum Cmd {
    Produce {
        batches: Vec<(BatchHeader, Bytes)>,
        reply: Reply<ProduceOk>,
        /// acks=all: refused with NOT_ENOUGH_REPLICAS while fewer than min.insync.replicas
        /// voters are live (Kafka applies min.insync to acks=all only).
        acks_all: bool,
        /// For a transactional produce: how to ask the coordinator whether the transaction
        /// includes this partition ([`verify`]).
        verify: Option<verify::Verify>,
    },
    Read {
        offset: i64,
        max_bytes: usize,
        /// read_committed: up to the last stable offset, with the aborted transactions.
        committed: bool,
        /// Answer where the batches lie in the segment file instead of reading them (a
        /// plaintext Fetch sends them with sendfile).
        in_place: bool,
        reply: Reply<ReadOk>,
    },
    /// The aborted transactions overlapping `[from, to)` (read_committed reads of the remote
    /// tier).
    AbortedTxns {
        from: i64,
        to: i64,
        reply: Reply<Vec<crate::log::producer_state::AbortedTxn>>,
    },
    /// A transaction coordinator's commit or abort marker for a producer.
    WriteMarker {
        marker: txn::Marker,
        reply: Reply<ProduceOk>,
    },
    /// The producers of this partition and their open transactions (DescribeProducers).
    Producers {
        reply: Reply<Vec<txn::ProducerView>>,
    },
    Offsets {
        query: OffsetQuery,
        reply: Reply<Option<(i64, i64)>>,
    },
    DeleteRecords {
        before: i64,
        reply: Reply<i64>,
    },
    EpochEnd {
        epoch: i32,
        reply: Reply<Option<(i32, i64)>>,
    },
    Reconfigure(Box<ResolvedTopicConfig>),
    /// A message for the partition's Raft group.
    Raft(Box<raft::eraftpb::Message>),
    /// Another replica installing a snapshot asks for a chunk of this replica's log.
    ReadChunk {
        req: crate::raft::snapshot::ChunkRequest,
        reply: Reply<crate::raft::snapshot::Chunk>,
    },
    /// The replicas the Raft group should move to (a reassignment's target, else the
    /// assignment) and the preferred leader.
    Goal {
        replicas: Vec<u64>,
        reassigning: bool,
        /// This replica is one the reassignment adds (the follower throttle paces it).
        adding: bool,
        preferred: u64,
    },
    /// Starts tiering a partition whose topic just turned `remote.storage.enable` on.
    AttachRemote(Box<RemoteLink>),
    /// ElectLeaders (PREFERRED): move leadership to the preferred replica.
    ElectPreferred {
        reply: Reply<crate::raft::PreferredElection>,
    },
    /// Controlled shutdown: never lead again, and hand leadership over if leading.
    HandOff {
        reply: Reply<crate::raft::HandOff>,
    },
    /// `(bytes, segments)` on local disk.
    LocalSize {
        reply: Reply<(u64, usize)>,
    },
    /// Seals the active segment so that everything can be uploaded (unmount).
    Roll {
        reply: Reply<i64>,
    },
    /// Seals the partition for an unmount: in a cluster through its Raft group, so that every
    /// replica ends at the same offset ([`seal`]); answers `(log start, log end)`.
    Seal {
        reply: Reply<(i64, i64)>,
    },
    Stop {
        /// Remove the partition's files (topic deleted or unmounted).
        delete: bool,
        /// Also remove its remote data (topic deleted, not unmounted).
        delete_remote: bool,
        reply: oneshot::Sender<()>,
    },
}

/// How other tasks, on any shard, reach a partition.
#[derive(Clone)]
pub struct PartitionHandle {
    pub tx: mpsc::UnboundedSender<Cmd>,
    pub marks: watch::Receiver<Watermarks>,
    pub shard: usize,
    /// With a Raft group: its leader and term ([`crate::raft::leader_of`]).
    pub raft_leader: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// With a Raft group: the ISR and caught-up followers while this replica leads.
    pub raft_view: Option<crate::raft::SharedView>,
    /// Ends the actor at its next await with nothing flushed or answered, as a crash does
    /// (what a simulation's crashes use).
    pub task: tokio::task::AbortHandle,
}

impl PartitionHandle {
    /// Stops the partition's actor and waits until it has (a stopped one counts as done):
    /// flushed, or with its local files deleted (`delete`), and its remote data too
    /// (`delete_remote`).
    pub async fn stop(&self, delete: bool, delete_remote: bool) {
        let (reply, rx) = oneshot::channel();
        let stop = Cmd::Stop {
            delete,
            delete_remote,
            reply,
        };
        if self.tx.send(stop).is_ok() {
            let _ = rx.await;
        }
    }

    /// Sends a command and waits for its answer.
    pub async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, PartitionError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .map_err(|_| PartitionError::Stopped)?;
        rx.await.map_err(|_| PartitionError::Stopped)?
    }
}

struct Waiter {
    needed: i64,
    reply: Reply<ProduceOk>,
    ok: ProduceOk,
}

/// A produce proposed to the Raft group, waiting for its entry to be applied.
enum Proposal {
    /// Proposed as the client sent it, applied through the single-node path:
    /// `(reply, acks_all)`.
    AsSent(Reply<ProduceOk>, bool),
    /// Proposed with its batches assigned (acks=all; acks=1 is answered at the local append).
    Assigned(assign::AssignedWaiter),
}

impl Proposal {
    fn refuse(self, err: PartitionError) {
        let reply = match self {
            Proposal::AsSent(reply, _) | Proposal::Assigned((reply, _, _)) => reply,
        };
        let _ = reply.send(Err(err));
    }
}

type FlushFuture = Pin<Box<dyn Future<Output = io::Result<i64>>>>;

/// A sync of the Raft log in flight, and the Readies it makes durable.
type RaftSync = (
    Vec<crate::raft::log_file::Unsynced>,
    Pin<Box<dyn Future<Output = io::Result<()>>>>,
);

struct Actor {
    log: PartitionLog,
    /// The remote tier, for topics with `remote.storage.enable`.
    tiered: Option<Tiered>,
    group: SingleNode,
    config: ResolvedTopicConfig,
    marks: watch::Sender<Watermarks>,
    flusher: Flusher,
    metrics: Arc<Metrics>,
    /// Offset up to which the log is known durable.
    flushed: i64,
    waiters: Vec<Waiter>,
    /// With write caching: when the oldest unflushed append happened.
    unflushed_since: Cell<Option<tokio::time::Instant>>,
    unflushed_bytes: u64,
    /// The sealed end offset the last compaction covered, and when it ran.
    compacted_through: i64,
    last_compaction_ms: i64,
    /// After a failed compaction, no new attempt before this time (ms).
    compaction_retry_at: i64,
    /// The partition's Raft group, in a cluster.
    raft: Option<crate::raft::PartitionRaft>,
    /// Produces proposed to the group, waiting to be applied.
    proposals: crate::raft::Pending<Proposal>,
    /// While leading (with assigned entries): the log's end as this leader decided it.
    assigner: Option<assign::Assigner>,
    /// Produces waiting for this new leader to be able to decide ([`assign`]).
    queued: Vec<assign::Queued>,
    /// DeleteRecords proposed to the group, waiting to be applied.
    deletions: crate::raft::Pending<Reply<i64>>,
    /// Readies written to the Raft log and not yet covered by a sync ([`raft_sync`]).
    raft_unsynced: Vec<crate::raft::log_file::Unsynced>,
    /// Segment files entries were placed in since the last Raft log sync ([`placement`]).
    placed_files: Vec<Arc<std::fs::File>>,
    /// The last index of a produce entry proposed as the client sent it ([`placement`]).
    unplaced: u64,
    /// In a cluster: the offset after the last entry applied. The segments may hold
    /// uncommitted batches past it ([`placement`]); the high watermark never passes it.
    applied_end: i64,
    /// Set by the first write or sync error ([`failure`]): the replica stops.
    failed: Option<Arc<str>>,
    /// A snapshot being copied from the leader ([`snapshot`]), and its next step to await.
    install: Option<snapshot::Install>,
    install_next: Option<snapshot::InstallIo>,
    /// A snapshot waiting for committed entries to be applied before its copy starts.
    deferred_snapshot: Option<raft::eraftpb::Message>,
    /// Appends held back by the reassignment throttle ([`throttled`]).
    held: throttled::Held,
    /// A checkpoint write is in flight ([`checkpoint`]).
    checkpointing: bool,
    /// The index of the Seal entry applied ([`seal`]): nothing after it is appended.
    sealed: Option<u64>,
    /// This leader proposed a Seal: it takes no more produces.
    sealing: bool,
    /// Seals proposed to the group, waiting to be applied.
    seals: crate::raft::Pending<Reply<(i64, i64)>>,
    /// acks=1 produces answered at the leader's local append ([`local_ack`]).
    local_acks: local_ack::LocalAcks,
    /// Wall-clock time ([`crate::time`]).
    clock: Arc<dyn crate::time::Clock>,
    /// Transactional produces waiting for the coordinator's word ([`verify`]).
    verifying: verify::Verifying,
}

/// `(delete files, delete remote data, reply)`.
type StopRequest = (bool, bool, oneshot::Sender<()>);

type CompactionTask = std::pin::Pin<
    Box<dyn std::future::Future<Output = io::Result<crate::log::compaction::Cleaned>>>,
>;

impl Actor {
    /// Every partition holds this future for its whole life, so it is kept small: the actor
    /// is boxed (an async fn's state keeps a by-value `self` twice, as the argument and as
    /// the local it moves into) and so is the stop future (tier close included) awaited in
    /// it. Unboxed, it was 17.5 KB: 175 MB with 10,000 partitions (benches/README.md, "Start,
    /// memory and size with 10,000 partitions").
    async fn run(mut self: Box<Self>, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        let mut inflight: Option<FlushFuture> = None;
        let mut compaction: Option<CompactionTask> = None;
        let retention_every = Duration::from_millis(self.config.retention_check_ms);
        let mut retention = tokio::time::interval(retention_every);
        retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Replicated partitions tick together on the shard's timer (missed ticks coalesce).
        let mut raft_tick = self.raft.as_ref().map(|_| tick::shard_tick());
        let mut raft_sync: Option<RaftSync> = None;
        let mut install_io: Option<snapshot::InstallIo> = None;
        let mut checkpoint_io: Option<checkpoint::CheckpointIo> = None;
        let mut verifications = futures_util::stream::FuturesUnordered::new();
        loop {
            let deadline = self.flush_deadline();
            // Biased, in this order: finished I/O first, then timers, then new commands,
            // so that completions are never starved by a busy mailbox and the order is
            // the same on every run (an unbiased select draws from an unseeded RNG,
            // which a simulation could not replay).
            tokio::select! {
                biased;
                res = async { inflight.as_mut().expect("guarded").await }, if inflight.is_some() => {
                    inflight = None;
                    self.flush_done(res);
                }
                res = async { compaction.as_mut().expect("guarded").await }, if compaction.is_some() => {
                    compaction = None;
                    self.compaction_done(res);
                }
                res = async { (&mut raft_sync.as_mut().expect("guarded").1).await }, if raft_sync.is_some() => {
                    let (done, _) = raft_sync.take().expect("guarded");
                    self.raft_synced(done, res);
                }
                step = async { install_io.as_mut().expect("guarded").await }, if install_io.is_some() => {
                    install_io = None;
                    self.install_step(step);
                }
                (cp, res) = async { checkpoint_io.as_mut().expect("guarded").await }, if checkpoint_io.is_some() => {
                    checkpoint_io = None;
                    self.checkpoint_done(cp, res);
                }
                Some((pid, res)) = futures_util::StreamExt::next(&mut verifications), if !verifications.is_empty() => {
                    self.verified(pid, res);
                }
                res = async { raft_tick.as_mut().expect("guarded").recv().await }, if self.raft.is_some() && raft_tick.is_some() => {
                    use tokio::sync::broadcast::error::RecvError;
                    match (res, &mut self.raft) {
                        // The shard's timer went away with its LocalSet: subscribe again.
                        (Err(RecvError::Closed), _) => raft_tick = Some(tick::shard_tick()),
                        // A tick, or several missed ones (`Lagged`), which count as one.
                        (_, Some(r)) if self.failed.is_none() => {
                            r.tick();
                            self.release_held();
                        }
                        _ => {}
                    }
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() && inflight.is_none() => {
                    self.unflushed_since.set(None);
                    self.unflushed_bytes = 0;
                    inflight = self.start_flush();
                }
                // Retention waits while a compaction reads the sealed segments.
                _ = retention.tick(), if compaction.is_none() && self.failed.is_none() => {
                    self.retention();
                    compaction = self.maybe_compact();
                }
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    if let Some(stop) = self.handle(cmd) {
                        Box::pin(self.stop(stop, inflight.take(), compaction.take())).await;
                        return;
                    }
                    // Drain what queued meanwhile so that one flush covers it all.
                    for _ in 0..1024 {
                        match rx.try_recv() {
                            Ok(cmd) => if let Some(stop) = self.handle(cmd) {
                                Box::pin(self.stop(stop, inflight.take(), compaction.take())).await;
                                return;
                            },
                            Err(_) => break,
                        }
                    }
                }
            }
            verifications.extend(self.verifying.take_started());
            self.drive_raft();
            if raft_sync.is_none() {
                raft_sync = self.start_raft_sync();
            }
            if install_io.is_none() {
                install_io = self.install_next.take();
            }
            if checkpoint_io.is_none() && self.raft.is_some() {
                checkpoint_io = self.start_checkpoint();
            }
            if inflight.is_none() && !self.waiters.is_empty() {
                inflight = self.start_flush();
            }
            if inflight.is_none() && self.cached_bytes_over_limit() {
                self.unflushed_since.set(None);
                self.unflushed_bytes = 0;
                inflight = self.start_flush();
            }
        }
    }

    /// Handles one command; returns the stop request if it was one.
    fn handle(&mut self, cmd: Cmd) -> Option<StopRequest> {
        let cmd = self.refuse_if_failed(cmd)?;
        match cmd {
            Cmd::Produce {
                batches,
                reply,
                acks_all,
                verify,
            } => self.produce_verified(batches, reply, acks_all, verify),
            Cmd::Raft(m) => self.step_raft(*m),
            Cmd::ReadChunk { req, reply } => self.serve_chunk(req, reply),
            Cmd::Goal {
                replicas,
                reassigning,
                adding,
                preferred,
            } => {
                if let Some(r) = &mut self.raft {
                    r.set_goal(replicas, reassigning, adding, preferred);
                }
            }
            Cmd::Read {
                offset,
                max_bytes,
                committed,
                in_place,
                reply,
            } => {
                let _ = reply.send(self.read(offset, max_bytes, committed, in_place));
            }
            Cmd::AbortedTxns { from, to, reply } => {
                let _ = reply.send(Ok(self.log.producers().aborted_overlapping(from, to)));
            }
            Cmd::WriteMarker { marker, reply } => self.write_marker(marker, reply),
            Cmd::Producers { reply } => {
                let _ = reply.send(Ok(self.producer_views()));
            }
            Cmd::Offsets { query, reply } => {
                let _ = reply.send(self.offsets(query).map_err(Into::into));
            }
            Cmd::DeleteRecords { before, reply } => {
                if self.raft.is_some() {
                    self.propose_delete_records(before, reply);
                } else {
                    let res = self.delete_records(before);
                    let _ = reply.send(res);
                }
            }
            Cmd::EpochEnd { epoch, reply } => {
                let _ = reply.send(Ok(self.log.epoch_end_offset(epoch)));
            }
            Cmd::Reconfigure(cfg) => {
                self.log.set_config(cfg.log.clone());
                self.config = *cfg;
            }
            Cmd::AttachRemote(link) => {
                if self.tiered.is_none() {
                    let mut t = Tiered::new(*link);
                    t.offer_sealed(&self.log);
                    self.tiered = Some(t);
                }
            }
            Cmd::ElectPreferred { reply } => {
                let r = match &mut self.raft {
                    Some(r) => r.elect_preferred(),
                    // A single broker's partition has one replica, which leads.
                    None => crate::raft::PreferredElection::NotNeeded,
                };
                let _ = reply.send(Ok(r));
            }
            Cmd::HandOff { reply } => {
                let r = match &mut self.raft {
                    Some(r) => r.hand_off(),
                    None => crate::raft::HandOff::NotLeader,
                };
                let _ = reply.send(Ok(r));
            }
            Cmd::LocalSize { reply } => {
                let _ = reply.send(Ok((self.log.size_bytes(), self.log.segment_count())));
            }
            Cmd::Roll { reply } => {
                let res = self.roll_active();
                let _ = reply.send(res.map(|()| self.log.next_offset()));
            }
            Cmd::Seal { reply } => self.seal(reply),
            Cmd::Stop {
                delete,
                delete_remote,
                reply,
            } => return Some((delete, delete_remote, reply)),
        }
        None
    }

    /// Appends a produce's batches; returns the first one's base offset, if any was appended.
    fn produce(
        &mut self,
        batches: Vec<(BatchHeader, Bytes)>,
        reply: Reply<ProduceOk>,
        acks_all: bool,
        epoch: i32,
        now: i64,
    ) -> Option<i64> {
        if let Some((_, b)) = batches
            .iter()
            .find(|(_, b)| b.len() > self.config.max_message_bytes)
        {
            let _ = reply.send(Err(PartitionError::MessageTooLarge {
                size: b.len(),
                max: self.config.max_message_bytes,
            }));
            return None;
        }
        let mut first: Option<ProduceOk> = None;
        // The offset the answer must wait for: the end of the last batch appended or, for a
        // retried batch, of its first copy.
        let mut needed = 0;
        let mut appended_bytes = 0u64;
        for (h, bytes) in &batches {
            let check = match self.log.check_producer(h) {
                Ok(c) => c,
                Err(e) => {
                    let _ = reply.send(Err(PartitionError::Sequence(e)));
                    return None;
                }
            };
            let (base, last, lat) = match check {
                Check::Duplicate(m) => (m.base_offset, m.last_offset, -1),
                Check::Append => match self.log.append(h, bytes, epoch, now) {
                    Ok(a) => {
                        appended_bytes += bytes.len() as u64;
                        self.metrics.produced_bytes.inc_by(bytes.len() as u64);
                        self.metrics
                            .produced_records
                            .inc_by(h.records_count.max(0) as u64);
                        (a.base_offset, a.last_offset, a.log_append_time)
                    }
                    Err(e) => {
                        self.fail_storage("append", &e);
                        let _ = reply.send(Err(PartitionError::Failed(e.to_string().into())));
                        return None;
                    }
                },
            };
            needed = needed.max(last + 1);
            first.get_or_insert(ProduceOk {
                base_offset: base,
                log_append_time: lat,
                log_start_offset: self.log.log_start_offset(),
            });
        }
        let ok = first?;
        // Every append rides the next group commit, whatever its acks (acks=0 has nobody
        // waiting on the reply).
        let _ = acks_all;
        self.appended(reply, ok, needed, appended_bytes);
        Some(ok.base_offset)
    }

    /// Batches were appended (`bytes` of them): the answer `ok` goes once the log is durable up
    /// to `needed`, or at once with write caching.
    fn appended(&mut self, reply: Reply<ProduceOk>, ok: ProduceOk, needed: i64, bytes: u64) {
        if let Some(t) = &mut self.tiered {
            t.offer_sealed(&self.log);
        }
        let end = self.log.next_offset();
        if self.config.write_caching {
            self.unflushed_bytes += bytes;
            if bytes > 0 && self.unflushed_since.get().is_none() {
                self.unflushed_since.set(Some(tokio::time::Instant::now()));
            }
            self.publish();
            let _ = reply.send(Ok(ok));
        } else {
            self.waiters.push(Waiter { needed, reply, ok });
        }
        self.marks.send_modify(|m| m.log_end = end);
    }

    fn flush_deadline(&self) -> Option<tokio::time::Instant> {
        self.unflushed_since
            .get()
            .map(|t| t + Duration::from_millis(self.config.flush_ms))
    }

    fn cached_bytes_over_limit(&self) -> bool {
        self.config.write_caching && self.unflushed_bytes >= self.config.flush_bytes.max(1)
    }

    /// Starts one fdatasync covering everything appended so far.
    fn start_flush(&mut self) -> Option<FlushFuture> {
        let target = self.log.next_offset();
        if target == self.flushed {
            self.complete_waiters();
            return None;
        }
        let files = match self.log.take_dirty() {
            Ok(f) => f,
            Err(e) => {
                self.fail_storage("fdatasync", &e);
                return None;
            }
        };
        let flusher = self.flusher.clone();
        let metrics = self.metrics.clone();
        Some(Box::pin(async move {
            let t = std::time::Instant::now();
            flusher.sync_all(files).await?;
            metrics.fsync_seconds.observe(t.elapsed().as_secs_f64());
            Ok(target)
        }))
    }

    fn flush_done(&mut self, res: io::Result<i64>) {
        match res {
            Ok(target) => {
                self.flushed = self.flushed.max(target);
                self.publish();
                self.complete_waiters();
            }
            Err(e) => self.fail_storage("fdatasync", &e),
        }
    }

    fn publish(&mut self) {
        let end = self.log.next_offset();
        let mut high = self
            .group
            .committed(end, self.flushed, self.config.write_caching);
        if self.raft.is_some() {
            high = high.min(self.applied_end);
        }
        let start = self
            .tiered
            .as_ref()
            .map_or(self.log.log_start_offset(), |t| t.start(&self.log));
        let local_start = self.log.local_start_offset();
        self.marks.send_if_modified(|m| {
            // Never backwards: turning write caching off must not hide what consumers saw.
            let high = high.max(m.high).min(end);
            let new = Watermarks {
                log_start: start,
                local_start,
                high,
                log_end: end,
                stable: self.log.last_stable_offset(high),
            };
            let changed = *m != new;
            *m = new;
            changed
        });
    }

    fn complete_waiters(&mut self) {
        let high = self.marks.borrow().high;
        let (done, rest): (Vec<_>, Vec<_>) = self.waiters.drain(..).partition(|w| w.needed <= high);
        self.waiters = rest;
        for w in done {
            let _ = w.reply.send(Ok(w.ok));
        }
    }

    fn fail_waiters(&mut self, e: io::Error) {
        for w in self.waiters.drain(..) {
            let _ = w.reply.send(Err(PartitionError::Storage(io::Error::new(
                e.kind(),
                e.to_string(),
            ))));
        }
    }

    fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        committed: bool,
        in_place: bool,
    ) -> Result<ReadOk, PartitionError> {
        let marks = *self.marks.borrow();
        if offset < marks.log_start || offset > marks.log_end {
            return Err(PartitionError::OffsetOutOfRange {
                offset,
                start: marks.log_start,
                end: marks.log_end,
            });
        }
        let limit = if committed { marks.stable } else { marks.high };
        let Some(slice) = self.log.locate_range(offset, max_bytes, limit)? else {
            return Ok(ReadOk {
                records: None,
                marks,
                aborted: Vec::new(),
            });
        };
        self.metrics.fetched_bytes.inc_by(slice.len as u64);
        let aborted = if committed {
            self.log
                .producers()
                .aborted_overlapping(offset, slice.end_offset.min(limit))
        } else {
            Vec::new()
        };
        let records = if in_place {
            Stored::File(slice)
        } else {
            Stored::Mem(slice.read()?)
        };
        Ok(ReadOk {
            records: Some(records),
            marks,
            aborted,
        })
    }

    fn offsets(&self, q: OffsetQuery) -> io::Result<Option<(i64, i64)>> {
        let marks = *self.marks.borrow();
        Ok(match q {
            OffsetQuery::Earliest => Some((marks.log_start, -1)),
            OffsetQuery::EarliestLocal => Some((marks.local_start, -1)),
            OffsetQuery::Latest => Some((marks.high, -1)),
            OffsetQuery::LatestStable => Some((marks.stable, -1)),
            OffsetQuery::MaxTimestamp => match self.log.max_timestamp() {
                Some(ts) => self
                    .log
                    .offset_for_timestamp(ts)?
                    .filter(|&(o, _)| o < marks.high),
                None => None,
            },
            OffsetQuery::Timestamp(ts) => self
                .log
                .offset_for_timestamp(ts)?
                .filter(|&(o, _)| o < marks.high),
        })
    }

    fn retention(&mut self) {
        self.set_raft_bounds();
        self.expire_assigned_producers(self.clock.now_ms());
        let expired = self
            .log
            .expire_producers(self.clock.now_ms(), self.config.producer_expiry_ms);
        if expired > 0 {
            tracing::debug!(dir = %self.log.dir().display(), expired, "expired idle producer ids");
        }
        if let Some(t) = &mut self.tiered {
            match t.retention(&mut self.log, self.clock.now_ms()) {
                Ok(true) => self.publish(),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(dir = %self.log.dir().display(), error = %e, "retention failed")
                }
            }
        } else {
            match self.log.apply_retention(self.clock.now_ms()) {
                Ok(0) => {}
                Ok(freed) => {
                    tracing::debug!(dir = %self.log.dir().display(), freed, "retention removed segments");
                    self.publish();
                }
                Err(e) => {
                    tracing::error!(dir = %self.log.dir().display(), error = %e, "retention failed")
                }
            }
        }
        self.forget_removed(self.log.local_start_offset());
    }

    /// Starts a compaction of the sealed segments on the blocking pool when the topic is
    /// compacted and, as in Kafka's log cleaner, the cleanable part of the log (the sealed
    /// segments whose records are all older than `min.compaction.lag.ms`) is dirty (written
    /// since the last compaction) by at least `min.cleanable.dirty.ratio` of its bytes, or a
    /// dirty segment is older than `max.compaction.lag.ms`; or tombstones may have aged out.
    fn maybe_compact(&mut self) -> Option<CompactionTask> {
        if !self.config.compact {
            return None;
        }
        let now = self.clock.now_ms();
        if now < self.compaction_retry_at {
            return None;
        }
        let segs = self.log.sealed_summaries();
        let plan = compaction::plan(&segs, self.compacted_through, &self.config, now);
        let tombstones_due = now - self.last_compaction_ms > self.config.delete_retention_ms;
        let end = match plan {
            Some(end) => end,
            // Nothing new to clean: re-clean the part cleaned before for aged tombstones.
            None if tombstones_due && self.compacted_through > 0 => self.compacted_through,
            None => return None,
        };
        // Never past an open transaction: whether its records stay is not decided yet.
        let end = end.min(
            self.log
                .producers()
                .first_unstable_offset()
                .unwrap_or(i64::MAX),
        );
        let bases: Vec<i64> = segs
            .iter()
            .filter(|s| s.next_offset <= end)
            .map(|s| s.base_offset)
            .collect();
        if bases.is_empty() {
            return None;
        }
        self.compacted_through = end;
        self.last_compaction_ms = now;
        let dir = self.log.dir().to_path_buf();
        let horizon = now - self.config.delete_retention_ms;
        let flusher = self.flusher.clone();
        let aborted = self.log.producers().aborted().to_vec();
        Some(Box::pin(async move {
            flusher
                .offload(move || crate::log::compaction::clean(&dir, &bases, horizon, &aborted))
                .await?
        }))
    }

    fn compaction_done(&mut self, res: io::Result<crate::log::compaction::Cleaned>) {
        // Compaction took only segments up to the Raft checkpoint; what raft-rs still read of
        // them it reads no more, before they change under it.
        if let Some(offset) = self.raft.as_ref().and_then(|r| r.checkpoint_offset()) {
            self.forget_removed(offset);
        }
        match res.and_then(|c| {
            self.log
                .install_cleaned(&c.swapped, self.clock.now_ms())
                .map(|()| c)
        }) {
            Ok(c) if !c.swapped.is_empty() => {
                tracing::info!(
                    dir = %self.log.dir().display(),
                    segments = c.swapped.len(),
                    removed = c.records_removed,
                    before = c.bytes_before,
                    after = c.bytes_after,
                    "compacted"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(dir = %self.log.dir().display(), error = %e, "compaction failed; will retry in 30 s");
                self.compacted_through = -1;
                self.compaction_retry_at = self.clock.now_ms() + 30_000;
            }
        }
    }

    async fn stop(
        mut self: Box<Self>,
        (delete, delete_remote, reply): StopRequest,
        inflight: Option<FlushFuture>,
        compaction: Option<CompactionTask>,
    ) {
        self.forget_failure();
        // A deleted partition's directory must not get compaction output after it is removed
        // (a later topic of the same name would install it). On shutdown the files it leaves
        // are finished or discarded at the next start, so there is no need to wait.
        if let (true, Some(c)) = (delete, compaction) {
            let _ = c.await;
        }
        if let Some(f) = inflight {
            let res = f.await;
            self.flush_done(res);
        }
        if let Some(f) = self.start_flush() {
            let res = f.await;
            self.flush_done(res);
        }
        self.fail_waiters(io::Error::other("partition stopped"));
        if let Some(t) = &self.tiered {
            if let Err(e) = t.tier().close(t.id(), delete_remote).await {
                tracing::error!(dir = %self.log.dir().display(), error = %e, "remote tier close failed");
            }
        }
        if delete {
            let dir = self.log.dir().to_path_buf();
            drop(self.log);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::error!(dir = %dir.display(), error = %e, "could not remove deleted partition");
            }
        }
        let _ = reply.send(());
    }
}
