//! What a simulated node's controller and group coordinator get of their broker, through the
//! traits the engine gives them: [`SimPeers`] (the simulated network, and which nodes are up),
//! [`SimReconciler`] (nothing to reconcile: the partitions under test are not the
//! controller's topics), and [`SimHost`] (the coordinator's topics and clock). [`Coordinator`]
//! is a node's group coordinator with what ends with the node.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use engine::cluster::host::{Peers, ReconcileFuture, Reconciler};
use engine::cluster::metadata_state::MetadataState;
use engine::config::{ClusterDefaults, TopicConfig};
use engine::dynamic_config::DynamicConfigs;
use engine::group::{GroupError, OffsetsRetention};
use engine::internal_topic::{CreateError, CreateFuture, TopicHost};
use engine::metrics::Metrics;
use engine::partition::PartitionHandle;
use engine::topics::{Topic, TopicRecord, TopicTable, OFFSETS_TOPIC};
use raft::eraftpb::Message;

use crate::net::{Group, Net};
use crate::schedule::NODES;

/// The group the committer commits for.
pub const GROUP: &str = "sim-group";
/// The topic whose offsets it commits: the partition under test.
pub const TOPIC: &str = "orders";

pub struct SimPeers {
    pub me: u64,
    pub net: Arc<Net>,
    /// The nodes that are up: what gossip would tell.
    pub alive: Arc<Mutex<BTreeSet<i32>>>,
}

impl Peers for SimPeers {
    fn send_controller(&self, to: u64, msg: &Message) {
        self.net.send(Group::Controller, self.me, to, msg.clone());
    }

    fn alive(&self) -> Vec<i32> {
        let alive = self.alive.lock().unwrap_or_else(|e| e.into_inner());
        alive.iter().copied().collect()
    }

    fn features(&self) -> BTreeMap<i32, engine::cluster::features::Levels> {
        NODES
            .iter()
            .map(|&n| (n as i32, engine::cluster::features::supported()))
            .collect()
    }

    fn set_draining(&self, _: BTreeSet<i32>) {}

    fn drain(&self) {}
}

pub struct SimReconciler;

impl Reconciler for SimReconciler {
    fn reconcile_all<'a>(&'a self, _: &'a MetadataState) -> ReconcileFuture<'a> {
        Box::pin(async { Ok(()) })
    }

    fn reconcile_topic<'a>(&'a self, _: &'a str, _: &'a MetadataState) -> ReconcileFuture<'a> {
        Box::pin(async { Ok(()) })
    }

    fn broker_configs<'a>(&'a self, _: &'a DynamicConfigs) -> ReconcileFuture<'a> {
        Box::pin(async { Ok(()) })
    }
}

/// What the coordinator gets of its broker.
pub struct SimHost {
    id: i32,
    topics: TopicTable,
    metrics: Metrics,
    clock: Arc<crate::clock::SimClock>,
}

impl TopicHost for SimHost {
    fn node_id(&self) -> i32 {
        self.id
    }

    fn topics(&self) -> &TopicTable {
        &self.topics
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn cluster_size(&self) -> Option<usize> {
        Some(NODES.len())
    }

    fn now_ms(&self) -> i64 {
        engine::time::Clock::now_ms(&*self.clock)
    }

    fn partition_leader_epoch(&self, t: &Topic, partition: i32) -> (i32, i32) {
        usize::try_from(partition)
            .ok()
            .and_then(|p| t.partitions.get(p))
            .and_then(|h| h.raft_leader.as_ref())
            .map_or((-1, -1), |l| engine::raft::leader_of(l))
    }

    fn create_topic<'a>(
        &'a self,
        name: &'a str,
        _: i32,
        _: i16,
        _: &'a [(String, String)],
    ) -> CreateFuture<'a> {
        Box::pin(async move { Err(CreateError::Exists(name.to_string())) })
    }
}

/// A node's coordinator, its host and the tasks that end with the node.
#[derive(Clone)]
pub struct Coordinator {
    pub groups: Arc<engine::group::Coordinator>,
    pub host: Arc<SimHost>,
    offsets: PartitionHandle,
    ticker: tokio::task::AbortHandle,
}

impl Coordinator {
    /// A fresh coordinator (a restarted broker's) over node `id`'s `__consumer_offsets`
    /// replica `offsets`.
    pub fn start(
        id: u64,
        root: &Path,
        offsets: PartitionHandle,
        data: Option<PartitionHandle>,
        clock: Arc<crate::clock::SimClock>,
    ) -> Result<Self, String> {
        let (topics, _) = TopicTable::load(&root.join("groups"), Some("sim".into()))
            .map_err(|e| e.to_string())?;
        let config = TopicConfig::from_pairs(vec![("cleanup.policy", "compact")])
            .map_err(|e| format!("{e:?}"))?;
        let rec = TopicRecord::new(
            OFFSETS_TOPIC,
            uuid::Uuid::from_u128(1),
            3,
            config,
            vec![NODES.iter().map(|&n| n as i32).collect()],
            1,
        );
        let resolved = rec.config.resolve(&ClusterDefaults::default());
        let topic = Topic::new(&rec, resolved, vec![offsets.clone()]);
        topics.insert(rec, topic).map_err(|e| e.to_string())?;
        // The topic whose offsets the group commits: the partition under test, as `orders`
        // (a commit to a topic the broker does not have is refused).
        if let Some(data) = data {
            let rec = TopicRecord::new(
                TOPIC,
                uuid::Uuid::from_u128(2),
                3,
                TopicConfig::default(),
                vec![NODES.iter().map(|&n| n as i32).collect()],
                1,
            );
            let resolved = rec.config.resolve(&ClusterDefaults::default());
            let topic = Topic::new(&rec, resolved, vec![data]);
            topics.insert(rec, topic).map_err(|e| e.to_string())?;
        }
        let host = Arc::new(SimHost {
            id: id as i32,
            topics,
            metrics: Metrics::default(),
            clock,
        });
        let groups = Arc::new(engine::group::Coordinator::new(
            true,
            OffsetsRetention::default(),
        ));
        // The broker's group ticker: follow the `__consumer_offsets` leader, expire sessions.
        let (g, h): (_, Arc<dyn TopicHost>) = (groups.clone(), host.clone());
        let ticker = tokio::task::spawn_local(async move {
            let mut every = tokio::time::interval(engine::group::TICK);
            loop {
                every.tick().await;
                g.follow_leader(&h);
                g.tick(&*h, tokio::time::Instant::now());
            }
        })
        .abort_handle();
        Ok(Coordinator {
            groups,
            host,
            offsets,
            ticker,
        })
    }

    /// The tasks a crash ends.
    pub fn tasks(self) -> [tokio::task::AbortHandle; 2] {
        [self.offsets.task.clone(), self.ticker]
    }

    /// The term of the `__consumer_offsets` leader this node sees.
    pub fn term(&self) -> i32 {
        self.offsets
            .raft_leader
            .as_ref()
            .map_or(-1, |l| engine::raft::leader_of(l).1)
    }

    pub fn leader(&self) -> i32 {
        self.offsets
            .raft_leader
            .as_ref()
            .map_or(-1, |l| engine::raft::leader_of(l).0)
    }
}

impl Coordinator {
    /// The offset this node's coordinator serves for [`GROUP`], if it serves the group.
    pub fn fetch(&self) -> Result<i64, GroupError> {
        self.groups.check(&*self.host, GROUP)?;
        let topics = self
            .groups
            .fetch(GROUP, Some(vec![(TOPIC.to_string(), vec![0])]));
        Ok(topics
            .first()
            .and_then(|(_, ps)| ps.first())
            .and_then(|(_, e)| e.as_ref())
            .map_or(-1, |e| e.offset))
    }
}
