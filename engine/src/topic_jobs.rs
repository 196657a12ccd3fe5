//! Unmount and mount in a cluster, as the controller's topic records carry them: the state of
//! each job lives in the controller log, so any broker can take the next step and a new
//! controller leader resumes where the last one stopped (see `docs/tiering.md`, "Unmount and
//! mount in a cluster").

use std::collections::{BTreeMap, BTreeSet};

/// A committed offset of one group, as carried with an unmounted topic (in the topic
/// manifest, and in a cluster's unmount and mount jobs).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupOffset {
    pub group: String,
    pub partition: i32,
    pub offset: i64,
    #[serde(default)]
    pub metadata: Option<String>,
}

/// An unmount in progress: the topic is served by no broker meanwhile.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unmounting {
    pub started_ms: i64,
    /// Each partition sealed by its leader: `(log start, log end)`.
    #[serde(default)]
    pub sealed: BTreeMap<i32, (i64, i64)>,
    /// The `__consumer_offsets` partitions whose coordinator reported the topic's committed
    /// offsets (after every partition was sealed).
    #[serde(default)]
    pub offsets_from: BTreeSet<i32>,
    #[serde(default)]
    pub group_offsets: Vec<GroupOffset>,
}

impl Unmounting {
    /// Every one of `partitions` is sealed.
    pub fn all_sealed(&self, partitions: i32) -> bool {
        (0..partitions).all(|p| self.sealed.contains_key(&p))
    }

    /// Every one of `offsets_partitions` reported its groups' offsets.
    pub fn offsets_complete(&self, offsets_partitions: i32) -> bool {
        (0..offsets_partitions).all(|p| self.offsets_from.contains(&p))
    }

    /// Adds the offsets reported for the groups of `from` (a repeated report replaces none).
    pub fn add_offsets(&mut self, from: &[i32], offsets: Vec<GroupOffset>) {
        let fresh: BTreeSet<i32> = from
            .iter()
            .copied()
            .filter(|p| !self.offsets_from.contains(p))
            .collect();
        if fresh.is_empty() {
            return;
        }
        self.offsets_from.extend(fresh.iter().copied());
        self.group_offsets.extend(offsets);
        self.group_offsets
            .sort_by(|a, b| (&a.group, a.partition).cmp(&(&b.group, b.partition)));
        self.group_offsets
            .dedup_by(|a, b| a.group == b.group && a.partition == b.partition);
    }
}

/// A mount restoring its committed group offsets: the topic is served already.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mounting {
    pub started_ms: i64,
    /// The name the topic was unmounted under (its manifest, deleted once the mount is done).
    pub from: String,
    #[serde(default)]
    pub group_offsets: Vec<GroupOffset>,
    /// The `__consumer_offsets` partitions whose coordinator restored its groups' offsets.
    #[serde(default)]
    pub restored: BTreeSet<i32>,
}

/// What an unmount waits for besides the uploads: something that must finish with a topic's
/// records before it goes (the Iceberg translation, set by the binary). The engine knows
/// nothing else of it.
pub trait UnmountGate: Send + Sync {
    /// `Ok` once everything of topic `name` (id `id`) below each partition's end
    /// (`partition -> (log start, log end)`) is done with; else why not yet.
    fn caught_up<'a>(
        &'a self,
        name: &'a str,
        id: uuid::Uuid,
        ends: &'a BTreeMap<i32, (i64, i64)>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>>;
}
