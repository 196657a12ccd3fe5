//! Who leads each partition, who is in sync with it, and which partitions are short of
//! replicas, as this broker sees them (its own replicas' Raft state, else the leaders' gossip).

use super::Broker;
use crate::topics::Topic;

/// A partition without a leader, or with an ISR short of its replicas.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ShortPartition {
    pub topic: String,
    pub partition: i32,
    pub leader: Option<i32>,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

impl Broker {
    /// Which broker leads a partition and its leader epoch: the Raft group's leader (-1 during
    /// an election) in a cluster, this broker on a single node.
    pub fn partition_leader_epoch(&self, t: &Topic, partition: i32) -> (i32, i32) {
        let Some(replicas) = usize::try_from(partition)
            .ok()
            .and_then(|p| t.assignments.get(p))
        else {
            return (self.node_id(), 0);
        };
        let gossiped = || {
            self.cluster
                .as_ref()
                .and_then(|c| c.remote_isr(&t.name, partition))
                .map(|(leader, epoch, _)| (leader, epoch))
        };
        match t.partition(partition).and_then(|h| h.raft_leader.as_ref()) {
            Some(l) => match crate::raft::leader_of(l) {
                // No leader known to this replica (an election, or a replica stopped by a
                // storage error): the leader another broker gossiped for a later term, so
                // clients that ask this broker still find it.
                (-1, epoch) => gossiped()
                    .filter(|&(leader, e)| e > epoch && leader != self.node_id())
                    .unwrap_or((-1, epoch)),
                known => known,
            },
            // Not a replica here: what the leader gossiped, else the preferred replica.
            None => gossiped().unwrap_or((replicas.first().copied().unwrap_or(-1), 0)),
        }
    }

    pub fn partition_leader(&self, t: &Topic, partition: i32) -> i32 {
        self.partition_leader_epoch(t, partition).0
    }

    /// The partition's in-sync replicas as its leader sees them: this broker's own view when it
    /// leads, else what the leader last gossiped for the same epoch; without either (an
    /// election, gossip not yet heard) just the leader.
    pub fn isr(&self, t: &Topic, p: i32, leader: i32, epoch: i32) -> Vec<i32> {
        let own = t
            .partition(p)
            .and_then(|h| h.raft_view.as_ref())
            .map(|v| v.read().clone())
            .filter(|v| leader == self.node_id() && !v.isr.is_empty());
        match own {
            Some(v) => v.isr,
            None => self
                .cluster
                .as_ref()
                .and_then(|c| c.remote_isr(&t.name, p))
                .filter(|(l, e, _)| *l == leader && *e == epoch)
                .map(|(_, _, isr)| isr)
                .unwrap_or_else(|| if leader >= 0 { vec![leader] } else { vec![] }),
        }
    }

    /// Partitions whose leader is unknown or whose ISR is short of its replicas, as this
    /// broker sees them.
    pub fn not_fully_replicated(&self) -> Vec<ShortPartition> {
        let mut out = Vec::new();
        for t in self.topics.all() {
            for (p, replicas) in t.assignments.iter().enumerate() {
                let p = p as i32;
                let (leader, epoch) = self.partition_leader_epoch(&t, p);
                let isr = self.isr(&t, p, leader, epoch);
                if leader < 0 || isr.len() < replicas.len() {
                    out.push(ShortPartition {
                        topic: t.name.clone(),
                        partition: p,
                        leader: (leader >= 0).then_some(leader),
                        replicas: replicas.clone(),
                        isr,
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        out
    }

    /// Whether this broker leads the partition (always, on a single node).
    pub fn leads(&self, t: &Topic, partition: i32) -> bool {
        self.partition_leader(t, partition) == self.node_id()
    }
}
