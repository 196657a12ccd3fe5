//! Leader pinning (`redpanda.leaders.preference`, Redpanda's topic config): which replica of a
//! partition should lead. Without the config, the assignment's first replica, as in Kafka; with
//! `racks:A,B`, the first replica in rack A that holds one, else in rack B, else the first.
//! Each replica's Raft group hands leadership back to that replica once it has caught up (the
//! periodic preferred-leader rebalance, and ElectLeaders PREFERRED); racks come from gossip,
//! so a task re-evaluates every partition here every few seconds and tells the replicas
//! whose preferred leader changed (a config change, a broker's rack first heard).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use crate::broker::Broker;
use crate::config::ResolvedTopicConfig;
use crate::partition::Cmd;
use crate::topics::TopicRecord;

/// How often the preferred leaders are re-evaluated.
const EVERY: Duration = Duration::from_secs(2);

/// The preferred leader each local replica was last told, by `(topic, partition)`.
#[derive(Default)]
pub struct Told(Mutex<HashMap<(String, i32), i32>>);

impl Told {
    pub(crate) fn note(&self, topic: &str, p: i32, preferred: i32) {
        self.0.lock().insert((topic.to_string(), p), preferred);
    }
}

/// The replica that should lead partition `p` of `rec` (-1: no replicas).
pub fn preferred(b: &Broker, rec: &TopicRecord, p: i32, resolved: &ResolvedTopicConfig) -> i32 {
    let replicas = usize::try_from(p)
        .ok()
        .and_then(|i| rec.assignments.get(i))
        .map_or(&[][..], Vec::as_slice);
    if let Some(c) = &b.cluster {
        for rack in &resolved.leader_racks {
            let in_rack =
                |r: &&i32| c.members.get(**r).and_then(|m| m.rack).as_deref() == Some(rack);
            if let Some(&r) = replicas.iter().find(in_rack) {
                return r;
            }
        }
    }
    replicas.first().copied().unwrap_or(-1)
}

/// Starts the re-evaluation task (in a cluster).
pub fn start(b: &Arc<Broker>) {
    if b.cluster.is_none() {
        return;
    }
    let weak: Weak<Broker> = Arc::downgrade(b);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let Some(b) = weak.upgrade() else { return };
            refresh(&b);
        }
    });
}

/// Tells each local replica whose preferred leader changed since it was last told.
pub(crate) fn refresh(b: &Broker) {
    for t in b.topics.all() {
        let Some(rec) = b.topics.record(&t.name) else {
            continue;
        };
        for (i, h) in t.partitions.iter().enumerate() {
            if h.raft_leader.is_none() {
                continue;
            }
            let p = i as i32;
            let want = preferred(b, &rec, p, &t.resolved);
            let key = (t.name.clone(), p);
            if b.leaders_told.0.lock().get(&key) == Some(&want) {
                continue;
            }
            let Some(assigned) = rec.assignments.get(i) else {
                continue;
            };
            let target = rec.targets.get(&p);
            let sent = h.tx.send(Cmd::Goal {
                replicas: target
                    .unwrap_or(assigned)
                    .iter()
                    .map(|&r| r as u64)
                    .collect(),
                reassigning: target.is_some(),
                adding: crate::broker::adding_replica(target, assigned, b.node_id()),
                preferred: want.max(0) as u64,
            });
            if sent.is_ok() {
                tracing::debug!(topic = %t.name, partition = p, preferred = want, "preferred leader");
                b.leaders_told.0.lock().insert(key, want);
            }
        }
    }
}
