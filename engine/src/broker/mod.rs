//! The broker: shards, topics, listeners and the operations handlers share. Who leads what
//! is in [`leadership`] and who should ([`leader_preference`]), stopping in [`shutdown`], what
//! the group coordinator and the registry get of it in [`internal_topics`], a single broker's
//! topics adopted into a cluster in [`adopt`].

pub mod adopt;
mod dynamic_configs;
mod errors;
mod internal_topics;
pub mod leader_preference;
mod leadership;
pub mod listeners;
mod mounted;
mod producer_ids;
pub mod security;
mod shutdown;
mod txn_host;
pub(crate) mod txn_markers;
pub(crate) mod txn_verify;
mod unmount_steps;

pub use leadership::ShortPartition;
pub use producer_ids::ProducerIdError;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use uuid::Uuid;

pub use errors::{BrokerError, StartError};

use crate::config::{BrokerConfig, InvalidConfig, TopicConfig};
use crate::durability::IoBackend;
use crate::fetch_session::FetchSessions;
use crate::metrics::Metrics;
use crate::partition::Cmd;
use crate::producer_ids::ProducerIds;
use crate::shard::Shards;
use crate::topics::{Topic, TopicRecord, TopicTable};

pub struct Broker {
    pub config: BrokerConfig,
    pub topics: Arc<TopicTable>,
    pub shards: Shards,
    pub metrics: Arc<Metrics>,
    pub fetch_sessions: FetchSessions,
    pub producer_ids: ProducerIds,
    pub kafka_addr: SocketAddr,
    pub advertised: (String, u16),
    /// The consumer group coordinator (every group on a single node; in a cluster the groups
    /// of the `__consumer_offsets` partitions this broker leads).
    pub groups: crate::group::Coordinator,
    /// The transaction coordinator (every transactional id on a single node; in a cluster the
    /// ids of the `__transaction_state` partitions this broker leads).
    pub txns: crate::txn::Coordinator,
    /// Tiered storage, when configured (the `tiering` crate).
    pub remote: Option<Arc<dyn crate::remote::RemoteTier>>,
    /// The schema registry's id lookup, set once the registry has started.
    pub schema_ids: OnceLock<Arc<dyn crate::schema_ids::SchemaIds>>,
    /// What an unmount waits for besides uploads (the Iceberg translation), once started.
    pub unmount_gate: OnceLock<Arc<dyn crate::topic_jobs::UnmountGate>>,
    /// Ids of topics this process forgot for an unmount: what follows a topic away (an
    /// Iceberg table with `iceberg.delete`) stays for the mount.
    pub unmounted: parking_lot::Mutex<std::collections::HashSet<Uuid>>,
    /// Membership and the controller, when started with seeds; `None` is a single node.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Connections admitted by the Kafka listener (every shard's accept loop).
    pub kafka_limiter: Arc<crate::limits::connections::ConnLimiter>,
    /// The memory Fetch responses may hold, per connection and in all.
    pub fetch_memory: crate::limits::fetch_memory::FetchMemory,
    /// Free space on the data volume: produce is refused while it is low.
    pub disk: Arc<crate::disk_space::DiskSpace>,
    /// The preferred leader each local replica was last told (leader pinning).
    pub(crate) leaders_told: crate::broker::leader_preference::Told,
    /// The dynamic broker configs and the topic defaults in force.
    dynamic: parking_lot::RwLock<dynamic_configs::InForce>,
    /// The reassignment throttles every partition replica shares.
    pub throttles: crate::raft::Throttles,
    /// Users, ACLs and quotas in force, and whether requests are authorized.
    pub security: security::Security,
    /// The TLS configurations of the Kafka and HTTP listeners, with `config.tls`.
    pub tls: Option<crate::security::tls::TlsConfigs>,
    ready: AtomicBool,
}

impl Broker {
    /// Opens the data directory, starts the shards and every partition, as a member of a
    /// cluster (`cluster` given) or a single node, with a remote tier plugged into every
    /// partition when given. The Kafka listener is not the broker's: `net::start_broker` binds
    /// it first (`config.kafka_addr` is then the address bound, whose port is advertised) and
    /// serves it once the broker is up.
    pub async fn start(
        config: BrokerConfig,
        io_backend: IoBackend,
        remote: Option<Arc<dyn crate::remote::RemoteTier>>,
        cluster: Option<crate::cluster::ClusterConfig>,
    ) -> Result<Arc<Broker>, StartError> {
        crate::log::power::create_dir_all(&config.data_dir)
            .map_err(|e| StartError::DataDir(config.data_dir.clone(), e))?;
        let metrics = Arc::new(Metrics::new());
        let disk = crate::disk_space::DiskSpace::new(
            &config.data_dir,
            config.storage_min_free_bytes,
            metrics.storage_low_disk.clone(),
        )
        .map_err(|e| StartError::DataDir(config.data_dir.clone(), e))?;
        tokio::spawn(disk.clone().watch());
        let shards = Shards::start(config.smp.max(1), io_backend, metrics.clone())
            .map_err(StartError::Shards)?;
        let (mut topics, records) = TopicTable::load(&config.data_dir, config.cluster_id.clone())?;
        // A single broker's directory becoming a cluster's first broker (`adopt`) takes the
        // cluster's id, which the other brokers derive from the same seeds.
        let single = records.iter().any(|r| r.assignments.is_empty());
        if let (true, Some(_), Some(id)) = (single, &cluster, &config.cluster_id) {
            if *id != topics.cluster_id {
                tracing::info!(from = %topics.cluster_id, to = %id, "taking the cluster's id");
                topics.set_cluster_id(id.clone())?;
            }
        }
        let kafka_addr = config.kafka_addr;
        let offsets_retention = config.offsets_retention;
        let transaction_max_timeout_ms = config.transaction_max_timeout_ms;
        let mut advertised = config.advertised_kafka_addr.clone();
        if advertised.1 == 0 {
            advertised.1 = kafka_addr.port();
        }
        let producer_ids = ProducerIds::load(&config.data_dir).map_err(StartError::ProducerIds)?;
        let dynamic = dynamic_configs::load(&config.data_dir, config.node_id, &config.defaults)
            .map_err(StartError::DynamicConfigs)?;
        if cluster.is_none() && config.rpc_tls {
            tracing::warn!("--rpc-tls has no effect without --seeds");
        }
        let cluster = match cluster {
            Some(mut c) => {
                if config.rpc_tls {
                    let t = config.tls.as_ref().ok_or(StartError::NoRpcTls)?;
                    let tls = crate::security::tls::RpcTlsConfigs::new(t);
                    c.tls = Some(tls.map_err(StartError::RpcTls)?);
                }
                let c =
                    crate::cluster::Cluster::bind(c, advertised.clone(), topics.cluster_id.clone())
                        .await?;
                c.members
                    .set_kafka_listeners(listeners::advertised_map(&config));
                Some(c)
            }
            None => None,
        };
        let kafka_limiter = crate::limits::connections::ConnLimiter::new(
            "kafka",
            config.kafka_connections,
            metrics.refused("kafka"),
        );
        let fetch_memory = crate::limits::fetch_memory::FetchMemory::new(
            config.fetch_memory,
            metrics.fetch_memory_bytes.clone(),
        );
        let authz = config.authz.clone();
        let tls = match &config.tls {
            Some(t) => Some(crate::security::tls::TlsConfigs::new(t)?),
            None => None,
        };
        let security_state = security::load(&config.data_dir).map_err(StartError::Security)?;
        let broker = Arc::new(Broker {
            disk,
            kafka_limiter,
            fetch_memory,
            fetch_sessions: FetchSessions::new(config.fetch_session_slots),
            producer_ids,
            config,
            topics: Arc::new(topics),
            shards,
            metrics,
            kafka_addr,
            advertised,
            groups: crate::group::Coordinator::new(cluster.is_some(), offsets_retention),
            txns: crate::txn::Coordinator::with_max_timeout(
                cluster.is_some(),
                transaction_max_timeout_ms,
            ),
            remote,
            schema_ids: OnceLock::new(),
            unmount_gate: OnceLock::new(),
            unmounted: Default::default(),
            cluster,
            leaders_told: Default::default(),
            dynamic: parking_lot::RwLock::new(dynamic),
            security: security::Security::new(authz, security_state),
            tls,
            throttles: Default::default(),
            ready: AtomicBool::new(false),
        });
        let (leader, follower) = (
            broker.throttles.leader.waited.clone(),
            broker.throttles.follower.waited.clone(),
        );
        broker.metrics.register_with(|r| {
            r.register(
                "replication_throttled_leader_bytes",
                "Snapshot bytes served to replicas a reassignment adds that waited for leader.replication.throttled.rate",
                leader,
            );
            r.register(
                "replication_throttled_follower_bytes",
                "Bytes replicas a reassignment adds took in that waited for follower.replication.throttled.rate",
                follower,
            );
        });
        broker
            .metrics
            .register_with(|r| broker.security.quotas.metrics.register(r));
        broker.apply_throttles();
        broker.remove_orphan_topic_dirs();
        let mut records = records;
        let adopted = match &broker.cluster {
            Some(c) => crate::broker::adopt::prepare(&broker, &mut records, c.is_founder())?,
            None => vec![],
        };
        for rec in records {
            // A record written before names were checked on apply may name an unsafe path:
            // it is not served (and its path never touched) rather than stopping the broker.
            if let Err(e) = crate::names::topic(&rec.name) {
                tracing::error!(error = %e, "not opening a topic whose name is not a legal topic name");
                continue;
            }
            let topic = broker.open_topic(&rec).await?;
            if adopted.contains(&rec.name) {
                broker.topics.insert(rec, topic)?;
            } else {
                broker.topics.publish(topic);
            }
        }
        broker.update_gauges();
        if let (Some(_), Some(want), Some(t)) = (
            &broker.cluster,
            broker.config.offsets_topic_partitions,
            broker.topics.get(crate::topics::OFFSETS_TOPIC),
        ) {
            if t.partitions.len() != want as usize {
                tracing::info!(
                    partitions = t.partitions.len(),
                    "--offsets-topic-partitions {want} ignored: __consumer_offsets keeps the count it was created with (groups are placed by it)"
                );
            }
        }
        broker.groups.load(&*broker).await.map_err(|e| {
            StartError::Partition(BrokerError::Storage(std::io::Error::other(e.to_string())))
        })?;
        broker.txns.load(&*broker).await.map_err(|e| {
            StartError::Partition(BrokerError::Storage(std::io::Error::other(e.to_string())))
        })?;
        internal_topics::start_group_ticker(&broker);
        txn_host::start_txn_ticker(&broker);
        crate::broker::leader_preference::start(&broker);
        if let Some(u) = broker.config.bootstrap_user.clone() {
            broker.bootstrap_user(u.name, u.password).await;
        }
        Ok(broker)
    }

    /// Called once the broker serves: its cluster membership started, its listener bound.
    pub(crate) fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// Where a topic's partition logs live; an error for a name that is not a legal topic
    /// name (it would not be one directory under `kafka/`).
    pub(crate) fn topic_dir(&self, topic: &str) -> Result<PathBuf, crate::names::NameError> {
        Ok(self
            .config
            .data_dir
            .join("kafka")
            .join(crate::names::topic(topic)?))
    }

    /// Where a topic's partition Raft logs live (`<name>-<id>`), checked like [`Self::topic_dir`].
    pub(crate) fn raft_topic_dir(
        &self,
        topic: &str,
        id: Uuid,
    ) -> Result<PathBuf, crate::names::NameError> {
        let name = crate::names::topic(topic)?;
        Ok(self
            .config
            .data_dir
            .join("raft")
            .join(format!("{name}-{id}")))
    }

    /// A crash between forgetting a topic and removing its files, or between creating a
    /// topic's files and recording it, leaves directories no topic owns; remove them so that a
    /// topic of the same name (or a mount of the same id) starts empty. Raft directories are
    /// `<name>-<id>`: one whose record is gone or has another id is an orphan too.
    fn remove_orphan_topic_dirs(&self) {
        if let Ok(entries) = std::fs::read_dir(self.config.data_dir.join("kafka")) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if self.topics.record(&name).is_none() {
                    tracing::warn!(topic = %name, "removing files of a deleted topic");
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let Ok(entries) = std::fs::read_dir(self.config.data_dir.join("raft")) else {
            return;
        };
        let owned: std::collections::HashSet<String> = self
            .topics
            .records()
            .iter()
            .map(|r| format!("{}-{}", r.name, r.id))
            .collect();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !owned.contains(&name) {
                tracing::warn!(dir = %name, "removing the Raft logs of a deleted topic");
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    pub(crate) async fn open_topic(&self, rec: &TopicRecord) -> Result<Topic, BrokerError> {
        let resolved = TopicTable::resolve(rec, &self.defaults());
        let mut partitions = Vec::with_capacity(rec.partitions as usize);
        for p in 0..rec.partitions {
            partitions.push(self.open_partition(rec, p, &resolved).await?);
        }
        Ok(Topic::new(rec, resolved, partitions))
    }

    pub(crate) async fn open_partition(
        &self,
        rec: &TopicRecord,
        p: i32,
        resolved: &crate::config::ResolvedTopicConfig,
    ) -> Result<crate::partition::PartitionHandle, BrokerError> {
        let shard = self.shards.owner(&rec.name, p);
        let dir = self.topic_dir(&rec.name)?.join(p.to_string());
        let remote = if resolved.log.remote_storage {
            self.remote_link(&rec.name, rec.id, p).await?
        } else {
            None
        };
        if self.cluster.is_some() {
            self.prepare_mounted(rec, p).await?;
        }
        let raft = self.raft_setup(rec, p, resolved)?;
        if raft.is_none() && self.cluster.is_some() {
            // A replica moved away while this broker was down leaves its Raft log behind.
            let _ = std::fs::remove_dir_all(self.raft_dir(rec, p)?);
        }
        Ok(self
            .shards
            .open_replicated(shard, dir, resolved.clone(), remote, raft)
            .await?)
    }

    /// Where a partition replica's Raft log lives.
    pub(crate) fn raft_dir(
        &self,
        rec: &TopicRecord,
        p: i32,
    ) -> Result<PathBuf, crate::names::NameError> {
        Ok(self.raft_topic_dir(&rec.name, rec.id)?.join(p.to_string()))
    }

    /// The Raft group of a partition this broker replicates (or is gaining), in a cluster.
    fn raft_setup(
        &self,
        rec: &TopicRecord,
        p: i32,
        resolved: &crate::config::ResolvedTopicConfig,
    ) -> Result<Option<crate::raft::RaftSetup>, crate::names::NameError> {
        let Some(cluster) = self.cluster.as_ref() else {
            return Ok(None);
        };
        if !rec.replica_on(p, self.node_id()) {
            return Ok(None);
        }
        let dir = self.raft_dir(rec, p)?;
        let Some(initial) = rec.initial_replicas(p) else {
            return Ok(None);
        };
        let Some(current) = usize::try_from(p).ok().and_then(|i| rec.assignments.get(i)) else {
            return Ok(None);
        };
        let target = rec.targets.get(&p);
        let defaults = self.defaults();
        let (min, _) = rec.config.get("min.insync.replicas", &defaults);
        let preferred = crate::broker::leader_preference::preferred(self, rec, p, resolved);
        self.leaders_told.note(&rec.name, p, preferred);
        Ok(Some(crate::raft::RaftSetup {
            id: self.node_id() as u64,
            // Always the creation-time voters: the log's conf changes lead from them to the
            // current configuration, on a new replica as on an old one.
            voters: initial.iter().map(|&r| r as u64).collect(),
            dir,
            send: cluster.partition_sender(&rec.name, p),
            leader: Default::default(),
            isr: Default::default(),
            lag_max: cluster.config.replica_lag_max,
            min_insync: min.parse().unwrap_or(1),
            preferred: preferred.max(0) as u64,
            goal: target
                .unwrap_or(current)
                .iter()
                .map(|&r| r as u64)
                .collect(),
            reassigning: target.is_some(),
            adding: adding_replica(target, current, self.node_id()),
            on_reassigned: cluster.reassign_reporter(&rec.name, rec.id, p),
            leader_changes: self.metrics.leader_changes.clone(),
            rejected: self.metrics.rpc_rejected.clone(),
            chunks: cluster.chunk_fn(&rec.name, p),
            file_bytes: cluster.config.raft_log_file_bytes,
            throttles: self.throttles.clone(),
            assigned_entries: cluster.assigned_entries.clone(),
            // Set by `partition::spawn`, which knows the partition's directory.
            segments: None,
            election_seed: None,
        }))
    }

    /// Connects a partition to the remote tier, reading what its manifest records.
    async fn remote_link(
        &self,
        topic: &str,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<Option<crate::partition::RemoteLink>, BrokerError> {
        let Some(tier) = &self.remote else {
            return Ok(None);
        };
        let id = crate::remote::RemotePartition {
            topic: topic.to_string(),
            topic_id,
            partition,
        };
        let extent = tier.open(&id).await?;
        Ok(Some(crate::partition::RemoteLink {
            tier: tier.clone(),
            id,
            extent,
            // In a cluster the partition's Raft leader writes the tier (the actor switches
            // the role when its group elects it); every other copy, replica or not, follows.
            role: if self.cluster.is_some() {
                crate::remote::TierRole::Follower
            } else {
                crate::remote::TierRole::Leader { epoch: 0 }
            },
        }))
    }

    /// Checks a CreateTopics entry without creating anything; returns the record to create.
    pub fn plan_topic(
        &self,
        name: &str,
        partitions: i32,
        replication: i16,
        configs: &[(String, String)],
    ) -> Result<TopicRecord, BrokerError> {
        crate::config::validate_topic_name(name).map_err(BrokerError::InvalidTopicName)?;
        if self.topics.record(name).is_some() {
            return Err(BrokerError::TopicExists(name.to_string()));
        }
        let partitions = if partitions == -1 {
            self.defaults().default_partitions
        } else {
            partitions
        };
        if !(1..=100_000).contains(&partitions) {
            return Err(BrokerError::InvalidPartitions(partitions));
        }
        let replication = if replication == -1 {
            self.defaults().default_replication_factor
        } else {
            replication
        };
        let config = TopicConfig::from_entries(configs)?;
        self.check_tiering(&config.resolve(&self.defaults()))?;
        // In a cluster every topic is replicated, internal ones included: the group
        // coordinator and the schema registry follow their partitions' leaders.
        let assignments = match &self.cluster {
            Some(c) => {
                let brokers = placeable(c, replication)?;
                crate::cluster::placement::assign_racked(
                    &brokers,
                    partitions,
                    replication,
                    crate::cluster::placement::start_for(name),
                )
            }
            None => {
                if replication != 1 {
                    return Err(BrokerError::InvalidReplicationFactor(replication, 1));
                }
                vec![]
            }
        };
        let replication = if assignments.is_empty() {
            1
        } else {
            replication
        };
        Ok(TopicRecord::new(
            name,
            Uuid::new_v4(),
            replication,
            config,
            assignments,
            partitions,
        ))
    }

    /// Creates a topic: in a cluster through the controller (every broker applies it), on a
    /// single node directly.
    pub async fn create_topic(&self, rec: TopicRecord) -> Result<Arc<Topic>, BrokerError> {
        if let Some(c) = self.cluster.as_ref() {
            let name = rec.name.clone();
            c.propose(crate::cluster::Command::CreateTopic(rec)).await?;
            return self
                .topics
                .get(&name)
                .ok_or(BrokerError::UnknownTopic(name));
        }
        self.create_topic_local(rec).await
    }

    /// Creates a topic on this broker: persists it, then opens its partitions.
    pub(crate) async fn create_topic_local(
        &self,
        rec: TopicRecord,
    ) -> Result<Arc<Topic>, BrokerError> {
        let _guard = self.topics.change_lock.lock().await;
        if self.topics.record(&rec.name).is_some() {
            return Err(BrokerError::TopicExists(rec.name));
        }
        let topic = self.open_topic(&rec).await?;
        let name = rec.name.clone();
        self.topics.insert(rec, topic)?;
        self.update_gauges();
        tracing::info!(topic = %name, "created topic");
        self.topics
            .get(&name)
            .ok_or(BrokerError::UnknownTopic(name))
    }

    /// Deletes a topic: forgets it durably, then stops its partitions and removes their files.
    pub async fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        if crate::topics::is_internal(name) {
            return Err(BrokerError::InternalTopic(name.to_string()));
        }
        if let Some(c) = self.cluster.as_ref() {
            let rec = self
                .topics
                .record(name)
                .filter(|_| self.topics.get(name).is_some())
                .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
            let cmd = crate::cluster::Command::DeleteTopic {
                name: name.to_string(),
                id: rec.id,
            };
            return Ok(c.propose(cmd).await?);
        }
        self.delete_topic_local(name, false, true).await
    }

    /// Deletes a topic on this broker.
    /// `keep_remote`: the topic was unmounted (or comes back mounted), and its remote data
    /// stays for that. `forget_offsets`: its committed offsets go too (not when a topic of the
    /// same name lives on in the cluster: they may be that topic's already).
    pub(crate) async fn delete_topic_local(
        &self,
        name: &str,
        keep_remote: bool,
        forget_offsets: bool,
    ) -> Result<(), BrokerError> {
        let _guard = self.topics.change_lock.lock().await;
        // A single broker's topic being unmounted is not served and cannot be deleted
        // meanwhile (in a cluster the controller decides).
        let found = match self.cluster {
            Some(_) => self.topics.get_internal(name),
            None => self.topics.get(name),
        };
        if found.is_none() {
            return Err(BrokerError::UnknownTopic(name.to_string()));
        }
        let topic = self
            .topics
            .remove(name)?
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
        if keep_remote {
            self.unmounted.lock().insert(topic.id);
        }
        for p in &topic.partitions {
            p.stop(true, !keep_remote).await;
        }
        // Both paths are checked: a name that is not one safe segment removes nothing.
        if let Ok(dir) = self.topic_dir(name) {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Ok(raft) = self.raft_topic_dir(name, topic.id) {
            let _ = std::fs::remove_dir_all(raft);
        }
        self.update_gauges();
        tracing::info!(topic = %name, "deleted topic");
        if forget_offsets {
            self.groups.forget_topic(self, name);
        }
        Ok(())
    }

    /// A topic's persisted record and what is served, or UnknownTopic.
    fn existing(&self, name: &str) -> Result<(TopicRecord, Arc<Topic>), BrokerError> {
        let unknown = || BrokerError::UnknownTopic(name.to_string());
        let rec = self.topics.record(name).ok_or_else(unknown)?;
        let topic = self.topics.get(name).ok_or_else(unknown)?;
        Ok((rec, topic))
    }

    /// Adds partitions so that the topic has `count`: in a cluster through the controller
    /// (placed like a topic created with `count` partitions, so replicas and preferred leaders
    /// stay balanced), on a single node directly.
    pub async fn add_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        if crate::topics::is_internal(name) {
            return Err(BrokerError::InternalPartitions(name.to_string()));
        }
        let (rec, current) = self.existing(name)?;
        let from = current.partitions.len() as i32;
        if count <= from {
            return Err(BrokerError::PartitionsNotIncreased {
                topic: name.to_string(),
                current: current.partitions.len(),
                requested: count,
            });
        }
        if count > 100_000 {
            return Err(BrokerError::InvalidPartitions(count));
        }
        let Some(c) = &self.cluster else {
            if validate_only {
                return Ok(());
            }
            return self.add_partitions_local(name, count, vec![], 0).await;
        };
        let rf = rec.replication_factor;
        let brokers = placeable(c, rf)?;
        let start = crate::cluster::placement::start_for(name);
        let mut assignments = crate::cluster::placement::assign_racked(&brokers, count, rf, start);
        let assignments = assignments.split_off(from as usize);
        if validate_only {
            return Ok(());
        }
        let cmd = crate::cluster::Command::AddPartitions {
            name: name.to_string(),
            id: rec.id,
            from,
            assignments,
        };
        Ok(c.propose(cmd).await?)
    }

    /// Grows a topic on this broker to `count` partitions, the new ones on `assignments` (in a
    /// cluster); `changed_at` is the controller entry's index (0 on a single node).
    pub(crate) async fn add_partitions_local(
        &self,
        name: &str,
        count: i32,
        assignments: Vec<Vec<i32>>,
        changed_at: u64,
    ) -> Result<(), BrokerError> {
        let _guard = self.topics.change_lock.lock().await;
        let (mut rec, current) = self.existing(name)?;
        if count as i64 <= current.partitions.len() as i64 {
            return Err(BrokerError::PartitionsNotIncreased {
                topic: name.to_string(),
                current: current.partitions.len(),
                requested: count,
            });
        }
        rec.assignments.extend(assignments);
        rec.partitions = count;
        rec.changed_at = rec.changed_at.max(changed_at);
        let mut partitions = current.partitions.clone();
        for p in current.partitions.len() as i32..count {
            partitions.push(self.open_partition(&rec, p, &current.resolved).await?);
        }
        let topic = Topic::new(&rec, current.resolved.clone(), partitions);
        self.topics.insert(rec, topic)?;
        self.update_gauges();
        tracing::info!(topic = name, partitions = count, "added partitions");
        Ok(())
    }

    /// Replaces a topic's overrides (already validated): in a cluster through the controller,
    /// on a single node directly.
    pub async fn set_topic_config(
        &self,
        name: &str,
        config: TopicConfig,
    ) -> Result<(), BrokerError> {
        let (rec, current) = self.existing(name)?;
        let resolved = config.resolve(&self.defaults());
        check_config_change(name, &current.resolved, &resolved)?;
        if !current.resolved.log.remote_storage {
            self.check_tiering(&resolved)?;
        }
        match &self.cluster {
            Some(c) => {
                let cmd = crate::cluster::Command::SetTopicConfig {
                    name: name.to_string(),
                    id: rec.id,
                    config,
                };
                Ok(c.propose(cmd).await?)
            }
            None => self.set_topic_config_local(name, config, 0).await,
        }
    }

    /// Replaces a topic's overrides on this broker and tells its partitions; `changed_at` is
    /// the controller entry's index (0 on a single node).
    pub(crate) async fn set_topic_config_local(
        &self,
        name: &str,
        config: TopicConfig,
        changed_at: u64,
    ) -> Result<(), BrokerError> {
        let _guard = self.topics.change_lock.lock().await;
        let (mut rec, current) = self.existing(name)?;
        let resolved = config.resolve(&self.defaults());
        check_config_change(name, &current.resolved, &resolved)?;
        rec.config = config;
        rec.changed_at = rec.changed_at.max(changed_at);
        for (p, handle) in current.partitions.iter().enumerate() {
            let _ = handle.tx.send(Cmd::Reconfigure(Box::new(resolved.clone())));
            if resolved.log.remote_storage && !current.resolved.log.remote_storage {
                if let Some(link) = self.remote_link(name, current.id, p as i32).await? {
                    let _ = handle.tx.send(Cmd::AttachRemote(Box::new(link)));
                }
            }
        }
        let topic = Topic::new(&rec, resolved, current.partitions.clone());
        self.topics.insert(rec, topic)?;
        // A new leaders preference reaches the replicas now rather than at the next pass.
        crate::broker::leader_preference::refresh(self);
        Ok(())
    }

    /// Refuses `remote.storage.enable` where tiered storage cannot work (a cluster without a
    /// shared object store).
    fn check_tiering(
        &self,
        resolved: &crate::config::ResolvedTopicConfig,
    ) -> Result<(), BrokerError> {
        match &self.config.tiering_refused {
            Some(why) if resolved.log.remote_storage => {
                Err(BrokerError::InvalidConfig(InvalidConfig(why.clone())))
            }
            _ => Ok(()),
        }
    }

    /// A single broker's local step is refused in a cluster, where the same change goes
    /// through the controller (a cluster's unmount and mount: `tiering::cluster_mount`).
    pub(crate) fn single_node_only(&self, what: &str) -> Result<(), BrokerError> {
        match self.cluster.as_ref() {
            Some(_) => Err(BrokerError::Controller(format!(
                "{what} this way is for a single broker; a cluster does it through its controller"
            ))),
            None => Ok(()),
        }
    }

    pub(crate) fn update_gauges(&self) {
        let all = self.topics.all();
        self.metrics.topics.set(all.len() as i64);
        self.metrics
            .partitions
            .set(all.iter().map(|t| t.partitions.len() as i64).sum());
    }
}

/// Whether broker `me` holds a replica a reassignment to `target` adds to `assigned`.
pub(crate) fn adding_replica(target: Option<&Vec<i32>>, assigned: &[i32], me: i32) -> bool {
    target.is_some_and(|t| t.contains(&me)) && !assigned.contains(&me)
}

/// A config change the topic's data cannot follow is refused.
fn check_config_change(
    name: &str,
    current: &crate::config::ResolvedTopicConfig,
    next: &crate::config::ResolvedTopicConfig,
) -> Result<(), BrokerError> {
    if current.log.remote_storage && !next.log.remote_storage {
        return Err(BrokerError::InvalidConfig(InvalidConfig(format!(
            "topic '{name}' has remote storage on; turning it off is not supported (its old offsets live only in object storage)"
        ))));
    }
    Ok(())
}

/// The brokers new replicas of `replication` may go to, with their racks: draining brokers are
/// left out, and dead ones too when enough are alive.
fn placeable(
    c: &crate::cluster::Cluster,
    replication: i16,
) -> Result<Vec<(i32, Option<String>)>, BrokerError> {
    let brokers: Vec<(i32, Option<String>)> = c
        .brokers_for_new_topic(replication)
        .into_iter()
        .map(|id| (id, c.members.get(id).and_then(|m| m.rack)))
        .collect();
    if replication < 1 || replication as usize > brokers.len() {
        return Err(BrokerError::InvalidReplicationFactor(
            replication,
            brokers.len(),
        ));
    }
    Ok(brokers)
}
