//! The steps of an unmount or mount in a cluster that a broker takes for what it leads (the
//! tiering crate's driver calls them; the job's state is in the controller log, see
//! [`crate::topic_jobs`]): sealing the partitions it leads, and reporting or restoring the
//! committed offsets of the groups it coordinates.

use std::collections::{BTreeMap, BTreeSet};

use crate::broker::Broker;
use crate::group::store::{partition_for, OFFSETS_TOPIC};
use crate::partition::{Cmd, PartitionError};
use crate::topic_jobs::GroupOffset;

impl Broker {
    /// Seals every partition of hidden topic `name` that this broker leads and `sealed` lacks;
    /// returns each one's `(partition, log start, log end)`.
    pub async fn seal_led_partitions(
        &self,
        name: &str,
        sealed: &BTreeMap<i32, (i64, i64)>,
    ) -> Vec<(i32, Result<(i64, i64), PartitionError>)> {
        let Some(t) = self.topics.get_internal(name) else {
            return vec![];
        };
        let mut out = Vec::new();
        for (p, h) in t.partitions.iter().enumerate() {
            let p = p as i32;
            if sealed.contains_key(&p) || self.partition_leader(&t, p) != self.node_id() {
                continue;
            }
            out.push((p, h.ask(|reply| Cmd::Seal { reply }).await));
        }
        out
    }

    /// The `__consumer_offsets` partitions among `wanted` whose groups this broker coordinates
    /// now, and the committed offsets of `topic` in those groups.
    pub fn offsets_served(
        &self,
        topic: &str,
        wanted: impl Fn(i32) -> bool,
    ) -> (Vec<i32>, Vec<GroupOffset>) {
        let n = self.offsets_partition_count();
        let served: Vec<i32> = self
            .groups
            .served_partitions(self)
            .into_iter()
            .filter(|&p| wanted(p))
            .collect();
        let offsets = self
            .groups
            .committed_for_topic(topic)
            .into_iter()
            .filter(|o| served.contains(&partition_for(&o.group, n)))
            .collect();
        (served, offsets)
    }

    /// Commits `offsets` of `topic` for the groups this broker coordinates in the
    /// `__consumer_offsets` partitions `restored` lacks; returns those whose every offset was
    /// committed.
    pub async fn restore_served(
        &self,
        topic: &str,
        offsets: &[GroupOffset],
        restored: &BTreeSet<i32>,
    ) -> Vec<i32> {
        let n = self.offsets_partition_count();
        let mut done = Vec::new();
        for p in self.groups.served_partitions(self) {
            if restored.contains(&p) {
                continue;
            }
            let mine: Vec<GroupOffset> = offsets
                .iter()
                .filter(|o| partition_for(&o.group, n) == p)
                .cloned()
                .collect();
            if self.restore_offsets(topic, &mine).await == 0 {
                done.push(p);
            }
        }
        done
    }

    /// How many partitions `__consumer_offsets` has (0 before it exists).
    pub fn offsets_partition_count(&self) -> usize {
        self.topics
            .get(OFFSETS_TOPIC)
            .map_or(0, |t| t.partitions.len())
    }
}
