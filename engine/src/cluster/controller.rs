//! The controller Raft group: cluster metadata (topics and their partition assignments) as a
//! replicated log, applied on every broker so that any broker answers Metadata.
//!
//! raft-rs does no I/O: this task ticks it, persists what it asks ([`super::store`]), sends its
//! messages over the RPC listener and applies committed commands to the broker's topic table.
//! Proposals are made on the leader only; other brokers forward them ([`super::Cluster::propose`]).
//!
//! Committed commands change the metadata ([`MetadataState::apply`], the same on every
//! broker); the reconciler then brings this broker's topics and replicas in line
//! ([`reconcile_topic`] after each command, [`reconcile`] in full after a start, a snapshot,
//! and every few seconds, so that a step that failed, a disk error creating a topic's files,
//! is retried). Every `--controller-snapshot-entries` applied entries the task writes a
//! checkpoint holding the metadata and the log files wholly before it go; a replica behind the
//! leader's first index (down for a while, or a broker joining later) is sent that checkpoint
//! as a snapshot.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{Entry, EntryType, Message};
use raft::{RawNode, StateRole};
use tokio::sync::{mpsc, oneshot};

use super::host::{Peers, Reconciler};
use super::metadata_state::{Changed, MetadataState};
use super::{ApplyError, Command, Proposal};
use crate::metrics::Metrics;
use crate::raft::checkpoint::Checkpoint;
use crate::raft::log_file::{self, RaftStore, StoreError};
use crate::raft::storage::DiskStorage;

pub use crate::raft::TICK;

pub enum Input {
    Raft(Box<Message>),
    Propose(Box<Command>, oneshot::Sender<ProposeOutcome>),
    /// Controlled shutdown: never lead again, and hand leadership to another voter if
    /// leading; answers whether this broker still leads.
    HandOff(oneshot::Sender<bool>),
    /// The metadata as of the last entry applied, with that entry's index (a backup).
    Export(oneshot::Sender<(u64, MetadataState)>),
}

#[derive(Debug)]
pub enum ProposeOutcome {
    Applied(Result<(), ApplyError>),
    /// Not the leader; the leader's id if known (0 otherwise).
    NotLeader(u64),
}

/// The brokers in the controller group (voters and learners), and its voters.
type Brokers = Arc<parking_lot::RwLock<(BTreeSet<i32>, BTreeSet<i32>)>>;

/// What the rest of the broker reads of the state: finalized features, producer id blocks.
#[derive(Debug, Default)]
struct View {
    features: super::features::Levels,
    /// The entry that last changed `features` (-1: none finalized).
    features_epoch: i64,
    broker_configs: crate::dynamic_config::DynamicConfigs,
    /// Users, ACLs and quotas: what a proposer checks its change against.
    security: Arc<crate::security::state::SecurityState>,
    producer_ids: std::collections::BTreeMap<i32, super::producer_ids::Block>,
}

#[derive(Clone)]
pub struct ControllerHandle {
    pub tx: mpsc::UnboundedSender<Input>,
    /// Ends the controller at its next await, as a crash does (a simulation's crashes).
    pub task: tokio::task::AbortHandle,
    leader: Arc<AtomicU64>,
    brokers: Brokers,
    view: Arc<parking_lot::RwLock<View>>,
}

impl ControllerHandle {
    /// The controller leader's node id, 0 while there is none.
    pub fn leader(&self) -> u64 {
        self.leader.load(Ordering::Relaxed)
    }

    /// The controller group's voters and learners, as of the last entry applied.
    pub fn brokers(&self) -> BTreeSet<i32> {
        self.brokers.read().0.clone()
    }

    /// The controller group's voters, as of the last entry applied.
    pub fn voters(&self) -> BTreeSet<i32> {
        self.brokers.read().1.clone()
    }

    /// The finalized level of feature `name` (0: not finalized).
    pub fn feature(&self, name: &str) -> i16 {
        self.view.read().features.get(name).copied().unwrap_or(0)
    }

    /// Every finalized feature level.
    pub fn features(&self) -> super::features::Levels {
        self.view.read().features.clone()
    }

    /// The finalized levels with their epoch, as ApiVersions reports them (-1: none yet).
    pub fn features_with_epoch(&self) -> (i64, super::features::Levels) {
        let v = self.view.read();
        if v.features.is_empty() {
            return (-1, Default::default());
        }
        (v.features_epoch, v.features.clone())
    }

    /// The dynamic broker configs, as of the last entry applied.
    pub fn broker_configs(&self) -> crate::dynamic_config::DynamicConfigs {
        self.view.read().broker_configs.clone()
    }

    /// Users, ACLs and quotas, as of the last entry applied.
    pub fn security(&self) -> Arc<crate::security::state::SecurityState> {
        self.view.read().security.clone()
    }

    /// Broker `node`'s latest block of producer ids.
    pub fn producer_block(&self, node: i32) -> Option<super::producer_ids::Block> {
        self.view.read().producer_ids.get(&node).copied()
    }
}

struct Controller {
    node: RawNode<DiskStorage>,
    store: RaftStore,
    topics: Arc<crate::topics::TopicTable>,
    metrics: Arc<Metrics>,
    peers: Arc<dyn Peers>,
    reconciler: Arc<dyn Reconciler>,
    pending: HashMap<String, oneshot::Sender<ProposeOutcome>>,
    leader: Arc<AtomicU64>,
    brokers: Brokers,
    view: Arc<parking_lot::RwLock<View>>,
    /// Set once [`super::features::ASSIGNED_ENTRIES`] is finalized; partition leaders read it.
    assigned_entries: Arc<std::sync::atomic::AtomicBool>,
    ticks: u64,
    /// When each peer was last heard from: who may be promoted or handed the leadership.
    heard: crate::raft::heard::Heard,
    /// Entries applied between two checkpoints.
    snapshot_entries: u64,
    /// The metadata as of the last entry applied.
    state: MetadataState,
    /// The last entry the topic table may reflect at start: the commit index then, or the
    /// table's own record if later (a controller directory lost or replaced). Nothing is
    /// reconciled before the state has reached it: a topic it does not have yet would be
    /// deleted.
    reconcile_from: u64,
    /// Whether a full reconcile succeeded since the start (from then on each entry acted on
    /// is noted in the table as the index it reflects).
    caught_up: bool,
    /// A full reconcile is due: at start, after a failed step, and every few seconds.
    full_due: bool,
    /// The broker is shutting down: this replica no longer campaigns.
    leaving: bool,
    /// Voters the group keeps while enough brokers are live and in it.
    quorum_size: usize,
    elections: Option<crate::raft::election::SeededElections>,
}

/// A full reconcile this often (in ticks), to retry what failed.
const RECONCILE_TICKS: u64 = 100;

/// The controller's log files are this size at most: its entries are small and few, and the
/// files before a checkpoint can go only whole.
const FILE_BYTES: u64 = 1 << 20;

/// Why the controller stops: it cannot go on safely without its log.
#[derive(Debug, thiserror::Error)]
enum Stop {
    #[error("controller log write failed: {0}")]
    Log(#[from] StoreError),
}

/// What a controller runs with.
pub struct Env {
    /// Its log and checkpoints (`<data>/controller`).
    pub dir: std::path::PathBuf,
    /// Log files end past this size (at most [`FILE_BYTES`]).
    pub file_bytes: u64,
    /// A checkpoint of the metadata every this many entries applied.
    pub snapshot_entries: u64,
    /// The broker's topic table: which controller index it reflects.
    pub topics: Arc<crate::topics::TopicTable>,
    pub metrics: Arc<Metrics>,
    pub peers: Arc<dyn Peers>,
    pub reconciler: Arc<dyn Reconciler>,
    /// `--controller-quorum-size`: voters the group keeps (learners promoted up to it).
    pub quorum_size: usize,
    /// Set once partition leaders may propose assigned entries (a finalized feature).
    pub assigned_entries: Arc<std::sync::atomic::AtomicBool>,
    /// Seeds the election timeouts (a simulation's, `raft::election`); `None` in production.
    pub election_seed: Option<u64>,
}

/// Opens the controller's log under `env.dir` and starts its task.
pub fn start(env: Env, id: u64, voters: &[u64]) -> Result<ControllerHandle, super::ClusterError> {
    let Env {
        dir,
        file_bytes,
        snapshot_entries,
        topics,
        metrics,
        peers,
        reconciler,
        quorum_size,
        assigned_entries,
        election_seed,
    } = env;
    let (mut store, storage) = RaftStore::open(&dir, voters, None)?;
    store.set_file_bytes(file_bytes.min(FILE_BYTES));
    let snapshot_entries = snapshot_entries.max(1);
    let mut config = log_file::raft_config(id);
    // The metadata starts from the checkpoint's; the entries after it are applied again.
    config.applied = storage.checkpoint_index();
    let state = match storage.checkpoint().filter(|c| !c.state.is_empty()) {
        Some(cp) => MetadataState::decode(&cp.state).map_err(|e| {
            StoreError::Corrupt(dir.join(crate::raft::checkpoint::FILE), e.to_string())
        })?,
        None => MetadataState::default(),
    };
    // Only ever grows: the checkpoint's is a lower bound until the log is applied.
    peers.set_draining(state.draining.clone());
    let logger = log_file::discard_logger();
    let elections =
        election_seed.map(|seed| crate::raft::election::SeededElections::new(seed, &mut config));
    let node = RawNode::new(&config, storage, &logger)?;
    let reconcile_from = node.raft.raft_log.committed.max(topics.controller_index());
    let (tx, rx) = mpsc::unbounded_channel();
    let leader = Arc::new(AtomicU64::new(0));
    let brokers = Brokers::default();
    let view = Arc::new(parking_lot::RwLock::new(View::default()));
    let c = Controller {
        node,
        store,
        topics,
        metrics,
        peers,
        reconciler,
        pending: HashMap::new(),
        leader: leader.clone(),
        brokers: brokers.clone(),
        view: view.clone(),
        assigned_entries,
        ticks: 0,
        heard: Default::default(),
        snapshot_entries,
        state,
        reconcile_from,
        caught_up: false,
        full_due: true,
        leaving: false,
        quorum_size: quorum_size.max(1),
        elections,
    };
    c.publish_brokers();
    c.publish_view();
    let task = tokio::spawn(c.run(rx)).abort_handle();
    Ok(ControllerHandle {
        task,
        tx,
        leader,
        brokers,
        view,
    })
}

impl Controller {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Biased: the same branch order on every run (see the partition actor's loop).
            tokio::select! {
                biased;
                _ = tick.tick() => {
                    let seeded = match &mut self.elections {
                        Some(e) => e.tick(&self.node.raft),
                        None => true,
                    };
                    if seeded && !(self.leaving && self.node.raft.state != StateRole::Leader) {
                        self.node.tick();
                    }
                    self.ticks += 1;
                    if self.ticks.is_multiple_of(20) && self.node.raft.state == StateRole::Leader {
                        self.maintain_group();
                        self.maintain_features();
                        self.peers.drain();
                    }
                    if self.ticks.is_multiple_of(RECONCILE_TICKS) {
                        self.full_due = true;
                    }
                }
                input = rx.recv() => match input {
                    None => return,
                    Some(Input::Raft(m)) => {
                        let checked = crate::raft::guard::check(&self.node.raft, &m, crate::raft::guard::Peers::Tracker)
                            .map_err(|e| (e.reason(), e.to_string()))
                            .and_then(|()| snapshot_state(&m).map_err(|e| ("raft_snapshot", e.to_string())));
                        if checked.is_ok() {
                            self.heard.note(m.from);
                        }
                        let handed_back = self.leaving
                            && m.get_msg_type() == raft::eraftpb::MessageType::MsgTimeoutNow;
                        if handed_back {
                            // Refused by not campaigning: the transfer times out.
                        } else if let Err((reason, e)) = checked {
                            crate::raft::rejects::note(
                                &self.metrics.rpc_rejected,
                                reason,
                                format_args!("controller raft group: {e}"),
                            );
                        } else if let Err(e) = self.node.step(*m) {
                            tracing::debug!(error = %e, "controller ignored a raft message");
                        }
                    }
                    Some(Input::Propose(cmd, reply)) => self.propose(*cmd, reply),
                    Some(Input::HandOff(reply)) => {
                        let _ = reply.send(self.hand_off());
                    }
                    Some(Input::Export(reply)) => {
                        let _ = reply.send((self.node.raft.raft_log.applied, self.state.clone()));
                    }
                }
            }
            if let Err(e) = self.on_ready().await {
                // Without its log the controller cannot go on safely; stop voting and leading.
                tracing::error!(error = %e, "the controller stops");
                return;
            }
            let leader = self.node.raft.leader_id;
            if self.leader.swap(leader, Ordering::Relaxed) != leader {
                tracing::info!(
                    leader,
                    term = self.node.raft.term,
                    "controller leader changed"
                );
            }
        }
    }

    /// The controller group's voters and learners, as the log has them at the last applied
    /// entry: the same set on every broker at the same index.
    fn group(&self) -> BTreeSet<i32> {
        self.node
            .raft
            .prs()
            .iter()
            .filter_map(|(&id, _)| i32::try_from(id).ok())
            .collect()
    }

    fn publish_brokers(&self) {
        let voters = self
            .node
            .raft
            .prs()
            .conf()
            .voters()
            .ids()
            .iter()
            .filter_map(|id| i32::try_from(id).ok())
            .collect();
        *self.brokers.write() = (self.group(), voters);
    }

    fn publish_view(&self) {
        let mut v = self.view.write();
        if v.features != self.state.features {
            v.features = self.state.features.clone();
            v.features_epoch = self.node.raft.raft_log.applied as i64;
            if v.features.get(super::features::ASSIGNED_ENTRIES) >= Some(&1) {
                self.assigned_entries.store(true, Ordering::Relaxed);
            }
        }
        if v.broker_configs != self.state.broker_configs {
            v.broker_configs = self.state.broker_configs.clone();
        }
        if *v.security != self.state.security {
            v.security = Arc::new(self.state.security.clone());
        }
        if v.producer_ids != self.state.producer_ids {
            v.producer_ids = self.state.producer_ids.clone();
        }
    }

    fn propose(&mut self, cmd: Command, reply: oneshot::Sender<ProposeOutcome>) {
        if self.node.raft.state != StateRole::Leader {
            let _ = reply.send(ProposeOutcome::NotLeader(self.node.raft.leader_id));
            return;
        }
        // Refused before it enters the log (applying refuses it again anyway).
        if let Err(e) = super::validate::command(&cmd, &self.group()) {
            tracing::warn!(error = %e, "controller proposal refused");
            let _ = reply.send(ProposeOutcome::Applied(Err(e)));
            return;
        }
        let p = Proposal {
            id: uuid::Uuid::new_v4().to_string(),
            cmd,
        };
        let data = match serde_json::to_vec(&p) {
            Ok(d) => d,
            Err(e) => {
                let _ = reply.send(ProposeOutcome::Applied(Err(ApplyError::Other(
                    e.to_string(),
                ))));
                return;
            }
        };
        match self.node.propose(vec![], data) {
            Ok(()) => {
                self.pending.insert(p.id, reply);
            }
            Err(_) => {
                let _ = reply.send(ProposeOutcome::NotLeader(self.node.raft.leader_id));
            }
        }
    }

    async fn on_ready(&mut self) -> Result<(), Stop> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let ready = self.node.ready();
        if !ready.snapshot().is_empty() {
            // The topic table reaches the snapshot before the checkpoint that records it is
            // written (`run_synced`): a crash in between restarts from the old checkpoint under
            // a newer table, which the start leaves alone until the log is applied, and the
            // leader sends the snapshot again.
            let state = MetadataState::decode(crate::raft::snapshot::state_of(ready.snapshot()))
                .map_err(|e| StoreError::Corrupt(self.store.dir().to_path_buf(), e.to_string()))?;
            tracing::info!(
                index = ready.snapshot().get_metadata().index,
                topics = state.topics.len(),
                "installing the controller leader's metadata snapshot"
            );
            let index = ready.snapshot().get_metadata().index;
            // A snapshot older than what the table reflects (its controller log was lost)
            // waits for the entries after it.
            self.state = state;
            if index >= self.reconcile_from {
                self.reconcile_all(index).await;
            }
            self.metrics.controller_snapshots_installed.inc();
        }
        let mut out = Vec::new();
        let committed = log_file::run_synced(
            &mut self.node,
            &mut self.store,
            ready,
            &mut log_file::NoSegments,
            &mut |m| out.extend(m),
        )?;
        self.send(out);
        self.publish_brokers();
        self.apply(committed).await;
        self.publish_view();
        let applied = self.node.raft.raft_log.applied;
        if self.full_due && applied >= self.reconcile_from {
            self.reconcile_all(applied).await;
        }
        self.checkpoint()?;
        Ok(())
    }

    /// Writes a checkpoint of the metadata once enough entries were applied since the last,
    /// or when the leader needs a newer one to send, then drops the log files before it.
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        let applied = self.node.raft.raft_log.applied;
        let storage = self.node.store();
        let since = applied.saturating_sub(storage.checkpoint_index());
        if since == 0 || (since < self.snapshot_entries && !storage.take_snapshot_wanted()) {
            return Ok(());
        }
        let dir = self.store.dir().to_path_buf();
        let term = self
            .node
            .raft
            .raft_log
            .term(applied)
            .map_err(|e| StoreError::Corrupt(dir.clone(), e.to_string()))?;
        let cp = Checkpoint {
            index: applied,
            term,
            conf: self.node.raft.prs().conf().to_conf_state(),
            offset: 0,
            first_file: storage.checkpoint().map_or(0, |c| c.first_file),
            state: self.state.encode(),
        };
        // Through the log's one checkpoint writer, as the partitions' and snapshot installs'.
        if !self.store.checkpoints().write(&cp)? {
            return Ok(());
        }
        self.store.compact(self.node.store(), cp)
    }

    async fn apply(&mut self, entries: Vec<Entry>) {
        for e in entries {
            if e.get_entry_type() == EntryType::EntryConfChangeV2 {
                let mut cc = raft::eraftpb::ConfChangeV2::default();
                match cc.merge_from_bytes(&e.data) {
                    Ok(()) => match self.node.apply_conf_change(&cc) {
                        Ok(cs) => {
                            self.publish_brokers();
                            tracing::info!(voters = ?cs.voters, learners = ?cs.learners, "controller configuration changed")
                        }
                        Err(err) => {
                            tracing::warn!(index = e.index, error = %err, "controller conf change refused")
                        }
                    },
                    Err(err) => {
                        tracing::error!(index = e.index, error = %err, "undecodable controller conf change skipped")
                    }
                }
                continue;
            }
            if e.get_entry_type() != EntryType::EntryNormal || e.data.is_empty() {
                continue;
            }
            let p: Proposal = match serde_json::from_slice(&e.data) {
                Ok(p) => p,
                Err(err) => {
                    tracing::error!(index = e.index, error = %err, "undecodable controller entry skipped");
                    continue;
                }
            };
            let group = self.group();
            let res = match self.state.apply(p.cmd, e.index, &group) {
                Ok(changed) => self.act(e.index, changed).await,
                Err(e) => Err(e),
            };
            match &res {
                Err(err @ ApplyError::Invalid(_)) => crate::raft::rejects::note(
                    &self.metrics.rpc_rejected,
                    "apply_invalid",
                    format_args!("controller entry {} not applied: {err}", e.index),
                ),
                Err(err) => {
                    tracing::debug!(index = e.index, error = %err, "controller command refused")
                }
                Ok(()) => {}
            }
            if let Some(reply) = self.pending.remove(&p.id) {
                let _ = reply.send(ProposeOutcome::Applied(res));
            }
        }
    }

    /// Brings the whole topic table to the state (at `index`); what fails is retried by the
    /// next one, a few seconds later.
    async fn reconcile_all(&mut self, index: u64) {
        self.full_due = false;
        let res = self.reconciler.reconcile_all(&self.state).await;
        self.peers.set_draining(self.state.draining.clone());
        match res {
            Ok(()) => {
                self.caught_up = true;
                self.topics.note_controller_index(index);
            }
            Err(e) => tracing::warn!(error = %e, "reconciling the topic table failed; will retry"),
        }
    }

    /// Brings this broker in line with what the command at `index` changed, if it is later than
    /// what the topic table may already reflect at start (the full reconcile covers those).
    async fn act(&mut self, index: u64, changed: Changed) -> Result<(), ApplyError> {
        if index <= self.reconcile_from {
            return Ok(());
        }
        // Noted first, so that the table's write for this change carries it.
        if self.caught_up {
            self.topics.note_controller_index(index);
        }
        let res = match changed {
            Changed::Draining => {
                self.peers.set_draining(self.state.draining.clone());
                Ok(())
            }
            Changed::Controller => Ok(()),
            Changed::Security => self.reconciler.security(&self.state.security).await,
            Changed::BrokerConfigs => {
                self.reconciler
                    .broker_configs(&self.state.broker_configs)
                    .await
            }
            Changed::Topic(name) => self.reconciler.reconcile_topic(&name, &self.state).await,
        };
        res.map_err(|e| {
            // Retried by the next full reconcile.
            self.full_due = true;
            ApplyError::Other(e.to_string())
        })
    }

    /// See [`Input::HandOff`].
    fn hand_off(&mut self) -> bool {
        self.leaving = true;
        self.transfer_away()
    }

    /// When leading, transfers leadership to the voter furthest along among those heard from
    /// lately; whether this replica still leads.
    fn transfer_away(&mut self) -> bool {
        let raft = &self.node.raft;
        if raft.state != StateRole::Leader {
            return false;
        }
        let target = crate::raft::handover_target(raft, &self.heard, None);
        match target {
            Some(t) if raft.lead_transferee != Some(t) => {
                tracing::info!(to = t, "transferring the controller leadership");
                self.node.transfer_leader(t);
                true
            }
            Some(_) => true,
            // Nobody to hand over to: this broker leads until it exits.
            None => false,
        }
    }

    /// Keeps the controller group in line with the brokers, one conf change at a time:
    /// 1. every live broker gossip knows joins as a learner (joining brokers start from the
    ///    founders' voters with an empty log; the leader replicates its log to them, after the
    ///    metadata snapshot when its first entries are gone);
    /// 2. decommissioned brokers (draining, no replica left) leave;
    /// 3. while fewer than `quorum_size` voters stay, a live learner that has caught up is
    ///    promoted, so brokers that join later replace a decommissioned voter (and a cluster
    ///    founded on fewer seeds grows its quorum);
    /// 4. a decommissioned voter leaves once replaced, or at once when no learner can replace
    ///    it (a leader leaving hands its leadership over first).
    fn maintain_group(&mut self) {
        use raft::eraftpb::ConfChangeType::{AddLearnerNode, AddNode, RemoveNode};
        let raft = &self.node.raft;
        if raft.pending_conf_index > raft.raft_log.applied {
            return;
        }
        let prs = raft.prs();
        let voters: Vec<u64> = prs.conf().voters().ids().iter().collect();
        let learners: Vec<u64> = prs.conf().learners().iter().copied().collect();
        let alive: Vec<u64> = self.peers.alive().into_iter().map(|id| id as u64).collect();
        let gone = |id: u64| self.state.decommissioned(id as i32);
        let change = |what: &str, id: u64, kind| {
            tracing::info!(node = id, "controller group: {what}");
            (id, kind)
        };
        let next = if let Some(&id) = alive.iter().find(|&&id| prs.get(id).is_none() && !gone(id)) {
            Some(change("adding a broker as a learner", id, AddLearnerNode))
        } else if let Some(&id) = learners.iter().find(|&&id| gone(id)) {
            Some(change("removing a decommissioned learner", id, RemoveNode))
        } else {
            let staying = voters.iter().filter(|&&id| !gone(id)).count();
            let promotable = learners.iter().copied().find(|&id| {
                alive.contains(&id)
                    && !self.state.draining.contains(&(id as i32))
                    && prs
                        .get(id)
                        .is_some_and(|p| p.matched >= raft.raft_log.committed)
                    && self.heard.lately(id)
            });
            let leaving = voters.iter().copied().find(|&id| gone(id));
            match (promotable, leaving) {
                (Some(id), _) if staying < self.quorum_size => {
                    Some(change("promoting a learner to voter", id, AddNode))
                }
                (_, Some(id)) if staying >= 1 && id == raft.id => {
                    // Decommissioned itself: another voter leads the removal.
                    self.transfer_away();
                    None
                }
                (_, Some(id)) if staying >= 1 => {
                    Some(change("removing a decommissioned voter", id, RemoveNode))
                }
                _ => None,
            }
        };
        if let Some((id, kind)) = next {
            let cc = crate::raft::conf_change(&[(id, kind)]);
            if let Err(e) = self.node.propose_conf_change(vec![], cc) {
                tracing::debug!(error = %e, "controller group change failed");
            }
        }
    }

    /// Finalizes the feature levels every broker supports: every broker gossip knows of (live
    /// or not) and every member of the controller group, decommissioned ones aside. A broker
    /// gossip has not heard from supports nothing yet.
    fn maintain_features(&mut self) {
        let known = self.peers.features();
        let mut ids: BTreeSet<i32> = known.keys().copied().collect();
        ids.extend(self.group());
        let none = super::features::Levels::new();
        let levels = super::features::to_finalize(
            &self.state.features,
            ids.iter()
                .filter(|&&id| !self.state.decommissioned(id))
                .map(|id| known.get(id).unwrap_or(&none)),
        );
        if levels.is_empty() {
            return;
        }
        tracing::info!(
            ?levels,
            "finalizing the feature levels every broker supports"
        );
        let p = Proposal {
            id: uuid::Uuid::new_v4().to_string(),
            cmd: Command::FinalizeFeatures { levels },
        };
        let proposed = serde_json::to_vec(&p)
            .map_err(|e| e.to_string())
            .and_then(|data| self.node.propose(vec![], data).map_err(|e| e.to_string()));
        if let Err(e) = proposed {
            tracing::debug!(error = %e, "finalizing feature levels failed");
        }
    }

    fn send(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            self.peers.send_controller(m.to, &m);
            // A controller snapshot travels whole in this one message. Reported as handed
            // over, raft-rs probes the follower again (and sends another if it was lost);
            // unreported, it waited for a report that never came, and a follower whose
            // snapshot was lost never caught up (found by the simulation, docs/simulation.md).
            if m.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot {
                self.node
                    .report_snapshot(m.to, raft::SnapshotStatus::Finish);
            }
        }
    }
}

/// A snapshot's metadata must decode before raft-rs takes it: once taken it must be installed.
fn snapshot_state(m: &Message) -> Result<(), super::metadata_state::StateError> {
    if m.get_msg_type() != raft::eraftpb::MessageType::MsgSnapshot {
        return Ok(());
    }
    MetadataState::decode(crate::raft::snapshot::state_of(m.get_snapshot())).map(|_| ())
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
