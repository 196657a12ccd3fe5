//! Consumer group offsets in the simulation: each node runs the production group
//! coordinator (`engine::group::Coordinator`) over its replica of `__consumer_offsets` (one
//! compacted partition, replicated like the partition under test), following that
//! partition's Raft leader as the broker's ticker does. A committer commits ever larger
//! offsets for one group; a coordinator must never serve an offset below one acknowledged in
//! its term or an earlier one (Raft's leader completeness: a new leader holds every committed
//! entry), and the end state must hold the last one acknowledged.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use engine::config::{ClusterDefaults, TopicConfig};
use engine::group::{CommitPartition, CommitRequest, GroupError, OffsetsRetention};
use engine::internal_topic::{CreateError, CreateFuture, TopicHost};
use engine::metrics::Metrics;
use engine::partition::PartitionHandle;
use engine::topics::{Topic, TopicRecord, TopicTable, OFFSETS_TOPIC};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::schedule::NODES;
use crate::world::Shared;

const GROUP: &str = "sim-group";
const TOPIC: &str = "orders";

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
    fn term(&self) -> i32 {
        self.offsets
            .raft_leader
            .as_ref()
            .map_or(-1, |l| engine::raft::leader_of(l).1)
    }

    fn leader(&self) -> i32 {
        self.offsets
            .raft_leader
            .as_ref()
            .map_or(-1, |l| engine::raft::leader_of(l).0)
    }
}

/// Commits acknowledged: (term of the coordinator that acknowledged, offset).
#[derive(Default)]
pub struct Commits {
    acked: Vec<(i32, i64)>,
}

impl Commits {
    /// The highest offset acknowledged in term `term` or before.
    fn floor(&self, term: i32) -> i64 {
        self.acked
            .iter()
            .filter(|(t, _)| *t <= term)
            .map(|(_, o)| *o)
            .max()
            .unwrap_or(-1)
    }

    pub fn count(&self) -> usize {
        self.acked.len()
    }
}

/// The committed offset node `node`'s coordinator serves for the group, if it serves it.
fn fetch(c: &Coordinator) -> Result<i64, GroupError> {
    c.groups.check(&*c.host, GROUP)?;
    let topics = c
        .groups
        .fetch(GROUP, Some(vec![(TOPIC.to_string(), vec![0])]));
    Ok(topics
        .first()
        .and_then(|(_, ps)| ps.first())
        .and_then(|(_, e)| e.as_ref())
        .map_or(-1, |e| e.offset))
}

/// Commits ever larger offsets, and reads them back, until `stop`.
pub async fn committer(
    world: Shared,
    commits: Rc<RefCell<Commits>>,
    stop: Rc<Cell<bool>>,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut next = 0i64;
    let mut target = NODES[rng.gen_range(0..NODES.len())];
    while !stop.get() {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(20..200))).await;
        // A read from any node's coordinator that serves the group.
        let reader = NODES[rng.gen_range(0..NODES.len())];
        if let Some(c) = world.borrow().groups(reader) {
            if let Ok(offset) = fetch(&c) {
                let floor = commits.borrow().floor(c.term());
                if offset < floor {
                    world.borrow().trace().violation(format!(
                        "group offset went backwards: {reader} (term {}) serves {offset}, but {floor} was acknowledged by then",
                        c.term()
                    ));
                }
            }
        }
        let Some(c) = world.borrow().groups(target) else {
            target = NODES[rng.gen_range(0..NODES.len())];
            continue;
        };
        next += 1;
        let term = c.term();
        let request = CommitRequest {
            version: 8,
            generation: -1,
            member_id: String::new(),
            instance_id: None,
            topics: vec![(
                TOPIC.to_string(),
                vec![CommitPartition {
                    partition: 0,
                    offset: next,
                    leader_epoch: -1,
                    metadata: None,
                }],
            )],
        };
        let answer = tokio::time::timeout(
            Duration::from_secs(3),
            c.groups.commit(&*c.host, GROUP, request),
        )
        .await;
        let result = answer.ok().and_then(|r| {
            r.into_iter()
                .next()
                .and_then(|(_, ps)| ps.into_iter().next())
                .map(|(_, res)| res)
        });
        match result {
            Some(Ok(())) => {
                commits.borrow_mut().acked.push((term, next));
                world.borrow().trace().note(format!(
                    "group offset {next} committed through {target} (term {term})"
                ));
            }
            Some(Err(e @ (GroupError::NotCoordinator | GroupError::CoordinatorLoadInProgress))) => {
                world
                    .borrow()
                    .trace()
                    .note(format!("group commit through {target}: {e:?}"));
                let l = c.leader();
                target = if l > 0 {
                    l as u64
                } else {
                    NODES[rng.gen_range(0..NODES.len())]
                };
            }
            other => {
                world
                    .borrow()
                    .trace()
                    .note(format!("group commit through {target} failed: {other:?}"));
                target = NODES[rng.gen_range(0..NODES.len())];
            }
        }
    }
}

/// After the run: the coordinator that serves the group serves at least the last offset
/// acknowledged.
pub async fn check(world: &Shared, commits: &Commits, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let last = commits.acked.iter().map(|(_, o)| *o).max().unwrap_or(-1);
    loop {
        let served: BTreeMap<u64, i64> = NODES
            .iter()
            .filter_map(|&n| {
                let c = world.borrow().groups(n)?;
                fetch(&c).ok().map(|o| (n, o))
            })
            .collect();
        if let Some((&node, &offset)) = served.iter().next() {
            let w = world.borrow();
            let mut t = w.trace();
            if offset < last {
                t.violation(format!(
                    "group offset went backwards: after the run {node} serves {offset}, but {last} was acknowledged"
                ));
            } else {
                t.note(format!(
                    "group offset {offset} served by {node}; {} commits acknowledged, the last {last}",
                    commits.count()
                ));
            }
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            world.borrow().trace().violation(format!(
                "no coordinator served the group within {} s after the run",
                within.as_secs()
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
