//! Cluster metadata: the topic table, persisted in `<data>/meta/topics.json`.
//!
//! On one node the table is a file written atomically; with replication it becomes the
//! controller Raft group's state machine. Reads take a short read lock and clone an `Arc`;
//! changes are serialized by `change_lock` and persisted before they become visible.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use uuid::Uuid;

use crate::config::{ClusterDefaults, ResolvedTopicConfig, TopicConfig};
use crate::log::files::write_atomic;
use crate::partition::router::{RaftRouter, RouteError};
use crate::partition::PartitionHandle;

/// Topics the broker itself writes (group offsets, the schema registry's `_schemas`);
/// clients may read but not write or delete them.
pub fn is_internal(name: &str) -> bool {
    name == OFFSETS_TOPIC || name == SCHEMAS_TOPIC || name == TRANSACTIONS_TOPIC
}

/// The group coordinator's topic of committed offsets and group records.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The transaction coordinator's topic of transaction states (`crate::txn`).
pub const TRANSACTIONS_TOPIC: &str = "__transaction_state";

/// The schema registry's topic (the `schema-registry` crate writes it).
pub const SCHEMAS_TOPIC: &str = "_schemas";

/// A topic as the broker serves it.
pub struct Topic {
    pub name: String,
    pub id: Uuid,
    pub config: TopicConfig,
    pub resolved: ResolvedTopicConfig,
    pub partitions: Vec<PartitionHandle>,
    /// Each partition's replicas, preferred leader first (empty on a single node).
    pub assignments: Vec<Vec<i32>>,
}

impl Topic {
    /// The topic a record describes, over its opened partitions: the one way a `Topic` is
    /// built or rebuilt (open, new partitions, new config), so it never drifts from its record.
    pub fn new(
        rec: &TopicRecord,
        resolved: ResolvedTopicConfig,
        partitions: Vec<PartitionHandle>,
    ) -> Topic {
        Topic {
            name: rec.name.clone(),
            id: rec.id,
            config: rec.config.clone(),
            resolved,
            partitions,
            assignments: rec.assignments.clone(),
        }
    }

    pub fn partition(&self, index: i32) -> Option<&PartitionHandle> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

/// What is persisted per topic.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    pub replication_factor: i16,
    pub config: TopicConfig,
    /// Each partition's replicas, preferred leader first; empty on a single node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assignments: Vec<Vec<i32>>,
    /// The creation-time assignment once a reassignment changed `assignments` (empty: the
    /// same). Every replica's Raft group starts from it and replays the conf changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub initial: Vec<Vec<i32>>,
    /// Ongoing reassignments: partition -> target replicas (on a cancellation, the assignment
    /// again, until the group is back to it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub targets: BTreeMap<i32, Vec<i32>>,
    /// Every broker an ongoing reassignment involves (old replicas and every target given):
    /// they keep their replica, which may still be a Raft voter, until the move completes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub moving: BTreeMap<i32, Vec<i32>>,
    /// The controller log index of the last command that changed this record (a reassignment,
    /// a config change, partitions added), so that replaying the log on restart skips what the
    /// record already reflects.
    #[serde(default)]
    pub changed_at: u64,
    /// A single broker's topic this broker adopted when it became the first broker of a
    /// cluster (`adopt`), until the controller has it: never deleted for being absent from
    /// the cluster metadata meanwhile.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,
    /// An unmount in progress in a cluster: no broker serves the topic meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmounting: Option<Box<crate::topic_jobs::Unmounting>>,
    /// A topic mounted in a cluster: each partition's `(log start, log end)` when it was
    /// mounted. A replica's log starts empty at that end (older offsets are in the tier), as
    /// of Raft index 1 of its group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounted: Vec<(i64, i64)>,
    /// The controller log index of the mount that made this incarnation of the topic (0: it
    /// was created): a broker holding an older incarnation of the same id replaces it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub incarnation: u64,
    /// A mount still restoring committed group offsets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounting: Option<Box<crate::topic_jobs::Mounting>>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl TopicRecord {
    /// A new topic's record: these replicas (none on a single node), no history yet.
    pub fn new(
        name: &str,
        id: Uuid,
        replication_factor: i16,
        config: TopicConfig,
        assignments: Vec<Vec<i32>>,
        partitions: i32,
    ) -> TopicRecord {
        TopicRecord {
            name: name.to_string(),
            id,
            partitions,
            replication_factor,
            config,
            assignments,
            initial: vec![],
            targets: Default::default(),
            moving: Default::default(),
            changed_at: 0,
            adopted: false,
            unmounting: None,
            mounted: vec![],
            incarnation: 0,
            mounting: None,
        }
    }

    /// Whether broker `id` holds a replica of any partition, or is gaining or losing one.
    pub fn involves(&self, id: i32) -> bool {
        self.assignments.iter().any(|a| a.contains(&id))
            || self.targets.values().any(|a| a.contains(&id))
            || self.moving.values().any(|a| a.contains(&id))
    }

    /// Partition `p`'s creation-time replicas (its Raft group's bootstrap voters).
    pub fn initial_replicas(&self, p: i32) -> Option<&Vec<i32>> {
        let p = usize::try_from(p).ok()?;
        self.initial.get(p).or_else(|| self.assignments.get(p))
    }

    /// Whether `node` holds (or is gaining) a replica of partition `p`.
    pub fn replica_on(&self, p: i32, node: i32) -> bool {
        let current = usize::try_from(p)
            .ok()
            .and_then(|i| self.assignments.get(i))
            .is_some_and(|r| r.contains(&node));
        current
            || self.targets.get(&p).is_some_and(|t| t.contains(&node))
            || self.moving.get(&p).is_some_and(|t| t.contains(&node))
    }
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct MetaFile {
    cluster_id: String,
    topics: Vec<TopicRecord>,
    /// The last controller log entry the table reflects (0: none, or a file from before).
    #[serde(default)]
    controller_index: u64,
}

pub struct TopicTable {
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Topics being unmounted in a cluster: their partitions run (to seal and upload) but no
    /// client sees them ([`TopicRecord::unmounting`]).
    hidden: RwLock<BTreeMap<String, Arc<Topic>>>,
    records: parking_lot::Mutex<BTreeMap<String, TopicRecord>>,
    /// Serializes create / delete / alter so each sees the previous one's result.
    pub change_lock: tokio::sync::Mutex<()>,
    path: PathBuf,
    pub cluster_id: String,
    controller_index: std::sync::atomic::AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("cannot read cluster metadata {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cluster metadata {path} is damaged: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write cluster metadata {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Partition Raft messages go to the partitions of this table. The group's members are the
/// partition's replicas in the controller's metadata (a new replica's own Raft configuration
/// lags behind them) and its creation-time voters; the actor's guard checks the rest.
impl RaftRouter for TopicTable {
    fn deliver(
        &self,
        topic: &str,
        partition: i32,
        from: i32,
        msg: raft::eraftpb::Message,
    ) -> Result<(), RouteError> {
        let unknown = || RouteError::Unknown(topic.to_string(), partition);
        let (Some(t), Some(rec)) = (self.get_internal(topic), self.record(topic)) else {
            return Err(unknown());
        };
        let member = rec.replica_on(partition, from)
            || rec
                .initial_replicas(partition)
                .is_some_and(|r| r.contains(&from));
        if !member {
            return Err(RouteError::NotAReplica {
                topic: topic.to_string(),
                partition,
                from,
            });
        }
        let handle = t.partition(partition).ok_or_else(unknown)?;
        let _ = handle.tx.send(crate::partition::Cmd::Raft(Box::new(msg)));
        Ok(())
    }
}

impl TopicTable {
    /// Takes another cluster id (a single broker's directory becoming a cluster's first broker
    /// takes the cluster's).
    pub fn set_cluster_id(&mut self, id: String) -> Result<(), MetaError> {
        self.cluster_id = id;
        self.persist()
    }

    /// Loads the table (or starts an empty one with a new cluster id).
    pub fn load(
        data_dir: &Path,
        cluster_id: Option<String>,
    ) -> Result<(Self, Vec<TopicRecord>), MetaError> {
        let dir = data_dir.join("meta");
        let path = dir.join("topics.json");
        let meta = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<MetaFile>(&bytes).map_err(|source| MetaError::Parse {
                    path: path.clone(),
                    source,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::log::power::create_dir_all(&dir).map_err(|source| MetaError::Write {
                    path: dir.clone(),
                    source,
                })?;
                MetaFile {
                    cluster_id: cluster_id.unwrap_or_else(|| Uuid::new_v4().to_string()),
                    topics: vec![],
                    controller_index: 0,
                }
            }
            Err(source) => return Err(MetaError::Read { path, source }),
        };
        let records: BTreeMap<_, _> = meta
            .topics
            .iter()
            .map(|t| (t.name.clone(), t.clone()))
            .collect();
        let table = TopicTable {
            topics: RwLock::new(BTreeMap::new()),
            hidden: RwLock::new(BTreeMap::new()),
            records: parking_lot::Mutex::new(records),
            change_lock: tokio::sync::Mutex::new(()),
            path,
            cluster_id: meta.cluster_id,
            controller_index: meta.controller_index.into(),
        };
        table.persist()?;
        Ok((table, meta.topics))
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    pub fn by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.topics.read().values().find(|t| t.id == id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    pub fn record(&self, name: &str) -> Option<TopicRecord> {
        self.records.lock().get(name).cloned()
    }

    /// Every persisted record, by name.
    pub fn records(&self) -> Vec<TopicRecord> {
        self.records.lock().values().cloned().collect()
    }

    /// The persisted records `f` picks (only those are copied).
    pub fn records_where(&self, f: impl Fn(&TopicRecord) -> bool) -> Vec<TopicRecord> {
        self.records
            .lock()
            .values()
            .filter(|r| f(r))
            .cloned()
            .collect()
    }

    /// Records a topic durably, then makes it visible (or keeps it hidden while it is being
    /// unmounted).
    pub fn insert(&self, record: TopicRecord, topic: Topic) -> Result<(), MetaError> {
        let hide = record.unmounting.is_some();
        self.records.lock().insert(record.name.clone(), record);
        self.persist()?;
        self.serve(Arc::new(topic), hide);
        Ok(())
    }

    /// Makes an already-persisted topic visible (start-up), unless it is being unmounted.
    pub fn publish(&self, topic: Topic) {
        let hide = self
            .record(&topic.name)
            .is_some_and(|r| r.unmounting.is_some());
        self.serve(Arc::new(topic), hide);
    }

    fn serve(&self, topic: Arc<Topic>, hide: bool) {
        let name = topic.name.clone();
        let (to, from) = if hide {
            (&self.hidden, &self.topics)
        } else {
            (&self.topics, &self.hidden)
        };
        from.write().remove(&name);
        to.write().insert(name, topic);
    }

    /// A topic whether served or hidden for an unmount in a cluster: for what runs its
    /// partitions (Raft messages, snapshots, the reconciler), never for clients.
    pub fn get_internal(&self, name: &str) -> Option<Arc<Topic>> {
        self.get(name)
            .or_else(|| self.hidden.read().get(name).cloned())
    }

    /// Every topic, served or hidden (see [`Self::get_internal`]).
    pub fn all_internal(&self) -> Vec<Arc<Topic>> {
        let mut all = self.all();
        all.extend(self.hidden.read().values().cloned());
        all
    }

    /// Stops serving a topic without forgetting it (a single broker's unmount in progress):
    /// its partitions still run for what finishes with it (the Iceberg translation).
    pub fn hide(&self, name: &str) -> Option<Arc<Topic>> {
        let topic = self.topics.write().remove(name)?;
        self.hidden.write().insert(name.to_string(), topic.clone());
        Some(topic)
    }

    /// Serves a topic again.
    pub fn publish_arc(&self, topic: Arc<Topic>) {
        self.serve(topic, false);
    }

    /// Forgets a topic durably; returns what was served.
    pub fn remove(&self, name: &str) -> Result<Option<Arc<Topic>>, MetaError> {
        self.records.lock().remove(name);
        self.persist()?;
        let hidden = self.hidden.write().remove(name);
        Ok(self.topics.write().remove(name).or(hidden))
    }

    /// The last controller log entry the table reflects, as persisted.
    pub fn controller_index(&self) -> u64 {
        self.controller_index
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Notes that the table reflects the controller log up to `index`; written with the
    /// table's next change (a start takes the later of it and the controller's commit index,
    /// so a value a few entries behind only matters when the controller's log was lost).
    pub fn note_controller_index(&self, index: u64) {
        self.controller_index
            .fetch_max(index, std::sync::atomic::Ordering::Relaxed);
    }

    fn persist(&self) -> Result<(), MetaError> {
        let meta = MetaFile {
            cluster_id: self.cluster_id.clone(),
            topics: self.records.lock().values().cloned().collect(),
            controller_index: self.controller_index(),
        };
        let bytes = serde_json::to_vec_pretty(&meta).map_err(|e| MetaError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_atomic(&self.path, &bytes).map_err(|source| MetaError::Write {
            path: self.path.clone(),
            source,
        })
    }

    /// Resolves a record's effective config against the cluster defaults.
    pub fn resolve(record: &TopicRecord, defaults: &ClusterDefaults) -> ResolvedTopicConfig {
        record.config.resolve(defaults)
    }
}
