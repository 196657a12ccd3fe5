//! Per-partition Raft groups (raft-rs), driven by the partition actor.
//!
//! The Kafka batches are the Raft entries' payload: the leader proposes a produce's batches
//! with their offsets, leader epoch (its term) and LogAppendTime assigned
//! ([`Command::Append`], decided in `partition::assign`); once the group commits the entry,
//! every replica (leader included) appends them to its own segment log as they are, in commit
//! order. Entries written before leaders assigned batches ([`Command::Produce`]) are applied
//! through the single-node append path, which assigns alike on every replica. The high
//! watermark is what has been applied and flushed, which is always committed.
//!
//! The Raft log is kept in `<data>/raft/<topic>-<id>/<partition>/` (the same record files as
//! the controller's, [`log_file`]), read by raft-rs through [`storage::DiskStorage`] (entries
//! stay on disk; memory holds their locations and the newest ones). An assigned entry's
//! batches are placed in the partition's segments when it is persisted, and its Raft log record
//! only says where ([`record::Placed`], `partition::placement`): one write per record. Once the
//! segments hold an applied entry, synced, a checkpoint may record it and the Raft log files
//! before it go ([`applied`], [`checkpoint`]); a restart applies only what follows the
//! checkpoint, and a follower behind the leader's first index copies the leader's segments
//! instead ([`snapshot`]).
//!
//! Moving a group to other replicas is [`reassign`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use raft::eraftpb::{Entry, EntryType, Message};
use raft::{RawNode, StateRole, Storage as _};

pub use entry::{assigned_batches, is_produce, Command, ProduceEntry, Recorded};
use log_file::{RaftStore, StoreError};
pub use reassign::conf_change;
use storage::DiskStorage;

mod applied;
pub mod checkpoint;
mod coalesce;
pub mod election;
mod entry;
pub mod guard;
pub mod heard;
pub mod log_file;
mod reassign;
pub mod record;
pub mod rejects;
pub mod snapshot;
pub mod storage;
pub mod throttle;

/// How often raft-rs is ticked (the controller and every partition group); elections take 10-20
/// ticks (0.5-1 s), heartbeats every 2.
pub const TICK: std::time::Duration = std::time::Duration::from_millis(50);
/// Ticks without a leader before a replica campaigns (raft-rs then randomizes up to twice this).
pub const ELECTION_TICKS: u32 = 10;

/// Sends a Raft message to a broker.
pub type SendFn = Arc<dyn Fn(u64, Message) + Send + Sync>;

/// Tells the controller that a reassignment reached its target replicas.
pub type ReportFn = Arc<dyn Fn(Vec<i32>) + Send + Sync>;

/// What a partition needs to join its group.
pub struct RaftSetup {
    pub id: u64,
    pub voters: Vec<u64>,
    pub dir: PathBuf,
    pub send: SendFn,
    /// Shared with the partition's handle: `term << 32 | leader` (leader 0: none).
    pub leader: Arc<AtomicU64>,
    /// Shared with the partition's handle: the leader's view of its followers.
    pub isr: SharedView,
    /// A follower not caught up for this long leaves the ISR (`replica.lag.time.max.ms`).
    pub lag_max: std::time::Duration,
    /// The topic's min.insync.replicas: acks=all needs this many live voters.
    pub min_insync: usize,
    /// The preferred leader (the assignment's first replica); leadership returns to it.
    pub preferred: u64,
    /// The replicas the group should have: the reassignment target, else the assignment.
    pub goal: Vec<u64>,
    /// Whether `goal` is an ongoing reassignment's target (reported once reached).
    pub reassigning: bool,
    /// Whether this replica is one the reassignment adds: what the follower throttle paces.
    pub adding: bool,
    pub on_reassigned: ReportFn,
    /// `icestream_leader_changes_total`, counted when this replica takes the leadership.
    pub leader_changes: prometheus_client::metrics::counter::Counter,
    /// Where messages the [`guard`] drops are counted.
    pub rejected: crate::metrics::Rejections,
    /// Reads chunks of another replica's log, to install a snapshot.
    pub chunks: snapshot::ChunkFn,
    /// The Raft log starts a new file past this size ([`log_file::FILE_BYTES`] by default).
    pub file_bytes: u64,
    /// The broker's reassignment throttles: what its learners take in, what it serves them.
    pub throttles: Throttles,
    /// Set once every broker reads entries whose batches the leader assigned
    /// (`cluster::features::ASSIGNED_ENTRIES`): from then on a leader proposes those.
    pub assigned_entries: Arc<std::sync::atomic::AtomicBool>,
    /// The partition's segment log, where entries' batches are placed (one log); `None`
    /// writes every entry whole to the Raft log.
    pub segments: Option<PathBuf>,
    /// Seeds the replica's election timeouts ([`election`]): a simulation's, for exact
    /// replay. `None` (production) leaves raft-rs to draw them.
    pub election_seed: Option<u64>,
}

/// The broker's reassignment throttles ([`throttle`]).
#[derive(Debug, Clone, Default)]
pub struct Throttles {
    pub leader: Arc<throttle::Throttle>,
    pub follower: Arc<throttle::Throttle>,
}

/// The leader's view of its followers, published by the partition actor at every tick while it
/// leads (empty otherwise) and read by Metadata, Fetch and gossip on any thread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaView {
    /// The term it was computed in (the leader epoch).
    pub epoch: i32,
    /// In-sync replicas, leader included, sorted.
    pub isr: Vec<i32>,
    /// Followers that hold everything committed right now and were heard within an election
    /// timeout: the ones a consumer may be sent to (KIP-392).
    pub caught_up: Vec<i32>,
}

pub type SharedView = Arc<parking_lot::RwLock<ReplicaView>>;

/// Decodes [`RaftSetup::leader`]: `(leader node id or -1, leader epoch)`.
pub fn leader_of(v: &AtomicU64) -> (i32, i32) {
    let v = v.load(Ordering::Relaxed);
    let leader = (v & 0xffff_ffff) as i32;
    let term = (v >> 32) as i32;
    (if leader == 0 { -1 } else { leader }, term)
}

/// A proposal's identity: the term and index of its entry. Raft never puts two entries at
/// the same term and index, and a restarted replica never leads a term it led before, so an
/// entry left in the log by an earlier process can never answer a new produce (a per-process
/// counter could: after a restart it handed out the same numbers again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProposalId {
    pub term: u64,
    pub index: u64,
}

/// A committed entry, ready to apply.
pub struct Committed {
    /// The entry's identity, to find the request waiting for it on the replica that proposed it.
    pub proposal: ProposalId,
    pub epoch: i32,
    pub now: i64,
    pub command: Command,
}

pub struct PartitionRaft {
    node: RawNode<DiskStorage>,
    store: RaftStore,
    send: SendFn,
    leader: Arc<AtomicU64>,
    id: u64,
    pub min_insync: usize,
    preferred: u64,
    ticks: u64,
    /// A new group's other replicas hold their election timers this many ticks while no
    /// leader is known, so the preferred replica's campaign wins even when it opens the group
    /// later than they do (a busy broker applying the topic late). Without it the first leader
    /// was often another replica, and leadership moved to the preferred one two seconds later:
    /// a second move of every group coordinator on `__consumer_offsets`, right after the
    /// first, which clients that cached the first one (librdkafka's admin client) never see.
    hold_election: u64,
    /// The broker is shutting down ([`Self::hand_off`]): this replica no longer campaigns or
    /// takes leadership handed to it.
    leaving: bool,
    /// When each peer was last heard from (any message): for min.insync.replicas, the ISR,
    /// reassignment and handover.
    heard: heard::Heard,
    /// The term this replica last led and when it took leadership: for an election timeout
    /// after that, every voter counts as active ([`Self::active_voters`]).
    leading_since: Option<(u64, tokio::time::Instant)>,
    view: SharedView,
    lag_max: std::time::Duration,
    /// While leading: when each follower last held the leader's whole log while being heard
    /// from (Kafka's lastCaughtUpTime).
    caught_up_at: HashMap<u64, tokio::time::Instant>,
    /// The leader's last index at its previous tick (none before its first as leader).
    last_at_prev_tick: Option<u64>,
    goal: Vec<u64>,
    reassigning: bool,
    on_reassigned: ReportFn,
    leader_changes: prometheus_client::metrics::counter::Counter,
    /// No completion report before this tick (the controller may take a moment to apply it).
    next_report: u64,
    /// The last reconfigure round saw a joint configuration.
    joint_seen: bool,
    rejected: crate::metrics::Rejections,
    applied: applied::Applied,
    chunks: snapshot::ChunkFn,
    throttles: Throttles,
    /// This replica is one an ongoing reassignment adds.
    adding: bool,
    assigned_entries: Arc<std::sync::atomic::AtomicBool>,
    elections: Option<election::SeededElections>,
}

/// Ticks (2 s) a new group's non-preferred replicas wait for the preferred one to win.
const FRESH_ELECTION_HOLD: u64 = 40;

impl PartitionRaft {
    pub fn open(setup: RaftSetup) -> Result<PartitionRaft, StoreError> {
        let (mut store, storage) =
            RaftStore::open(&setup.dir, &setup.voters, setup.segments.as_deref())?;
        store.set_file_bytes(setup.file_bytes);
        let mut config = log_file::raft_config(setup.id);
        // A commit is not broadcast on its own: followers learn it with the next append or
        // heartbeat, as a Kafka follower learns the high watermark with its next fetch.
        // Broadcast, it cost every follower a message, a Raft log write and a sync per commit.
        config.skip_bcast_commit = true;
        // Entries up to the checkpoint are in the segment log already: not applied again.
        let checkpoint = storage.checkpoint_index();
        config.applied = checkpoint;
        let logger = log_file::discard_logger();
        let fresh = storage
            .initial_state()
            .is_ok_and(|s| s.hard_state.term == 0);
        // raft-rs panics on a commit index past the log's end; that only happens when the disk
        // lost what it said it had synced, so the replica refuses to start instead.
        if let (Ok(state), Ok(last)) = (storage.initial_state(), storage.last_index()) {
            if state.hard_state.commit > last {
                return Err(StoreError::Corrupt(
                    setup.dir.clone(),
                    format!(
                        "the Raft state says {} entries are committed but the log ends at {last}: \
                         the disk lost synced writes",
                        state.hard_state.commit
                    ),
                ));
            }
        }
        let elections = setup
            .election_seed
            .map(|seed| election::SeededElections::new(seed, &mut config));
        let mut node = RawNode::new(&config, storage, &logger).map_err(|e| {
            StoreError::Corrupt(setup.dir.clone(), format!("cannot start raft: {e}"))
        })?;
        // A new group elects its preferred replica at once, which spreads leaders evenly.
        if fresh && setup.preferred == setup.id {
            let _ = node.campaign();
        }
        Ok(PartitionRaft {
            node,
            store,
            send: setup.send,
            leader: setup.leader,
            id: setup.id,
            min_insync: setup.min_insync,
            preferred: setup.preferred,
            ticks: 0,
            hold_election: if fresh && setup.preferred != setup.id {
                FRESH_ELECTION_HOLD
            } else {
                0
            },
            leaving: false,
            heard: heard::Heard::default(),
            leading_since: None,
            view: setup.isr,
            lag_max: setup.lag_max,
            caught_up_at: HashMap::new(),
            last_at_prev_tick: None,
            goal: setup.goal,
            reassigning: setup.reassigning,
            adding: setup.adding,
            on_reassigned: setup.on_reassigned,
            leader_changes: setup.leader_changes,
            next_report: 0,
            joint_seen: false,
            rejected: setup.rejected,
            applied: applied::Applied {
                index: checkpoint,
                ..Default::default()
            },
            chunks: setup.chunks,
            throttles: setup.throttles,
            assigned_entries: setup.assigned_entries,
            elections,
        })
    }

    /// Whether a leader proposes produces with their batches assigned ([`Command::Append`]).
    pub fn assigns(&self) -> bool {
        self.assigned_entries.load(Ordering::Relaxed)
    }

    /// The broker's reassignment throttles.
    pub fn throttles(&self) -> &Throttles {
        &self.throttles
    }

    /// Whether this replica is one an ongoing reassignment adds (it may not know it is a
    /// learner before it applies the log that says so): what the follower throttle paces.
    pub fn is_adding(&self) -> bool {
        self.adding
    }

    /// Whether replica `id` is a learner of this group.
    pub fn is_learner_id(&self, id: u64) -> bool {
        self.node.raft.prs().conf().learners().contains(&id)
    }

    /// Leaves the group for good (after a storage error): the handle no longer names a
    /// leader, so this broker answers NOT_LEADER until its peers' new leader is known.
    pub fn withdraw(&self) {
        self.leader
            .store(self.node.raft.term << 32, Ordering::Relaxed);
        *self.view.write() = ReplicaView::default();
    }

    /// Whether raft-rs has more to persist, send or apply.
    pub fn has_ready(&self) -> bool {
        self.node.has_ready()
    }

    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    /// The last entry applied (handed to the partition), the last synced here, the last in the
    /// log.
    pub fn applied_index(&self) -> u64 {
        self.applied.index
    }

    pub fn persisted_index(&self) -> u64 {
        self.node.raft.raft_log.persisted
    }

    pub fn last_index(&self) -> u64 {
        self.node.raft.raft_log.last_index()
    }

    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    /// This replica's node id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// How this replica reads another's log, to install a snapshot.
    pub fn chunk_fn(&self) -> snapshot::ChunkFn {
        self.chunks.clone()
    }

    /// Voters heard from within an election timeout (this one included), for
    /// min.insync.replicas. raft-rs's own `recent_active` is cleared at every quorum check,
    /// which would refuse writes spuriously.
    ///
    /// For an election timeout after this replica takes leadership every voter counts: a voter
    /// that did not vote for it (a broker that opened the group a few ms later, say) is heard
    /// only once it answers the new leader's first appends, and refusing acks=all until then
    /// failed a produce right after a topic's creation. Kafka starts a new partition's ISR with
    /// every replica for the same reason. A voter that is really gone drops out when the window
    /// ends.
    pub fn active_voters(&self) -> usize {
        let me = self.id;
        let term = self.node.raft.term;
        let taking_over = self.is_leader()
            && self
                .leading_since
                .is_none_or(|(t, at)| t != term || at.elapsed() < heard::LATELY);
        self.node
            .raft
            .prs()
            .iter()
            .filter(|(id, _)| {
                self.node.raft.prs().conf().voters().contains(**id)
                    && (**id == me || taking_over || self.heard.lately(**id))
            })
            .count()
    }

    /// Recomputes the leader's view of its followers (at every tick; a handful of replicas).
    ///
    /// A follower is in sync while it was caught up and heard from within the last `lag_max`,
    /// as Kafka's ISR; a follower that dies drops out after `lag_max` even on an idle
    /// partition, because it is no longer heard. Caught up means holding what the leader held a
    /// tick ago (Kafka: the leader's end at the follower's previous fetch), so a follower that
    /// keeps up under a steady stream of writes stays in sync.
    fn refresh_view(&mut self) {
        if !self.is_leader() {
            self.caught_up_at.clear();
            self.last_at_prev_tick = None;
            if *self.view.read() != ReplicaView::default() {
                *self.view.write() = ReplicaView::default();
            }
            return;
        }
        let now = tokio::time::Instant::now();
        let last = self.node.raft.raft_log.last_index();
        let target = self.last_at_prev_tick.map_or(last, |prev| prev.min(last));
        self.last_at_prev_tick = Some(last);
        let committed = self.node.raft.raft_log.committed;
        let mut view = ReplicaView {
            epoch: self.term().min(i32::MAX as u64) as i32,
            isr: vec![self.id as i32],
            caught_up: vec![],
        };
        for (&id, pr) in self.node.raft.prs().iter() {
            if id == self.id {
                continue;
            }
            let live = self.heard.lately(id);
            if live && pr.matched >= target {
                self.caught_up_at.insert(id, now);
            }
            if self
                .caught_up_at
                .get(&id)
                .is_some_and(|t| now.duration_since(*t) < self.lag_max)
            {
                view.isr.push(id as i32);
            }
            if live && pr.matched >= committed {
                view.caught_up.push(id as i32);
            }
        }
        view.isr.sort_unstable();
        view.caught_up.sort_unstable();
        if *self.view.read() != view {
            *self.view.write() = view;
        }
    }

    pub fn tick(&mut self) {
        let leaderless = self.node.raft.leader_id == raft::INVALID_ID;
        let held = leaderless && self.ticks < self.hold_election;
        // A leaving follower's election timer stops: it never campaigns again.
        let stopped = self.leaving && !self.is_leader();
        let seeded = match &mut self.elections {
            Some(e) => e.tick(&self.node.raft),
            None => true,
        };
        if !held && !stopped && seeded {
            self.node.tick();
        }
        self.ticks += 1;
        self.refresh_view();
        self.check_snapshots();
        // Every half second a leader takes a step towards the goal configuration.
        if self.ticks.is_multiple_of(10) && self.is_leader() {
            self.reconfigure();
        }
        // Every few seconds a leader hands leadership back to the preferred replica once it
        // has caught up, so leaders stay balanced after failovers (not while a reassignment
        // moves leadership itself, and only to a voter).
        if self.ticks.is_multiple_of(40) {
            let _ = self.elect_preferred();
        }
    }

    /// Controlled shutdown: from now on this replica never campaigns; when it leads, it hands
    /// leadership to a voter heard from lately (the preferred replica if it is one, else the
    /// one furthest along), which raft-rs first brings up to date. Asked again until this
    /// replica no longer leads.
    pub fn hand_off(&mut self) -> HandOff {
        self.leaving = true;
        if !self.is_leader() {
            return HandOff::NotLeader;
        }
        let raft = &self.node.raft;
        let target = handover_target(raft, &self.heard, Some(self.preferred));
        match target {
            Some(t) => {
                if raft.lead_transferee != Some(t) {
                    self.node.transfer_leader(t);
                }
                HandOff::Started(t)
            }
            None => HandOff::NoTarget,
        }
    }

    /// Hands leadership to the preferred replica when this replica leads and the preferred one
    /// is a voter that has caught up (the periodic rebalance above, and ElectLeaders with
    /// election type PREFERRED).
    pub fn elect_preferred(&mut self) -> PreferredElection {
        if !self.is_leader() {
            return PreferredElection::NotLeader;
        }
        if self.preferred == self.id {
            return PreferredElection::NotNeeded;
        }
        if self.reassigning
            || !self
                .node
                .raft
                .prs()
                .conf()
                .voters()
                .contains(self.preferred)
        {
            return PreferredElection::NotAvailable;
        }
        let last = self.node.raft.raft_log.last_index();
        let caught_up = self
            .node
            .raft
            .prs()
            .get(self.preferred)
            .is_some_and(|p| p.matched == last);
        if !caught_up {
            return PreferredElection::NotAvailable;
        }
        self.node.transfer_leader(self.preferred);
        PreferredElection::Started(self.preferred)
    }

    /// Steps a message from another replica. The cluster's router checked the sender is one
    /// of the partition's replicas; the [`guard`] drops what raft-rs cannot survive. A snapshot
    /// this replica's log does not cover comes back: the partition copies the leader's segments
    /// up to it, then steps it with [`Self::step_copied`].
    pub fn step(&mut self, m: Message) -> Option<Message> {
        if let Err(e) = guard::check(&self.node.raft, &m, guard::Peers::Vouched) {
            crate::raft::rejects::note(
                &self.rejected,
                e.reason(),
                format_args!("partition raft group: {e}"),
            );
            return None;
        }
        self.heard.note(m.from);
        if self.leaving && m.get_msg_type() == raft::eraftpb::MessageType::MsgTimeoutNow {
            // Leadership handed back (the preferred-leader rebalance): refused by not
            // campaigning; the leader's transfer times out and it keeps leading.
            return None;
        }
        if applied::is_snapshot(&m) && self.needs_copy(&m) {
            return Some(m);
        }
        if let Err(e) = self.node.step(m) {
            tracing::debug!(error = %e, "partition raft ignored a message");
        }
        None
    }

    /// A produce entry to fill with the batches as the client sent them (`assigned: false`) or
    /// as the leader assigned them, which every replica appends as they are (`assigned`); then
    /// [`Self::propose_produce`]. `body_len` is the batches' total size.
    pub fn produce_entry(&self, assigned: bool, now: i64, body_len: usize) -> ProduceEntry {
        let kind = if assigned { entry::ASSIGNED } else { 0 };
        ProduceEntry::start(self.id, kind, now, body_len)
    }

    /// Proposes a produce entry; returns the proposal's identity, or `None` if not the leader
    /// (or raft-rs dropped it, during a leadership transfer).
    pub fn propose_produce(&mut self, e: ProduceEntry) -> Option<ProposalId> {
        self.propose_data(e.into_data())
    }

    /// Proposes a produce's records as sent (tests).
    #[cfg(test)]
    pub fn propose(&mut self, records: &[u8], now: i64) -> Option<ProposalId> {
        self.propose_entry(0, records, now)
    }

    /// Proposes moving the log start offset to `offset` on every replica (DeleteRecords).
    pub fn propose_delete_records(&mut self, offset: i64, now: i64) -> Option<ProposalId> {
        self.propose_entry(entry::COMMAND, &entry::delete_records(offset), now)
    }

    /// Proposes sealing the partition on every replica (unmount).
    pub fn propose_seal(&mut self, now: i64) -> Option<ProposalId> {
        self.propose_entry(entry::COMMAND, &entry::seal(), now)
    }

    fn propose_entry(&mut self, kind: u64, body: &[u8], now: i64) -> Option<ProposalId> {
        self.propose_data(entry::encode(self.id, kind, now, body))
    }

    fn propose_data(&mut self, data: Vec<u8>) -> Option<ProposalId> {
        if !self.is_leader() {
            return None;
        }
        self.node.propose(vec![], data).ok()?;
        // A leader appends a proposal to its log at once, as the last entry of its term.
        Some(ProposalId {
            term: self.node.raft.term,
            index: self.node.raft.raft_log.last_index(),
        })
    }

    /// Entries applied here and matched by every follower that keeps up (a leader's) are read
    /// from the cache no more; one behind reads from the log file anyway.
    fn trim_cache(&self) {
        let mut floor = self.applied.index;
        if self.is_leader() {
            for (id, pr) in self.node.raft.prs().iter() {
                if *id != self.id && pr.recent_active && pr.state == raft::ProgressState::Replicate
                {
                    floor = floor.min(pr.matched);
                }
            }
        }
        self.node.store().trim_cache(floor);
    }

    /// Runs one Ready: persists, sends, and returns the committed produces to append.
    pub fn drive(&mut self) -> Result<Vec<Committed>, StoreError> {
        let send = &self.send;
        let committed = log_file::run_ready(&mut self.node, &mut self.store, |msgs| {
            for m in msgs {
                send(m.to, m);
            }
        })?;
        self.after_install();
        let mut out = Vec::new();
        self.collect(committed, &mut out);
        self.publish_leader();
        self.trim_cache();
        Ok(out)
    }

    /// [`Self::drive`] without syncing the Raft log: the caller syncs [`Self::log_file`] off
    /// the shard thread, then calls [`Self::persisted`] with what this returned, in order.
    pub fn drive_unsynced(
        &mut self,
        segments: &mut dyn log_file::Segments,
    ) -> Result<(Vec<Committed>, Option<log_file::Unsynced>), StoreError> {
        let send = &self.send;
        let (committed, unsynced) =
            log_file::run_ready_unsynced(&mut self.node, &mut self.store, segments, |msgs| {
                for m in coalesce::coalesce(msgs) {
                    send(m.to, m);
                }
            })?;
        self.after_install();
        let mut out = Vec::new();
        self.collect(committed, &mut out);
        self.publish_leader();
        self.trim_cache();
        Ok((out, unsynced))
    }

    /// The Raft log file was synced after these Readies were written: their messages go out
    /// and raft-rs counts their entries as persisted here.
    pub fn persisted(&mut self, done: Vec<log_file::Unsynced>) {
        let Some(last) = done.last().map(|u| u.number) else {
            return;
        };
        // One sync covered these Readies: their acknowledgements go as one per peer.
        let msgs = done.into_iter().flat_map(|u| u.messages).collect();
        for m in coalesce::coalesce(msgs) {
            (self.send)(m.to, m);
        }
        self.node.on_persist_ready(last);
    }

    /// The Raft log files written since the last call, for the caller's sync.
    pub fn take_dirty(&mut self) -> Vec<Arc<std::fs::File>> {
        self.store.take_dirty()
    }

    pub fn log_path(&self) -> PathBuf {
        self.store.path()
    }

    fn publish_leader(&mut self) {
        let leader = self.node.raft.leader_id & 0xffff_ffff;
        let now = (self.node.raft.term << 32) | leader;
        let before = self.leader.swap(now, Ordering::Relaxed);
        if before != now && leader == self.id && (before & 0xffff_ffff) != self.id {
            self.leader_changes.inc();
        }
        if leader == self.id
            && self
                .leading_since
                .is_none_or(|(t, _)| t != self.node.raft.term)
        {
            self.leading_since = Some((self.node.raft.term, tokio::time::Instant::now()));
        }
    }

    fn collect(&mut self, entries: Vec<Entry>, out: &mut Vec<Committed>) {
        for e in entries {
            self.applied.index = self.applied.index.max(e.index);
            if e.get_entry_type() == EntryType::EntryConfChangeV2 {
                self.apply_conf_change(&e);
                continue;
            }
            if let Some(c) = entry::decode(&e) {
                out.push(c);
            }
        }
    }
}

impl PartitionRaft {
    /// The entries after the checkpoint, as the segment log should hold them.
    pub fn recorded_after_checkpoint(&self) -> Result<Vec<(u64, Recorded)>, StoreError> {
        let store = self.node.store();
        let after = store.checkpoint_index();
        let recorded = store
            .recorded_after(after)
            .map_err(|source| StoreError::Io {
                path: self.store.dir().to_path_buf(),
                source,
            })?;
        Ok(recorded
            .into_iter()
            .map(|(e, placed)| {
                let what = match placed {
                    Some(p) => Recorded::Placed {
                        offset: p.offset,
                        next: p.next,
                    },
                    None => entry::recorded_whole(&e),
                };
                (e.index, what)
            })
            .collect())
    }

    /// The segments below `offset` were deleted or are about to be rewritten: raft-rs no
    /// longer reads the entries placed there (a follower that needs them gets a snapshot).
    pub fn forget_below(&self, offset: i64) {
        self.node.store().forget_below(offset);
    }

    /// The index of the last durable checkpoint (0: none).
    pub fn checkpoint_index(&self) -> u64 {
        self.node.store().checkpoint_index()
    }
}

/// Proposals waiting for their entry to be applied.
pub type Pending<T> = HashMap<ProposalId, T>;

/// The voter to hand leadership to: `preferred` if it is a voter heard from lately, else the
/// one furthest along among those (the lowest id on a tie); `None` when no other voter was
/// heard from lately. Partition groups and the controller hand over alike.
pub fn handover_target<T: raft::Storage>(
    raft: &raft::Raft<T>,
    heard: &heard::Heard,
    preferred: Option<u64>,
) -> Option<u64> {
    let prs = raft.prs();
    let candidates: Vec<(u64, u64)> = prs
        .conf()
        .voters()
        .ids()
        .iter()
        .filter(|&id| id != raft.id && heard.lately(id))
        .filter_map(|id| prs.get(id).map(|p| (id, p.matched)))
        .collect();
    candidates
        .iter()
        .find(|(id, _)| Some(*id) == preferred)
        .or_else(|| {
            candidates
                .iter()
                .max_by_key(|(id, matched)| (*matched, u64::MAX - id))
        })
        .map(|(id, _)| *id)
}

/// What [`PartitionRaft::hand_off`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandOff {
    /// This replica does not lead.
    NotLeader,
    /// Leadership is being transferred to this node id.
    Started(u64),
    /// No other voter was heard from lately: nobody to hand over to.
    NoTarget,
}

/// What a request to move leadership to the preferred replica found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreferredElection {
    /// This replica does not lead the group.
    NotLeader,
    /// The preferred replica leads already.
    NotNeeded,
    /// The preferred replica is not an in-sync voter (or a reassignment is under way).
    NotAvailable,
    /// Leadership is being transferred to this node id.
    Started(u64),
}

#[cfg(test)]
mod reassign_tests {
    use super::*;
    use bytes::Bytes;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    type Outbox = Arc<Mutex<Vec<Message>>>;
    type Reports = Arc<Mutex<Vec<Vec<i32>>>>;

    fn open(
        dir: &std::path::Path,
        id: u64,
        goal: &[u64],
        out: &Outbox,
        reports: &Reports,
    ) -> PartitionRaft {
        let out = out.clone();
        let reports = reports.clone();
        PartitionRaft::open(RaftSetup {
            id,
            // Always the creation-time voters, also for a replica added later.
            voters: vec![1, 2, 3],
            dir: dir.join(id.to_string()),
            send: Arc::new(move |_, m| out.lock().unwrap().push(m)),
            leader: Default::default(),
            isr: Default::default(),
            lag_max: std::time::Duration::from_secs(30),
            min_insync: 1,
            preferred: 1,
            goal: goal.to_vec(),
            reassigning: goal != [1, 2, 3],
            on_reassigned: Arc::new(move |r| reports.lock().unwrap().push(r)),
            leader_changes: Default::default(),
            rejected: Default::default(),
            chunks: Arc::new(|_, _| tokio::sync::oneshot::channel().1),
            file_bytes: log_file::FILE_BYTES,
            throttles: Default::default(),
            adding: false,
            assigned_entries: Default::default(),
            segments: None,
            election_seed: None,
        })
        .unwrap()
    }

    /// Replicas 1, 2 and 3 of a new group whose goal is those three.
    fn group(dir: &std::path::Path) -> (Outbox, Reports, BTreeMap<u64, PartitionRaft>) {
        let out = Outbox::default();
        let reports = Reports::default();
        let nodes = (1..=3)
            .map(|id| (id, open(dir, id, &[1, 2, 3], &out, &reports)))
            .collect();
        (out, reports, nodes)
    }

    /// Hands every message sent so far to its addressee (lossless network).
    fn deliver(nodes: &mut BTreeMap<u64, PartitionRaft>, out: &Outbox) {
        let msgs: Vec<Message> = std::mem::take(&mut *out.lock().unwrap());
        for m in msgs {
            if let Some(n) = nodes.get_mut(&m.to) {
                n.step(m);
            }
        }
    }

    /// Ticks every node `rounds` times, delivering messages in between (lossless network).
    fn run(nodes: &mut BTreeMap<u64, PartitionRaft>, out: &Outbox, rounds: usize) {
        for _ in 0..rounds {
            for n in nodes.values_mut() {
                n.tick();
            }
            for _ in 0..5 {
                for n in nodes.values_mut() {
                    n.drive().unwrap();
                }
                deliver(nodes, out);
            }
        }
    }

    fn voters(n: &PartitionRaft) -> (Vec<u64>, Vec<u64>, Vec<u64>) {
        let cs = n.conf_state();
        let sorted = |mut v: Vec<u64>| {
            v.sort_unstable();
            v
        };
        (
            sorted(cs.voters),
            sorted(cs.voters_outgoing),
            sorted(cs.learners),
        )
    }

    #[test]
    fn the_leader_moves_the_group_to_the_target_through_learners_and_a_joint_change() {
        let dir = tempfile::tempdir().unwrap();
        let (out, reports, mut nodes) = group(dir.path());
        run(&mut nodes, &out, 20);
        assert!(
            nodes[&1].is_leader(),
            "the preferred replica leads a new group"
        );
        // icestream_leader_changes_total: counted once, by the replica that took leadership.
        let changes = |n: &PartitionRaft| n.leader_changes.get();
        assert_eq!(
            nodes.values().map(changes).collect::<Vec<_>>(),
            vec![1, 0, 0]
        );
        for i in 0..20 {
            nodes.get_mut(&1).unwrap().propose(b"batch", i).unwrap();
        }
        run(&mut nodes, &out, 5);
        // Move to {2, 3, 4}: the leader (1) is removed, 4 starts with an empty log.
        nodes.insert(4, open(dir.path(), 4, &[2, 3, 4], &out, &reports));
        for n in nodes.values_mut() {
            n.set_goal(vec![2, 3, 4], true, false, 2);
        }
        run(&mut nodes, &out, 300);
        for id in [2, 3, 4] {
            assert_eq!(
                voters(&nodes[&id]),
                (vec![2, 3, 4], vec![], vec![]),
                "node {id}"
            );
        }
        let leader = nodes.values().find(|n| n.is_leader()).map(|n| n.id);
        assert!(matches!(leader, Some(2..=4)), "leader {leader:?}");
        assert!(
            changes(&nodes[&leader.unwrap()]) >= 1,
            "the new leader counted its change"
        );
        assert!(reports.lock().unwrap().contains(&vec![2, 3, 4]));
        let last = |n: &PartitionRaft| n.node.raft.raft_log.last_index();
        assert_eq!(
            last(&nodes[&4]),
            last(&nodes[&2]),
            "the new replica has the whole log"
        );
        // The new group commits without the old leader.
        nodes.remove(&1);
        let l = leader.unwrap();
        let before = nodes[&l].node.raft.raft_log.committed;
        nodes.get_mut(&l).unwrap().propose(b"after", 0).unwrap();
        run(&mut nodes, &out, 5);
        assert!(nodes[&l].node.raft.raft_log.committed > before);
        // A restart rebuilds the configuration from the creation-time voters and the log.
        nodes.remove(&4);
        let mut four = open(dir.path(), 4, &[2, 3, 4], &out, &reports);
        assert_eq!(
            voters(&four).0,
            vec![1, 2, 3],
            "starts from the initial ConfState"
        );
        four.drive().unwrap();
        assert_eq!(voters(&four), (vec![2, 3, 4], vec![], vec![]));
    }

    #[test]
    fn a_new_leader_counts_every_voter_as_active_for_an_election_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let (out, reports, mut nodes) = group(dir.path());
        // Replica 3 opens the group late: it has not answered the new leader yet.
        let late = nodes.remove(&3).unwrap();
        run(&mut nodes, &out, 20);
        out.lock().unwrap().clear();
        assert!(nodes[&1].is_leader());
        assert_eq!(
            nodes[&1].active_voters(),
            3,
            "acks=all with min.insync.replicas=3 is taken right after the election"
        );
        std::thread::sleep(heard::LATELY + std::time::Duration::from_millis(50));
        run(&mut nodes, &out, 1);
        assert_eq!(nodes[&1].active_voters(), 2, "3 was never heard from");
        nodes.insert(3, late);
        run(&mut nodes, &out, 5);
        assert_eq!(nodes[&1].active_voters(), 3, "3 answers once it opens");
        drop(reports);
    }

    #[test]
    fn forged_messages_are_dropped_and_the_group_keeps_committing() {
        let dir = tempfile::tempdir().unwrap();
        let (out, _, mut nodes) = group(dir.path());
        run(&mut nodes, &out, 20);
        for i in 0..5 {
            nodes.get_mut(&1).unwrap().propose(b"batch", i).unwrap();
        }
        run(&mut nodes, &out, 5);
        let term = nodes[&2].node.raft.term;
        // The reported heartbeat: a huge term and a commit far past the log end. raft-rs
        // would panic on it; the guard drops it.
        let mut hb = Message::default();
        hb.set_msg_type(raft::eraftpb::MessageType::MsgHeartbeat);
        hb.from = 3;
        hb.to = 2;
        hb.term = 1 << 30;
        hb.commit = 1 << 40;
        nodes.get_mut(&2).unwrap().step(hb.clone());
        let mut snap = hb.clone();
        snap.set_msg_type(raft::eraftpb::MessageType::MsgSnapshot);
        nodes.get_mut(&2).unwrap().step(snap);
        assert_eq!(
            nodes[&2].node.raft.term, term,
            "the forged term is not taken"
        );
        assert_eq!(
            nodes[&2]
                .rejected
                .get_or_create(&crate::metrics::RejectLabels {
                    reason: "raft_commit_past_log".into()
                })
                .get(),
            1
        );
        let before = nodes[&1].node.raft.raft_log.committed;
        nodes.get_mut(&1).unwrap().propose(b"after", 0).unwrap();
        run(&mut nodes, &out, 5);
        for n in nodes.values() {
            assert!(n.node.raft.raft_log.committed > before, "node {}", n.id);
        }
    }

    /// With the sync left to the caller, nothing counts as persisted on a replica before its
    /// sync completes: an entry written everywhere but synced nowhere never commits, and it
    /// commits once two of three replicas report their syncs.
    #[test]
    fn an_entry_commits_only_once_a_majority_synced_it() {
        let dir = tempfile::tempdir().unwrap();
        let (out, _, mut nodes) = group(dir.path());
        run(&mut nodes, &out, 20);
        let mut held: BTreeMap<u64, Vec<log_file::Unsynced>> = BTreeMap::new();
        let rounds = |nodes: &mut BTreeMap<u64, PartitionRaft>,
                      held: &mut BTreeMap<u64, Vec<log_file::Unsynced>>| {
            for _ in 0..5 {
                for n in nodes.values_mut() {
                    let (_, u) = n.drive_unsynced(&mut log_file::NoSegments).unwrap();
                    held.entry(n.id).or_default().extend(u);
                }
                deliver(nodes, &out);
            }
        };
        let id = nodes.get_mut(&1).unwrap().propose(b"x", 0).unwrap();
        rounds(&mut nodes, &mut held);
        let committed = |n: &PartitionRaft| n.node.raft.raft_log.committed;
        assert!(
            committed(&nodes[&1]) < id.index,
            "committed before any sync"
        );
        // Follower 2 syncs: with the leader unsynced, that is one of three.
        let done = held.remove(&2).unwrap_or_default();
        nodes.get_mut(&2).unwrap().persisted(done);
        rounds(&mut nodes, &mut held);
        assert!(
            committed(&nodes[&1]) < id.index,
            "committed with one synced copy"
        );
        // Follower 3 syncs too: a majority holds it.
        let done = held.remove(&3).unwrap_or_default();
        nodes.get_mut(&3).unwrap().persisted(done);
        rounds(&mut nodes, &mut held);
        assert!(
            committed(&nodes[&1]) >= id.index,
            "not committed with two synced copies"
        );
    }

    /// A learner that never answers (its broker is down) is not caught up, however short the
    /// log: the move waits, and the group keeps committing with its old voters.
    #[test]
    fn a_dead_new_replica_never_becomes_a_voter() {
        let dir = tempfile::tempdir().unwrap();
        let (out, _, mut nodes) = group(dir.path());
        run(&mut nodes, &out, 20);
        // Node 4 is in the target but never runs.
        for n in nodes.values_mut() {
            n.set_goal(vec![1, 2, 4], true, false, 1);
        }
        run(&mut nodes, &out, 100);
        assert_eq!(voters(&nodes[&1]), (vec![1, 2, 3], vec![], vec![4]));
        let before = nodes[&1].node.raft.raft_log.committed;
        nodes.get_mut(&1).unwrap().propose(b"still", 0).unwrap();
        run(&mut nodes, &out, 5);
        assert!(nodes[&1].node.raft.raft_log.committed > before);
    }

    /// A proposal left uncommitted by a process that died must never be taken for a proposal
    /// of the next process: its entry can commit later, and it would answer the new produce
    /// with the old records' offsets.
    #[test]
    fn proposal_identities_are_not_reused_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (out, reports, mut nodes) = group(dir.path());
        run(&mut nodes, &out, 20);
        let first = nodes.get_mut(&1).unwrap().propose(b"before", 0).unwrap();
        run(&mut nodes, &out, 2);
        // Node 1 leads again after a restart (the others restart too, so it may win).
        drop(nodes);
        let mut nodes: BTreeMap<u64, PartitionRaft> = (1..=3)
            .map(|id| (id, open(dir.path(), id, &[1, 2, 3], &out, &reports)))
            .collect();
        out.lock().unwrap().clear();
        run(&mut nodes, &out, 60);
        let leader = *nodes.iter().find(|(_, n)| n.is_leader()).unwrap().0;
        let second = nodes
            .get_mut(&leader)
            .unwrap()
            .propose(b"after", 0)
            .unwrap();
        assert!(second.term > first.term, "{first:?} then {second:?}");
        assert_ne!(first, second);
        let mut applied = Vec::new();
        for _ in 0..5 {
            for n in nodes.values_mut() {
                let c = n.drive().unwrap();
                if n.id == leader {
                    applied.extend(c.into_iter().map(|c| (c.proposal, c.command)));
                }
            }
            deliver(&mut nodes, &out);
        }
        let answered: Vec<_> = applied.iter().filter(|(p, _)| *p == second).collect();
        assert_eq!(answered.len(), 1);
        assert_eq!(
            answered[0].1,
            Command::Produce(Bytes::from_static(b"after"))
        );
    }

    #[test]
    fn a_seal_reaches_every_replica_at_one_index_and_no_checkpoint_passes_it() {
        let dir = tempfile::tempdir().unwrap();
        let (out, _reports, mut nodes) = group(dir.path());
        run(&mut nodes, &out, 20);
        let leader = *nodes.iter().find(|(_, n)| n.is_leader()).unwrap().0;
        let n = nodes.get_mut(&leader).unwrap();
        n.propose(b"before", 0).unwrap();
        let seal = n.propose_seal(0).unwrap();
        n.propose(b"after", 0).unwrap();
        let mut seen: BTreeMap<u64, Vec<(u64, Command)>> = BTreeMap::new();
        // Ticks too: followers learn the last commit from a heartbeat (it is not broadcast).
        for _ in 0..10 {
            for (id, n) in nodes.iter_mut() {
                n.tick();
                let c = n.drive().unwrap();
                seen.entry(*id)
                    .or_default()
                    .extend(c.into_iter().map(|c| (c.proposal.index, c.command)));
            }
            deliver(&mut nodes, &out);
        }
        for (id, applied) in &seen {
            let seals: Vec<u64> = applied
                .iter()
                .filter(|(_, c)| *c == Command::Seal)
                .map(|(i, _)| *i)
                .collect();
            assert_eq!(seals, vec![seal.index], "replica {id}");
            // The produce after it is still handed over: the partition refuses it.
            assert_eq!(
                applied.last().map(|(_, c)| c),
                Some(&Command::Produce(Bytes::from_static(b"after")))
            );
        }
        // A sealed partition notes what it applied before the Seal, and nothing after it
        // (everything up to "after" was handed over).
        for n in nodes.values_mut() {
            assert!(n.applied.index > seal.index);
            n.note_applied_through(seal.index - 1, 100);
            n.applied.last_checkpoint = None;
            let cp = n.checkpoint_due(i64::MAX).unwrap();
            assert_eq!((cp.index, cp.offset), (seal.index - 1, 100));
        }
    }

    /// Every node notes a segment offset for what it applied (10 per index, as if each entry
    /// appended 10 records) and checkpoints it, as the partition does once its segments are
    /// synced.
    fn checkpoint_all(nodes: &mut BTreeMap<u64, PartitionRaft>) {
        for n in nodes.values_mut() {
            n.drive().unwrap();
            n.note_applied(n.applied.index as i64 * 10);
            n.applied.last_checkpoint = None;
            if let Some(cp) = n.checkpoint_due(i64::MAX) {
                cp.write(&n.dir()).unwrap();
                n.checkpoint_written(cp).unwrap();
            }
        }
    }

    #[test]
    fn a_follower_behind_the_first_index_installs_a_snapshot_and_keeps_up() {
        let dir = tempfile::tempdir().unwrap();
        let (out, reports, mut nodes) = group(dir.path());
        for n in nodes.values_mut() {
            n.store.set_file_bytes(4096);
        }
        run(&mut nodes, &out, 30);
        let leader = *nodes.iter().find(|(_, n)| n.is_leader()).unwrap().0;
        let behind = if leader == 3 { 2 } else { 3 };
        // One follower is down while the others commit, checkpoint and drop their first files.
        let down = nodes.remove(&behind).unwrap();
        for i in 0..100u8 {
            nodes
                .get_mut(&leader)
                .unwrap()
                .propose(&[i; 500], 0)
                .unwrap();
            run(&mut nodes, &out, 1);
        }
        checkpoint_all(&mut nodes);
        let first = nodes[&leader].node.store().first();
        assert!(first > 2, "the leader's log still starts at {first}");
        let cp = nodes[&leader].node.store().checkpoint().unwrap();
        out.lock().unwrap().retain(|m| m.to != behind);

        // Back: the leader sends it the checkpoint, which it takes once it has "copied" the
        // segments up to the checkpoint's offset.
        nodes.insert(behind, down);
        let mut snapshot = None;
        for _ in 0..60 {
            for n in nodes.values_mut() {
                n.tick();
                n.drive().unwrap();
            }
            let msgs: Vec<Message> = std::mem::take(&mut *out.lock().unwrap());
            for m in msgs {
                if let Some(n) = nodes.get_mut(&m.to) {
                    if let Some(s) = n.step(m) {
                        snapshot = Some(s);
                    }
                }
            }
            if snapshot.is_some() {
                break;
            }
        }
        let snapshot = snapshot.expect("the leader sends a snapshot");
        let meta = snapshot.get_snapshot().get_metadata();
        assert_eq!((meta.index, meta.term), (cp.index, cp.term));
        assert_eq!(
            snapshot::offset_of(snapshot.get_snapshot()),
            Some(cp.offset)
        );
        let f = nodes.get_mut(&behind).unwrap();
        assert!(f.step_copied(snapshot));
        f.drive().unwrap();
        assert_eq!(f.checkpoint_offset(), Some(cp.offset));
        assert_eq!(f.node.store().first(), cp.index + 1);
        assert_eq!(
            checkpoint::Checkpoint::read(&f.dir())
                .unwrap()
                .map(|c| c.index),
            Some(cp.index)
        );

        // It then follows by appends: new entries reach it and are applied there.
        let id = nodes
            .get_mut(&leader)
            .unwrap()
            .propose(b"after the snapshot", 0)
            .unwrap();
        let mut applied = Vec::new();
        for _ in 0..10 {
            for n in nodes.values_mut() {
                n.tick();
                let c = n.drive().unwrap();
                if n.id == behind {
                    applied.extend(c.into_iter().map(|c| c.proposal));
                }
            }
            deliver(&mut nodes, &out);
        }
        assert_eq!(applied, [id]);
        // And a restart starts from its checkpoint, not from index 1.
        drop(nodes.remove(&behind));
        let again = open(dir.path(), behind, &[1, 2, 3], &out, &reports);
        assert_eq!(again.checkpoint_offset(), Some(cp.offset));
        assert_eq!(again.applied.index, cp.index);
    }
}
