//! A multi-broker cluster: membership over the internal RPC listener and the controller Raft
//! group that holds cluster metadata. A broker started without seeds has no `Cluster` and runs
//! exactly as a single node.
//!
//! Start-up: the RPC listener is bound with the broker; gossip ([`membership`]) learns every
//! seed's node id; once all seeds have answered (or the controller log already exists) the
//! controller ([`controller`]) starts with the seeds as its voters. The founding brokers must
//! be given the same seed list (all their RPC addresses), as KRaft's `controller.quorum.voters`.
//! A broker whose own RPC address is not among its seeds joins later: its controller replica
//! starts as a Raft learner and the controller leader adds it once gossip shows it.

pub mod controller;
pub mod features;
pub mod host;
pub mod kafka_rpc;
mod listener;
pub mod membership;
pub mod metadata_state;
mod peers;
pub mod placement;
pub mod producer_ids;
mod propose;
pub mod reassign;
pub mod recover;
pub mod rpc;
pub mod rpc_auth;
pub mod rpc_tls;
pub mod send_queue;
mod snapshot_rpc;
pub mod unmount;

pub mod validate;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::topics::{TopicRecord, TopicTable};
use controller::{ControllerHandle, Input};
use membership::{Hello, IsrView, Member, Members};
use rpc::Kind;

/// A broker not heard from for this long leaves Metadata (KRaft's
/// `broker.session.timeout.ms`); longer than [`membership::ALIVE_FOR`], so that a busy
/// broker's late gossip does not make clients drop it.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(9);

/// How long after its start a broker holds back the broker list for its first answers from the
/// other seeds ([`Cluster::await_peers`]): hellos go out at once and twice a second after.
pub const PEER_WAIT: Duration = Duration::from_secs(2);

/// Node ids in a cluster are `1..MAX_NODE_ID`.
pub const MAX_NODE_ID: i64 = 1 << 16;

/// How this broker joins a cluster (`--node-id`, `--rpc-addr`, `--seeds`).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub node_id: i32,
    /// Where the RPC listener binds.
    pub rpc_addr: SocketAddr,
    /// `host:port` other brokers use to reach it (defaults to the listener's address).
    pub advertised_rpc_addr: Option<String>,
    /// The founding brokers' RPC `host:port`s. A founder is one of them (a controller
    /// voter); a broker whose own address is not among them joins as a controller learner.
    pub seeds: Vec<String>,
    /// `--rack` (Kafka's `broker.rack`), gossiped in [`Member`].
    pub rack: Option<String>,
    /// `--replica-selector rack-aware`: a partition leader sends consumers that give a rack to a
    /// caught-up replica in that rack (KIP-392).
    pub follower_fetch: bool,
    /// `--replica-lag-time-max-ms`: how long a follower may lag before leaving the ISR.
    pub replica_lag_max: Duration,
    /// `--raft-batch-heartbeats`: partition Raft heartbeats to one peer leave as one frame.
    pub batch_heartbeats: bool,
    /// `--raft-log-file-bytes`: when a partition replica's Raft log starts a new file.
    pub raft_log_file_bytes: u64,
    /// `--controller-snapshot-entries`: controller entries applied between its checkpoints.
    pub controller_snapshot_entries: u64,
    /// `--controller-quorum-size`: controller voters kept (brokers that join later are
    /// promoted up to it, and replace decommissioned voters).
    pub controller_quorum_size: usize,
    /// `--recover-controller`: re-form the controller group with this broker as its only voter
    /// before starting it (quorum lost for good; see [`recover`]).
    pub recover_controller: bool,
    /// `--restore-metadata`: with `recover_controller`, the metadata comes from this backup
    /// file rather than from this broker's controller log.
    pub restore_metadata: Option<std::path::PathBuf>,
    /// `--controlled-shutdown-timeout-ms`: how long a broker stopping (SIGTERM) waits for the
    /// leaderships it hands over.
    pub controlled_shutdown_timeout: Duration,
    /// Connections the RPC listener accepts, in total and per client IP.
    pub rpc_connections: crate::limits::connections::ConnLimits,
    /// How many frames (and bytes) wait for one peer before the oldest are dropped.
    pub send_queue: send_queue::QueueLimits,
    /// `--cluster-secret-file`: brokers authenticate each other with it and MAC every frame
    /// ([`rpc_auth`]); `None`: the RPC is not authenticated.
    pub secret: Option<rpc_auth::ClusterSecret>,
    /// `--rpc-tls`: every RPC connection is mutual TLS ([`rpc::Stream`]); `None`: plaintext.
    pub tls: Option<rpc::RpcTls>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot listen for brokers on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("--node-id must be between 1 and 65535 in a cluster, got {0}")]
    NodeId(i32),
    #[error(transparent)]
    Store(#[from] crate::raft::log_file::StoreError),
    #[error("controller: {0}")]
    Raft(#[from] raft::Error),
}

/// A change to cluster metadata, as the controller log holds it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Command {
    CreateTopic(TopicRecord),
    DeleteTopic {
        name: String,
        id: uuid::Uuid,
    },
    /// Starts (`target` given) or cancels (`None`) moving a partition to other replicas.
    Reassign {
        topic: String,
        id: uuid::Uuid,
        partition: i32,
        target: Option<Vec<i32>>,
    },
    /// The partition's leader reports its Raft group's configuration equals the target.
    Reassigned {
        topic: String,
        id: uuid::Uuid,
        partition: i32,
        replicas: Vec<i32>,
    },
    /// Moves every replica off a broker and stops placing new ones on it.
    Decommission {
        node: i32,
    },
    /// Replaces a topic's config overrides (AlterConfigs, IncrementalAlterConfigs).
    SetTopicConfig {
        name: String,
        id: uuid::Uuid,
        config: crate::config::TopicConfig,
    },
    /// Grows a topic from `from` partitions, the new ones on these replicas (CreatePartitions).
    AddPartitions {
        name: String,
        id: uuid::Uuid,
        from: i32,
        assignments: Vec<Vec<i32>>,
    },
    /// Finalizes the feature levels every broker supports ([`features`]); a level never goes
    /// down. Proposed by the controller leader only.
    FinalizeFeatures {
        levels: features::Levels,
    },
    /// Hands broker `broker` the next block of producer ids (KIP-730). `request` is new at
    /// each request, so the broker tells its block from an earlier one.
    AllocateProducerIds {
        broker: i32,
        request: u64,
    },
    /// Replaces the dynamic broker configs of one broker (`broker`) or of every one (`None`).
    SetBrokerConfig {
        broker: Option<i32>,
        config: crate::dynamic_config::Overrides,
    },
    /// Starts unmounting a topic ([`unmount`]): from now on no broker serves it.
    Unmount {
        name: String,
        id: uuid::Uuid,
        started_ms: i64,
    },
    /// A partition's leader sealed it: its log is `[start, end)`.
    UnmountSealed {
        name: String,
        id: uuid::Uuid,
        partition: i32,
        start: i64,
        end: i64,
    },
    /// The coordinator of these `__consumer_offsets` partitions reports the topic's committed
    /// offsets in their groups.
    UnmountOffsets {
        name: String,
        id: uuid::Uuid,
        from: Vec<i32>,
        offsets: Vec<crate::topic_jobs::GroupOffset>,
    },
    /// The topic manifest is written: every broker forgets the topic (its remote data stays).
    UnmountDone {
        name: String,
        id: uuid::Uuid,
    },
    /// Mounts a topic: a record with its offsets and the group offsets to restore.
    Mount(TopicRecord),
    /// The coordinator of these `__consumer_offsets` partitions restored their groups' offsets.
    MountRestored {
        name: String,
        id: uuid::Uuid,
        from: Vec<i32>,
    },
    /// The mount is complete (its manifest deleted).
    MountDone {
        name: String,
        id: uuid::Uuid,
    },
    /// Changes users, ACLs or quotas (`crate::security`).
    Security(crate::security::state::SecurityChange),
}

impl Command {
    /// The topic (name and id) and partition a `Reassign` or `Reassigned` is about.
    pub fn reassignment(&self) -> Option<(&str, uuid::Uuid, i32)> {
        match self {
            Command::Reassign {
                topic,
                id,
                partition,
                ..
            }
            | Command::Reassigned {
                topic,
                id,
                partition,
                ..
            } => Some((topic.as_str(), *id, *partition)),
            _ => None,
        }
    }
}

/// A controller log entry: a command and the id its proposer waits on.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Proposal {
    pub id: String,
    pub cmd: Command,
}

/// Why a committed command was refused (the same on every broker).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, thiserror::Error)]
pub enum ApplyError {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    /// The command breaks a rule of [`validate`]: never applied, on any broker.
    #[error("invalid command refused: {0}")]
    Invalid(String),
    #[error("{0}")]
    Other(String),
}

/// The answer to a forwarded proposal.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum ProposeReply {
    Applied(Result<(), ApplyError>),
    NotLeader(u64),
}

pub struct Cluster {
    pub config: ClusterConfig,
    pub members: Members,
    cluster_id: String,
    controller: OnceLock<ControllerHandle>,
    listener: parking_lot::Mutex<Option<tokio::net::TcpListener>>,
    /// One writer task per peer broker, carrying every Raft message to it in order.
    peers: parking_lot::Mutex<std::collections::HashMap<i32, Arc<send_queue::SendQueue>>>,
    /// Frames dropped from full per-peer send queues.
    pub frames_dropped: prometheus_client::metrics::counter::Counter,
    /// Set by the controller once `features::ASSIGNED_ENTRIES` is finalized: partition leaders
    /// then propose produces with their offsets assigned.
    pub assigned_entries: Arc<std::sync::atomic::AtomicBool>,
    /// The runtime peer writers run on (partition actors call from shard threads).
    runtime: OnceLock<tokio::runtime::Handle>,
    /// The broker's topic table (set on start): what routing, gossip and proposals check.
    topics: OnceLock<Arc<TopicTable>>,
    /// Where partition Raft messages from peers go (the topic table, set on start).
    router: OnceLock<Arc<dyn crate::partition::router::RaftRouter>>,
    /// Partition Raft heartbeats waiting for the next batch to each peer: `(count, items)`.
    heartbeats: parking_lot::Mutex<std::collections::HashMap<i32, (u32, Vec<u8>)>>,
    /// Other leaders' ISRs learnt by gossip, by `(topic, partition)`.
    isr_views: parking_lot::Mutex<std::collections::HashMap<(String, i32), RemoteIsr>>,
    /// Raft frames queued to peers (`rpc_frames_sent`; gossip calls are not counted), and the
    /// partition Raft messages in them.
    pub frames_sent: prometheus_client::metrics::counter::Counter,
    pub partition_messages_sent: prometheus_client::metrics::counter::Counter,
    /// Brokers being decommissioned (from the controller checkpoint and the entries after it).
    draining: parking_lot::Mutex<std::collections::BTreeSet<i32>>,
    /// Whether a task moving replicas off draining brokers is running.
    drain_task: std::sync::atomic::AtomicBool,
    /// The broker's `rpc_rejected` counter (set on start).
    rejected: OnceLock<crate::metrics::Rejections>,
    /// This broker's block of producer ids.
    producer_ids: producer_ids::Allocator,
    /// What runs the Kafka requests peers forward here (the broker's handlers).
    kafka_host: OnceLock<Arc<dyn host::KafkaHost>>,
}

/// A partition ISR another broker said it leads with.
#[derive(Debug, Clone)]
struct RemoteIsr {
    leader: i32,
    epoch: i32,
    isr: Vec<i32>,
    at: std::time::Instant,
}

impl Cluster {
    /// Binds the RPC listener; nothing runs until [`Cluster::start`].
    pub async fn bind(
        config: ClusterConfig,
        kafka: (String, u16),
        cluster_id: String,
    ) -> Result<Arc<Cluster>, ClusterError> {
        if config.node_id < 1 || config.node_id as i64 >= MAX_NODE_ID {
            return Err(ClusterError::NodeId(config.node_id));
        }
        let listener = rpc::bind(config.rpc_addr)
            .await
            .map_err(|e| ClusterError::Bind(config.rpc_addr, e))?;
        let local = listener
            .local_addr()
            .map_err(|e| ClusterError::Bind(config.rpc_addr, e))?;
        let me = Member {
            node_id: config.node_id,
            rpc_addr: config
                .advertised_rpc_addr
                .clone()
                .unwrap_or_else(|| local.to_string()),
            kafka_host: kafka.0,
            kafka_port: kafka.1,
            rack: config.rack.clone(),
            schema_registry_url: None,
            iceberg_catalog_url: None,
            // A new one per process start: see [`membership::Members::merge`].
            incarnation: uuid::Uuid::new_v4().as_u64_pair().0,
            features: features::supported(),
            rpc_version: rpc::VERSION,
            release: Some(env!("CARGO_PKG_VERSION").to_string()),
            listeners: Default::default(),
        };
        Ok(Arc::new(Cluster {
            config,
            members: Members::new(me),
            cluster_id,
            controller: OnceLock::new(),
            listener: parking_lot::Mutex::new(Some(listener)),
            peers: Default::default(),
            runtime: OnceLock::new(),
            topics: OnceLock::new(),
            router: OnceLock::new(),
            heartbeats: Default::default(),
            isr_views: Default::default(),
            frames_sent: Default::default(),
            frames_dropped: Default::default(),
            assigned_entries: Default::default(),
            partition_messages_sent: Default::default(),
            draining: Default::default(),
            drain_task: Default::default(),
            rejected: OnceLock::new(),
            producer_ids: Default::default(),
            kafka_host: OnceLock::new(),
        }))
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// The controller leader's id, if there is one.
    pub fn controller_leader(&self) -> Option<i32> {
        let l = self.controller.get()?.leader();
        (l != 0).then_some(l as i32)
    }

    /// Starts the RPC accept loop, gossip and (once the voters are known) the controller, for
    /// the broker whose topic table, metrics and data directory are given; the controller's
    /// changes reach that broker through `reconciler`.
    pub fn start(
        self: &Arc<Self>,
        topics: Arc<TopicTable>,
        metrics: Arc<crate::metrics::Metrics>,
        data_dir: std::path::PathBuf,
        reconciler: Arc<dyn host::Reconciler>,
    ) {
        let _ = self.runtime.set(tokio::runtime::Handle::current());
        let _ = self.topics.set(topics.clone());
        let _ = self.router.set(topics.clone());
        let _ = self.rejected.set(metrics.rpc_rejected.clone());
        if let Some(l) = self.listener.lock().take() {
            let limiter = crate::limits::connections::ConnLimiter::new(
                "rpc",
                self.config.rpc_connections,
                metrics.refused("rpc"),
            );
            tokio::spawn(listener::accept_loop(l, self.clone(), limiter));
        }
        tokio::spawn(gossip_loop(self.clone()));
        if self.config.batch_heartbeats {
            tokio::spawn(peers::heartbeat_batch_loop(self.clone()));
        }
        let (frames, msgs, dropped) = (
            self.frames_sent.clone(),
            self.partition_messages_sent.clone(),
            self.frames_dropped.clone(),
        );
        metrics.register_with(|r| {
            r.register(
                "rpc_frames_sent",
                "Raft frames (controller and partition groups) queued to other brokers; gossip is not counted",
                frames,
            );
            r.register(
                "partition_raft_messages_sent",
                "Partition Raft messages sent to other brokers (several per frame when batched)",
                msgs,
            );
            r.register(
                "rpc_frames_dropped",
                "Frames dropped because a peer's send queue was full (oldest heartbeats first, then Raft messages, which Raft retransmits)",
                dropped,
            );
        });
        let me = self.clone();
        let dir = data_dir.join("controller");
        tokio::spawn(async move {
            if me.config.recover_controller {
                let restore = match &me.config.restore_metadata {
                    Some(path) => match recover::Backup::read(path, &me.cluster_id) {
                        Ok(b) => Some(b),
                        Err(e) => {
                            tracing::error!(error = %e, "the controller does not start");
                            return;
                        }
                    },
                    None => None,
                };
                let table_index = me.topics.get().map_or(0, |t| t.controller_index());
                match recover::recover(&dir, me.node_id() as u64, restore.as_ref(), table_index) {
                    Ok(r) => tracing::warn!(
                        index = r.index,
                        term = r.term,
                        topics = r.topics,
                        "controller group re-formed with this broker as its only voter; start the other surviving brokers with an empty controller directory and this broker as their seed"
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot recover the controller; it does not start");
                        return;
                    }
                }
            }
            let voters = me.wait_for_voters(&dir).await;
            tracing::info!(
                ?voters,
                learner = !me.is_founder(),
                "starting the controller"
            );
            let env = controller::Env {
                dir,
                file_bytes: me.config.raft_log_file_bytes,
                snapshot_entries: me.config.controller_snapshot_entries,
                topics,
                metrics,
                peers: Arc::new(ControllerPeers(me.clone())),
                reconciler,
                quorum_size: me.config.controller_quorum_size,
                assigned_entries: me.assigned_entries.clone(),
                election_seed: None,
            };
            match controller::start(env, me.node_id() as u64, &voters) {
                Ok(h) => {
                    let _ = me.controller.set(h);
                }
                Err(e) => tracing::error!(error = %e, "cannot start the controller"),
            }
        });
    }

    /// Whether this broker's own RPC address is one of its seeds (a founding voter of the
    /// controller) rather than a broker that joins later as a learner.
    pub fn is_founder(&self) -> bool {
        let me = &self.members.me().rpc_addr;
        self.config.seeds.is_empty()
            || self.config.seeds.iter().any(|s| s == me)
            || self
                .config
                .seeds
                .iter()
                .any(|s| s.parse::<SocketAddr>().ok() == Some(self.config.rpc_addr))
    }

    /// The voter set: every seed's node id (and this broker's, if it is one), once all have
    /// answered. A broker that is not a seed starts from the founders' voters without being
    /// one: its controller replica stays a learner, which replicates and applies the log (all
    /// a broker needs to answer Metadata) without changing the quorum.
    async fn wait_for_voters(&self, controller_dir: &std::path::Path) -> Vec<u64> {
        let existing = controller_dir.join("voters.json");
        let started = tokio::time::Instant::now();
        let mut warned = false;
        loop {
            if existing.exists() {
                // An existing log keeps its own voter set (the store reads it).
                return vec![];
            }
            let members = self.members.all();
            let ids: Option<Vec<u64>> = self
                .config
                .seeds
                .iter()
                .map(|s| {
                    members
                        .iter()
                        .find(|m| &m.rpc_addr == s)
                        .map(|m| m.node_id as u64)
                })
                .collect();
            if let Some(mut ids) = ids {
                if self.is_founder() {
                    ids.push(self.node_id() as u64);
                }
                ids.sort_unstable();
                ids.dedup();
                return ids;
            }
            if !warned && started.elapsed() > Duration::from_secs(15) {
                warned = true;
                let known: Vec<String> = members.iter().map(|m| m.rpc_addr.clone()).collect();
                let missing: Vec<&String> = self
                    .config
                    .seeds
                    .iter()
                    .filter(|s| !known.contains(s))
                    .collect();
                tracing::warn!(?missing, ?known, "waiting for every seed before starting the controller; each seed must be spelled as that broker's advertised RPC address");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A backup of the cluster metadata as this broker's controller has applied it (see
    /// [`recover::Backup`]); `None` before the controller runs.
    pub async fn backup(&self) -> Option<recover::Backup> {
        let c = self.controller.get()?;
        let (tx, rx) = oneshot::channel();
        c.tx.send(Input::Export(tx)).ok()?;
        let (index, state) = rx.await.ok()?;
        Some(recover::Backup::new(self.cluster_id.clone(), index, state))
    }

    /// Controlled shutdown of the controller replica (see [`controller::Input::HandOff`]):
    /// whether this broker still leads the controller.
    pub async fn hand_off_controller(&self) -> bool {
        let Some(c) = self.controller.get() else {
            return false;
        };
        let (tx, rx) = oneshot::channel();
        if c.tx.send(Input::HandOff(tx)).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// The brokers in the controller group (voters and learners), as of the last entry it
    /// applied; empty before the controller starts.
    pub fn controller_brokers(&self) -> std::collections::BTreeSet<i32> {
        self.controller
            .get()
            .map(|c| c.brokers())
            .unwrap_or_default()
    }

    /// The controller group's voters; empty before the controller starts.
    pub fn controller_voters(&self) -> std::collections::BTreeSet<i32> {
        self.controller
            .get()
            .map(|c| c.voters())
            .unwrap_or_default()
    }

    /// The brokers Metadata and DescribeCluster list, as Kafka lists the brokers registered
    /// with its controller: once the controller runs, the brokers in its group (the ones
    /// replicas may be placed on) heard from within a session timeout (or not heard from yet
    /// by a broker up for less than that, [`Members::listable`]), except decommissioned ones
    /// (draining, no replica left).
    pub fn listed_brokers(&self) -> Vec<Member> {
        let group = self.controller_brokers();
        let topics = self.topics.get();
        self.members
            .all()
            .into_iter()
            .filter(|m| group.is_empty() || group.contains(&m.node_id))
            .filter(|m| self.members.listable(m.node_id, SESSION_TIMEOUT))
            .filter(|m| {
                !self.is_draining(m.node_id)
                    || topics.is_some_and(|t| reassign::holds_replicas(t, m.node_id))
            })
            .collect()
    }

    /// Waits, for at most [`PEER_WAIT`] after this process started, until it has heard from as
    /// many other brokers as it has other seeds. A broker that just restarted knows no other
    /// member until the first hellos are answered, and a Metadata answer listing only itself
    /// makes clients drop every other broker (librdkafka then lost a transaction coordinator
    /// it had found, and a transactional producer stalled).
    pub async fn await_peers(&self) {
        let me = &self.members.me().rpc_addr;
        let want = self.config.seeds.iter().filter(|s| *s != me).count();
        loop {
            let (heard, up) = self.members.heard_since_start();
            if heard >= want || up >= PEER_WAIT {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Counts and logs a message from a peer that was dropped or refused.
    pub(crate) fn reject(&self, reason: &'static str, what: std::fmt::Arguments) {
        match self.rejected.get() {
            Some(r) => crate::raft::rejects::note(r, reason, what),
            None => tracing::warn!(reason, "rpc message rejected: {what}"),
        }
    }
}

impl Cluster {
    /// The ISR of every partition this broker leads, for gossip.
    fn led_isrs(&self) -> Vec<IsrView> {
        let Some(topics) = self.topics.get() else {
            return vec![];
        };
        let mut out = Vec::new();
        for t in topics.all() {
            for (p, h) in t.partitions.iter().enumerate() {
                let Some(view) = &h.raft_view else { continue };
                let v = view.read();
                if !v.isr.is_empty() {
                    out.push(IsrView {
                        topic: t.name.clone(),
                        partition: p as i32,
                        epoch: v.epoch,
                        isr: v.isr.clone(),
                    });
                }
            }
        }
        out
    }

    /// Records the ISRs a leader gossiped.
    fn learn_isrs(&self, leader: i32, views: Vec<IsrView>) {
        if views.is_empty() {
            return;
        }
        let now = std::time::Instant::now();
        let mut known = self.isr_views.lock();
        for v in views {
            known.insert(
                (v.topic, v.partition),
                RemoteIsr {
                    leader,
                    epoch: v.epoch,
                    isr: v.isr,
                    at: now,
                },
            );
        }
        // Forget what no live leader repeated lately (deleted topics, dead leaders).
        known.retain(|_, r| r.at.elapsed() < membership::ALIVE_FOR);
    }

    /// What another broker, leading the partition, last said its ISR is: `(leader, epoch,
    /// isr)`, if it said so within the last few gossip rounds.
    pub fn remote_isr(&self, topic: &str, partition: i32) -> Option<(i32, i32, Vec<i32>)> {
        let known = self.isr_views.lock();
        let r = known.get(&(topic.to_string(), partition))?;
        (r.at.elapsed() < membership::ALIVE_FOR && self.members.is_alive(r.leader))
            .then(|| (r.leader, r.epoch, r.isr.clone()))
    }
}

impl Cluster {
    /// The finalized feature levels, as of the last entry the controller applied.
    pub fn finalized_features(&self) -> features::Levels {
        self.controller
            .get()
            .map(|c| c.features())
            .unwrap_or_default()
    }

    /// The finalized feature levels and their epoch (-1 while none is).
    pub fn finalized_features_epoch(&self) -> (i64, features::Levels) {
        self.controller
            .get()
            .map_or((-1, Default::default()), |c| c.features_with_epoch())
    }

    /// Finalized features (with their levels) that a broker supporting `supported` lacks.
    pub fn lacking_features(&self, supported: &features::Levels) -> Vec<String> {
        features::missing(&self.finalized_features(), supported)
    }
}

impl Cluster {
    /// Brokers new replicas may go to: every known one except those being decommissioned,
    /// and only those in the controller group (a command naming another is refused).
    pub fn placeable_brokers(&self) -> Vec<i32> {
        let in_group = self.controller_brokers();
        let draining = self.draining.lock();
        self.members
            .all()
            .iter()
            .map(|m| m.node_id)
            .filter(|id| !draining.contains(id))
            .filter(|id| in_group.is_empty() || in_group.contains(id))
            .collect()
    }

    /// [`Cluster::placeable_brokers`] for a new topic of `replication` replicas: only the live
    /// ones when there are enough (a partition placed on a dead broker may have no quorum),
    /// else all of them, as before.
    pub fn brokers_for_new_topic(&self, replication: i16) -> Vec<i32> {
        let all = self.placeable_brokers();
        let alive: Vec<i32> = all
            .iter()
            .copied()
            .filter(|&id| self.members.is_alive(id))
            .collect();
        if alive.len() >= replication.max(1) as usize {
            alive
        } else {
            all
        }
    }

    pub fn is_draining(&self, node: i32) -> bool {
        self.draining.lock().contains(&node)
    }

    /// How a partition leader reports a finished reassignment: a `Reassigned` proposal, sent
    /// from a task on the cluster's runtime (partition actors run on shard threads).
    pub fn reassign_reporter(
        self: &Arc<Self>,
        topic: &str,
        id: uuid::Uuid,
        partition: i32,
    ) -> crate::raft::ReportFn {
        let cluster = Arc::downgrade(self);
        let topic = topic.to_string();
        Arc::new(move |replicas: Vec<i32>| {
            let Some(c) = cluster.upgrade() else { return };
            let Some(rt) = c.runtime.get().cloned() else {
                return;
            };
            let cmd = Command::Reassigned {
                topic: topic.clone(),
                id,
                partition,
                replicas,
            };
            rt.spawn(async move {
                if let Err(e) = c.propose(cmd).await {
                    tracing::debug!(error = %e, "reporting a finished reassignment failed; the leader retries");
                }
            });
        })
    }
}

/// The controller's view of the other brokers: the cluster's RPC and gossip.
struct ControllerPeers(Arc<Cluster>);

impl host::Peers for ControllerPeers {
    fn send_controller(&self, to: u64, msg: &raft::eraftpb::Message) {
        if let Ok(bytes) = protobuf::Message::write_to_bytes(msg) {
            self.0.send_frame(to as i32, rpc::frame(Kind::Raft, &bytes));
        }
    }

    fn alive(&self) -> Vec<i32> {
        self.0
            .members
            .all()
            .into_iter()
            .map(|m| m.node_id)
            .filter(|&id| self.0.members.is_alive(id))
            .collect()
    }

    fn features(&self) -> std::collections::BTreeMap<i32, features::Levels> {
        let me = self.0.members.me().clone();
        let mut all: std::collections::BTreeMap<i32, features::Levels> = self
            .0
            .members
            .all()
            .into_iter()
            .map(|m| (m.node_id, m.features))
            .collect();
        all.insert(me.node_id, me.features);
        all
    }

    fn set_draining(&self, draining: std::collections::BTreeSet<i32>) {
        *self.0.draining.lock() = draining;
    }

    fn drain(&self) {
        reassign::drain(&self.0);
    }
}

/// Says hello to every seed and known member twice a second.
async fn gossip_loop(cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let me = cluster.members.me().clone();
        let mut targets: Vec<String> = cluster.config.seeds.clone();
        for m in cluster.members.all() {
            if m.node_id != me.node_id && !targets.contains(&m.rpc_addr) {
                targets.push(m.rpc_addr);
            }
        }
        let mut hello = cluster.members.hello(&cluster.cluster_id);
        hello.isr = cluster.led_isrs();
        let Ok(body) = serde_json::to_vec(&hello) else {
            continue;
        };
        let calls = targets
            .into_iter()
            .filter(|t| *t != me.rpc_addr)
            .map(|t| {
                let body = body.clone();
                let cluster = cluster.clone();
                async move {
                    let r = cluster.call(&t, Kind::Hello, &body, Kind::Members, Duration::from_millis(800)).await;
                    match r.map(|b| serde_json::from_slice::<Hello>(&b)) {
                        Ok(Ok(h)) if h.cluster_id == cluster.cluster_id => {
                            match cluster.members.merge(&h.from, &h.members) {
                                Ok(()) => cluster.learn_isrs(h.from.node_id, h.isr),
                                Err(e) => cluster.reject("hello_conflict", format_args!("answer from {t}: {e}")),
                            }
                        }
                        Ok(Ok(h)) => tracing::warn!(seed = %t, theirs = %h.cluster_id, "seed belongs to another cluster"),
                        Ok(Err(e)) => tracing::debug!(seed = %t, error = %e, "bad hello answer"),
                        Err(e) => tracing::debug!(seed = %t, error = %e, "hello failed"),
                    }
                }
            });
        futures_util::future::join_all(calls).await;
    }
}
