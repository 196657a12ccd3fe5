//! The controller group in the simulation: each node runs the production controller
//! (`engine::cluster::controller`), its Raft messages on the simulated network, its log and
//! checkpoints on the node's disk, what it needs of a broker from [`crate::host`]. An admin
//! client creates, reconfigures and deletes topics; at the end every controller must hold the
//! same metadata, with every acknowledged change in it.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use engine::cluster::controller::{Input, ProposeOutcome};
use engine::cluster::metadata_state::MetadataState;
use engine::cluster::Command;
use engine::config::{ClusterDefaults, TopicConfig};
use engine::topics::TopicRecord;
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::schedule::NODES;
use crate::world::Shared;

/// What the admin client was told was applied, and what it got no answer for (which may or
/// may not have been applied).
#[derive(Default)]
pub struct Acked {
    /// Topics whose creation was acknowledged, with their ids.
    created: BTreeMap<String, uuid::Uuid>,
    deleted: BTreeSet<String>,
    /// Deletions that got no answer.
    maybe_deleted: BTreeSet<String>,
    /// The last `retention.ms` acknowledged for a topic, and the values proposed after it
    /// that got no answer: the topic ends with one of them.
    retention: BTreeMap<String, (String, Vec<String>)>,
    pub changes: usize,
}

/// Proposes `cmd` through node `node`'s controller; `None` if it is down or did not answer.
async fn propose(world: &Shared, node: u64, cmd: Command) -> Option<ProposeOutcome> {
    let tx = world.borrow().controller(node)?.tx.clone();
    let (reply, answer) = tokio::sync::oneshot::channel();
    tx.send(Input::Propose(Box::new(cmd), reply)).ok()?;
    tokio::time::timeout(Duration::from_secs(3), answer)
        .await
        .ok()?
        .ok()
}

/// Changes topics through the controller until `stop`.
pub async fn admin(
    world: Shared,
    acked: Rc<std::cell::RefCell<Acked>>,
    stop: Rc<std::cell::Cell<bool>>,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut target = NODES[rng.gen_range(0..NODES.len())];
    let mut n = 0;
    while !stop.get() {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(100..600))).await;
        let live: Vec<(String, uuid::Uuid)> = {
            let a = acked.borrow();
            a.created
                .iter()
                .filter(|(name, _)| !a.deleted.contains(*name))
                .map(|(n, id)| (n.clone(), *id))
                .collect()
        };
        let roll = rng.gen_range(0..100);
        let (cmd, what) = if live.is_empty() || roll < 50 {
            n += 1;
            let name = format!("t{n}");
            let id = uuid::Uuid::from_u128(rng.gen());
            let rec =
                TopicRecord::new(&name, id, 3, TopicConfig::default(), vec![vec![1, 2, 3]], 1);
            (Command::CreateTopic(rec), Change::Create(name, id))
        } else {
            let (name, id) = live[rng.gen_range(0..live.len())].clone();
            if roll < 85 {
                let ms = rng.gen_range(60_000..10_000_000u64).to_string();
                let config = TopicConfig::from_pairs(vec![("retention.ms", ms.as_str())])
                    .expect("a valid retention.ms");
                (
                    Command::SetTopicConfig {
                        name: name.clone(),
                        id,
                        config,
                    },
                    Change::Retention(name, ms),
                )
            } else {
                (
                    Command::DeleteTopic {
                        name: name.clone(),
                        id,
                    },
                    Change::Delete(name),
                )
            }
        };
        match propose(&world, target, cmd).await {
            Some(ProposeOutcome::Applied(Ok(()))) => {
                let mut a = acked.borrow_mut();
                a.changes += 1;
                world
                    .borrow()
                    .trace()
                    .note(format!("controller applied {what:?}"));
                match what {
                    Change::Create(name, id) => {
                        a.created.insert(name, id);
                    }
                    Change::Retention(name, ms) => {
                        a.retention.insert(name, (ms, vec![]));
                    }
                    Change::Delete(name) => {
                        a.deleted.insert(name);
                    }
                }
            }
            Some(ProposeOutcome::Applied(Err(e))) => {
                world
                    .borrow()
                    .trace()
                    .note(format!("controller refused {what:?}: {e}"));
            }
            Some(ProposeOutcome::NotLeader(l)) if NODES.contains(&l) => target = l,
            other => {
                // No answer: the change may still be applied.
                world.borrow().trace().note(format!(
                    "controller {target} did not answer {what:?}: {other:?}"
                ));
                let mut a = acked.borrow_mut();
                match what {
                    Change::Retention(name, ms) => {
                        if let Some((_, maybe)) = a.retention.get_mut(&name) {
                            maybe.push(ms);
                        }
                    }
                    Change::Delete(name) => {
                        a.maybe_deleted.insert(name);
                    }
                    Change::Create(..) => {}
                }
                target = NODES[rng.gen_range(0..NODES.len())];
            }
        }
    }
}

#[derive(Debug)]
enum Change {
    Create(String, uuid::Uuid),
    Retention(String, String),
    Delete(String),
}

/// Node `node`'s controller metadata and the index it reflects.
async fn export(world: &Shared, node: u64) -> Option<(u64, MetadataState)> {
    let tx = world.borrow().controller(node)?.tx.clone();
    let (reply, answer) = tokio::sync::oneshot::channel();
    tx.send(Input::Export(reply)).ok()?;
    tokio::time::timeout(Duration::from_secs(3), answer)
        .await
        .ok()?
        .ok()
}

/// Waits until every controller reflects the same index, then checks they hold the same
/// metadata and every acknowledged change.
pub async fn check(world: &Shared, acked: &Acked, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let states = loop {
        let mut states = Vec::new();
        for id in NODES {
            states.push((id, export(world, id).await));
        }
        let indexes: BTreeSet<Option<u64>> = states
            .iter()
            .map(|(_, s)| s.as_ref().map(|(i, _)| *i))
            .collect();
        if indexes.len() == 1 && !indexes.contains(&None) {
            break states;
        }
        if tokio::time::Instant::now() >= deadline {
            let each: Vec<String> = states
                .iter()
                .map(|(id, s)| format!("{id}: {:?}", s.as_ref().map(|(i, _)| *i)))
                .collect();
            world.borrow().trace().violation(format!(
                "the controllers did not reach the same index within {} s: {}",
                within.as_secs(),
                each.join(", ")
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let w = world.borrow();
    let mut t = w.trace();
    let (first, state) = match &states[0] {
        (id, Some((_, s))) => (*id, s.clone()),
        _ => return,
    };
    for (id, s) in &states[1..] {
        if let Some((_, s)) = s {
            if *s != state {
                let names = |m: &MetadataState| m.topics.keys().cloned().collect::<Vec<_>>();
                t.violation(format!(
                    "controllers {first} and {id} differ at the same index: topics {:?} and {:?}",
                    names(&state),
                    names(s)
                ));
            }
        }
    }
    let defaults = ClusterDefaults::default();
    for (name, id) in &acked.created {
        let rec = state.topics.get(name);
        if acked.deleted.contains(name) {
            if rec.is_some() {
                t.violation(format!(
                    "topic {name} was deleted (acknowledged) but is back"
                ));
            }
            continue;
        }
        match rec {
            None if acked.maybe_deleted.contains(name) => {}
            None => t.violation(format!(
                "topic {name} was created (acknowledged) but is gone"
            )),
            Some(r) if r.id != *id => {
                t.violation(format!("topic {name} has id {} rather than {id}", r.id))
            }
            Some(r) => {
                if let Some((ms, maybe)) = acked.retention.get(name) {
                    let (now, _) = r.config.get("retention.ms", &defaults);
                    if now != ms.as_str() && !maybe.iter().any(|m| m == now) {
                        t.violation(format!(
                            "topic {name} has retention.ms {now}, but {ms} was acknowledged last \
                             (and {maybe:?} proposed after it got no answer)"
                        ));
                    }
                }
            }
        }
    }
    t.note(format!(
        "controllers agree: {} topics, {} changes acknowledged",
        state.topics.len(),
        acked.changes
    ));
}
