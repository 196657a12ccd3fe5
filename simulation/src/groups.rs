//! Consumer group offsets in the simulation: each node runs the production group
//! coordinator (`engine::group::Coordinator`, started in [`crate::host`]) over its replica of
//! `__consumer_offsets` (one compacted partition, replicated like the partition under test),
//! following that partition's Raft leader as the broker's ticker does. A committer commits ever larger
//! offsets for one group; a coordinator must never serve an offset below one acknowledged in
//! its term or an earlier one (Raft's leader completeness: a new leader holds every committed
//! entry), and the end state must hold the last one acknowledged.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use engine::group::{CommitPartition, CommitRequest, GroupError};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::host::{GROUP, TOPIC};
use crate::schedule::NODES;
use crate::world::Shared;

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
            if let Ok(offset) = c.fetch() {
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
                c.fetch().ok().map(|o| (n, o))
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
