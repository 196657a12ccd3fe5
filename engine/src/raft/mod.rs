//! Per-partition Raft groups (raft-rs), driven by the partition actor.
//!
//! The Kafka batches are the Raft entries' payload: the leader proposes a produce's batches as
//! they arrived; once the group commits the entry, every replica (leader included) appends
//! them to its own segment log through the same code a single node uses, in commit order, so
//! offsets, leader epochs (the entry's term) and producer state come out identical everywhere.
//! The high watermark is what has been applied and flushed, which is always committed.
//!
//! The Raft log is kept in `<data>/raft/<topic>/<partition>/` (the same record file as the
//! controller's, [`crate::cluster::store`]) and never compacted yet; the segment log is a
//! function of it, so on start it is rebuilt from the Raft log.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use raft::eraftpb::{Entry, EntryType, Message};
use raft::storage::MemStorage;
use raft::{RawNode, StateRole, Storage as _};

use crate::cluster::store::{RaftStore, StoreError};

/// Sends a Raft message to a broker.
pub type SendFn = Arc<dyn Fn(u64, Message) + Send + Sync>;

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

/// A committed produce, ready to append.
pub struct Committed {
    pub proposal: Option<u64>,
    pub epoch: i32,
    pub now: i64,
    pub records: Bytes,
}

pub struct PartitionRaft {
    node: RawNode<MemStorage>,
    store: RaftStore,
    send: SendFn,
    leader: Arc<AtomicU64>,
    id: u64,
    next: u64,
    pub min_insync: usize,
    preferred: u64,
    ticks: u64,
    /// When each peer was last heard from (any message), for min.insync.replicas.
    heard: HashMap<u64, std::time::Instant>,
    view: SharedView,
    lag_max: std::time::Duration,
    /// While leading: when each follower last held the leader's whole log while being heard
    /// from (Kafka's lastCaughtUpTime).
    caught_up_at: HashMap<u64, std::time::Instant>,
    /// The leader's last index at its previous tick (none before its first as leader).
    last_at_prev_tick: Option<u64>,
}

/// Entry payload: proposer (u64), proposal id (u64), leader's time (i64), then the batches.
const HEADER: usize = 24;

impl PartitionRaft {
    pub fn open(setup: RaftSetup) -> Result<PartitionRaft, StoreError> {
        let (store, storage) = RaftStore::open(&setup.dir, &setup.voters)?;
        let config = raft::Config {
            id: setup.id,
            election_tick: 10,
            heartbeat_tick: 2,
            check_quorum: true,
            pre_vote: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let fresh = storage
            .initial_state()
            .is_ok_and(|s| s.hard_state.term == 0);
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
            next: 1,
            min_insync: setup.min_insync,
            preferred: setup.preferred,
            ticks: 0,
            heard: HashMap::new(),
            view: setup.isr,
            lag_max: setup.lag_max,
            caught_up_at: HashMap::new(),
            last_at_prev_tick: None,
        })
    }

    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    /// Voters heard from within an election timeout (this one included). raft-rs's own
    /// `recent_active` is cleared at every quorum check, which would refuse writes spuriously.
    pub fn active_voters(&self) -> usize {
        let me = self.id;
        let within = crate::cluster::controller::TICK * 10;
        self.node
            .raft
            .prs()
            .iter()
            .filter(|(id, _)| {
                **id == me || self.heard.get(id).is_some_and(|t| t.elapsed() < within)
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
        let now = std::time::Instant::now();
        let live_within = crate::cluster::controller::TICK * 10;
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
            let live = self
                .heard
                .get(&id)
                .is_some_and(|t| t.elapsed() < live_within);
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
        self.node.tick();
        self.ticks += 1;
        self.refresh_view();
        // Every few seconds a leader hands leadership back to the preferred replica once it
        // has caught up, so leaders stay balanced after failovers.
        if self.ticks.is_multiple_of(40) && self.is_leader() && self.preferred != self.id {
            let last = self.node.raft.raft_log.last_index();
            let caught_up = self
                .node
                .raft
                .prs()
                .get(self.preferred)
                .is_some_and(|p| p.matched == last);
            if caught_up {
                self.node.transfer_leader(self.preferred);
            }
        }
    }

    pub fn step(&mut self, m: Message) {
        self.heard.insert(m.from, std::time::Instant::now());
        if let Err(e) = self.node.step(m) {
            tracing::debug!(error = %e, "partition raft ignored a message");
        }
    }

    /// Proposes a produce's records; returns the proposal id, or `None` if not the leader.
    pub fn propose(&mut self, records: &[u8], now: i64) -> Option<u64> {
        if !self.is_leader() {
            return None;
        }
        let id = self.next;
        self.next += 1;
        let mut data = Vec::with_capacity(HEADER + records.len());
        data.extend_from_slice(&self.id.to_be_bytes());
        data.extend_from_slice(&id.to_be_bytes());
        data.extend_from_slice(&now.to_be_bytes());
        data.extend_from_slice(records);
        self.node.propose(vec![], data).ok().map(|()| id)
    }

    /// Runs one Ready: persists, sends, and returns the committed produces to append.
    pub fn drive(&mut self) -> Result<Vec<Committed>, StoreError> {
        let send = &self.send;
        let committed =
            crate::cluster::store::run_ready(&mut self.node, &mut self.store, |msgs| {
                for m in msgs {
                    send(m.to, m);
                }
            })?;
        let mut out = Vec::new();
        self.collect(committed, &mut out);
        let leader = self.node.raft.leader_id & 0xffff_ffff;
        self.leader
            .store((self.node.raft.term << 32) | leader, Ordering::Relaxed);
        Ok(out)
    }

    fn collect(&self, entries: Vec<Entry>, out: &mut Vec<Committed>) {
        for e in entries {
            if e.get_entry_type() != EntryType::EntryNormal || e.data.len() < HEADER {
                continue;
            }
            let d = &e.data;
            let word = |i: usize| u64::from_be_bytes(d[i..i + 8].try_into().expect("8 bytes"));
            let proposer = word(0);
            out.push(Committed {
                proposal: (proposer == self.id).then(|| word(8)),
                epoch: e.term.min(i32::MAX as u64) as i32,
                now: word(16) as i64,
                records: Bytes::copy_from_slice(&d[HEADER..]),
            });
        }
    }
}

/// Proposals waiting for their entry to be applied.
pub type Pending<T> = HashMap<u64, T>;
