//! `icestream serve`: flags, `ICESTREAM_*` variables and the config file, then the broker.
//!
//! Most of its length is the flag catalogue (one documented `#[arg]` per setting) and its
//! conversion into `BrokerConfig`; the cluster settings' checks live in `cluster_args.rs`, and
//! splitting the flags from the start-up would be the next cut once it grows further.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, CommandFactory};
use engine::config::validate_entry;
use engine::{BrokerConfig, ClusterDefaults, IoBackend};

/// Every setting has a flag, an `ICESTREAM_<NAME>` variable and a config-file key `<name>`
/// (the flag without its dashes). Precedence: flag, then variable, then file, then default.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// TOML config file whose keys are these flags' names (e.g. `kafka-addr = "0.0.0.0:9092"`)
    #[arg(long, env = "ICESTREAM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where logs, metadata and (by default) tiered objects live
    #[arg(long, env = "ICESTREAM_DATA_DIR", default_value = "./icestream-data")]
    pub data_dir: PathBuf,
    /// Kafka listener
    #[arg(long, env = "ICESTREAM_KAFKA_ADDR", default_value = "127.0.0.1:9092")]
    pub kafka_addr: SocketAddr,
    /// host:port clients are told to connect to (defaults to the Kafka listener)
    #[arg(long, env = "ICESTREAM_ADVERTISED_KAFKA_ADDR")]
    pub advertised_kafka_addr: Option<String>,
    /// Admin HTTP API: /v1/status/ready, /v1/cluster, /metrics
    #[arg(long, env = "ICESTREAM_ADMIN_ADDR", default_value = "127.0.0.1:9644")]
    pub admin_addr: SocketAddr,
    /// Confluent-compatible schema registry REST API (Avro)
    #[arg(
        long,
        env = "ICESTREAM_SCHEMA_REGISTRY_ADDR",
        default_value = "127.0.0.1:8081"
    )]
    pub schema_registry_addr: SocketAddr,
    /// Built-in Iceberg REST catalog (tables under warehouse/ of the object store)
    #[arg(
        long,
        env = "ICESTREAM_ICEBERG_CATALOG_ADDR",
        default_value = "127.0.0.1:8181"
    )]
    pub iceberg_catalog_addr: SocketAddr,
    #[command(flatten)]
    pub listener: crate::listener_args::ListenerArgs,
    #[command(flatten)]
    pub iceberg: crate::iceberg_args::IcebergArgs,
    /// Shards (threads that own partitions); default one per core
    #[arg(long, env = "ICESTREAM_SMP")]
    pub smp: Option<usize>,
    /// This broker's id
    #[arg(long, env = "ICESTREAM_NODE_ID", default_value_t = 0)]
    pub node_id: i32,
    /// Cluster id for a new data directory (default: a random UUID; with --seeds, one derived
    /// from the seed list so that every broker agrees)
    #[arg(long, env = "ICESTREAM_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// The founding brokers' RPC host:port, comma-separated (the same list on every broker; a
    /// broker whose own address is not in it joins the cluster later); without it the broker
    /// runs alone
    #[arg(long, env = "ICESTREAM_SEEDS", value_delimiter = ',')]
    pub seeds: Vec<String>,
    /// Extra host names under which browsers reach the web console (/console) and may send
    /// mutating admin requests; IP addresses, localhost and the advertised host always can
    #[arg(long, env = "ICESTREAM_CONSOLE_HOST", value_delimiter = ',')]
    pub console_host: Vec<String>,
    /// Kafka Connect REST APIs the web console shows, as name=http://host:port (comma-separated)
    #[arg(long, env = "ICESTREAM_CONNECT_URL", value_delimiter = ',')]
    pub connect_url: Vec<String>,
    /// Internal RPC listener between brokers (with --seeds)
    #[arg(long, env = "ICESTREAM_RPC_ADDR", default_value = "127.0.0.1:9645")]
    pub rpc_addr: SocketAddr,
    /// host:port other brokers use to reach this one's RPC listener (defaults to --rpc-addr)
    #[arg(long, env = "ICESTREAM_ADVERTISED_RPC_ADDR")]
    pub advertised_rpc_addr: Option<String>,
    /// This broker's rack (Kafka's broker.rack): placement spreads replicas over racks, and
    /// consumers giving client.rack read from a replica in their rack (with --seeds)
    #[arg(long, env = "ICESTREAM_RACK")]
    pub rack: Option<String>,
    /// Which replica consumers read from (Kafka's replica.selector.class): rack-aware (or
    /// org.apache.kafka.common.replica.RackAwareReplicaSelector) sends a consumer that gives
    /// client.rack to a caught-up replica in its rack; leader (or ...LeaderSelector) never does
    #[arg(long, env = "ICESTREAM_REPLICA_SELECTOR", default_value = "rack-aware")]
    pub replica_selector: String,
    /// A follower not caught up with its partition's leader for this long leaves the ISR
    /// (Kafka's replica.lag.time.max.ms)
    #[arg(
        long,
        env = "ICESTREAM_REPLICA_LAG_TIME_MAX_MS",
        default_value_t = 30000
    )]
    pub replica_lag_time_max_ms: u64,
    /// Size at which a partition replica's Raft log starts a new file; files wholly before the
    /// replica's checkpoint (what its segments hold, synced) are deleted
    #[arg(long, env = "ICESTREAM_RAFT_LOG_FILE_BYTES", default_value_t = 32 << 20)]
    pub raft_log_file_bytes: u64,
    /// Controller log entries applied between two checkpoints of the cluster metadata; its
    /// Raft log files wholly before the last checkpoint are deleted (files are at most 1 MiB,
    /// or --raft-log-file-bytes if smaller)
    #[arg(
        long,
        env = "ICESTREAM_CONTROLLER_SNAPSHOT_ENTRIES",
        default_value_t = 1024
    )]
    pub controller_snapshot_entries: u64,
    /// In a cluster, how long a broker stopping on SIGTERM waits for the partition and
    /// controller leaderships it hands to other brokers before it stops anyway (controlled
    /// shutdown)
    #[arg(
        long,
        env = "ICESTREAM_CONTROLLED_SHUTDOWN_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub controlled_shutdown_timeout_ms: u64,
    /// Controller voters the cluster keeps: brokers that join later are promoted from learner
    /// up to this many, and replace a decommissioned voter
    #[arg(long, env = "ICESTREAM_CONTROLLER_QUORUM_SIZE", default_value_t = 3)]
    pub controller_quorum_size: usize,
    /// Disaster recovery when a majority of the controller's voters is lost for good: this
    /// broker re-forms the controller group alone from its own log (see docs "Controller quorum
    /// loss"); give it once, on one surviving broker
    #[arg(long, env = "ICESTREAM_RECOVER_CONTROLLER", default_value_t = false)]
    pub recover_controller: bool,
    /// With --recover-controller: take the cluster metadata from this backup file
    /// (`icestream cluster backup`) instead of this broker's controller log; topics the backup
    /// lacks are deleted on every broker
    #[arg(
        long,
        env = "ICESTREAM_RESTORE_METADATA",
        requires = "recover_controller"
    )]
    pub restore_metadata: Option<std::path::PathBuf>,
    /// Send the Raft heartbeats of all partitions bound for one broker as one frame per tick
    /// (false: one frame per message, as before; for comparison in benches/raft_heartbeats.py)
    #[arg(long, env = "ICESTREAM_RAFT_BATCH_HEARTBEATS", default_value_t = true, action = clap::ArgAction::Set)]
    pub raft_batch_heartbeats: bool,
    /// Connections the RPC listener accepts in all (with --seeds)
    #[arg(long, env = "ICESTREAM_RPC_MAX_CONNECTIONS", default_value_t = 1024)]
    pub rpc_max_connections: usize,
    /// RPC listener connections accepted from one IP (with --seeds)
    #[arg(
        long,
        env = "ICESTREAM_RPC_MAX_CONNECTIONS_PER_IP",
        default_value_t = 256
    )]
    pub rpc_max_connections_per_ip: usize,
    /// Frames queued for one peer broker before the oldest are dropped (heartbeats first)
    #[arg(long, env = "ICESTREAM_RPC_SEND_QUEUE_FRAMES", default_value_t = 4096)]
    pub rpc_send_queue_frames: usize,
    /// Bytes queued for one peer broker before the oldest frames are dropped
    #[arg(
        long,
        env = "ICESTREAM_RPC_SEND_QUEUE_BYTES",
        default_value_t = 67108864
    )]
    pub rpc_send_queue_bytes: usize,
    /// How appends are made durable: auto (an fdatasync per file through io_uring where the
    /// kernel allows it), io-uring, blocking (fdatasync on a thread pool), or syncfs (one
    /// syncfs(2) at a time per filesystem for every partition; the data directory should have
    /// its filesystem to itself)
    #[arg(long, env = "ICESTREAM_IO_BACKEND", default_value = "auto")]
    pub io_backend: IoBackend,
    /// Tests only: journal every file sync and directory change to DIR (outside the data
    /// directory) so that `icestream debug power-cut` can rewind the data directory to what a
    /// power cut would leave (see engine/src/log/power.rs)
    #[arg(long, hide = true, value_name = "DIR")]
    pub simulate_power_loss_dir: Option<PathBuf>,
    /// UNSAFE, tests only: acknowledge produce requests without syncing them, which loses
    /// acknowledged records on a power cut (proves the power-cut test can fail)
    #[arg(long, hide = true, default_value_t = false)]
    pub unsafe_skip_fsync_for_tests: bool,
    /// Tests only: while FILE exists, syncs of files under the path it holds fail with EIO
    /// (see engine/src/log/failpoint.rs)
    #[arg(long, hide = true, value_name = "FILE")]
    pub unsafe_fail_fsync_file_for_tests: Option<PathBuf>,
    /// Create topics on first use (Kafka's auto.create.topics.enable)
    #[arg(long, env = "ICESTREAM_AUTO_CREATE_TOPICS", default_value_t = false, action = clap::ArgAction::Set)]
    pub auto_create_topics: bool,
    /// Partitions of a topic created without a count
    #[arg(long, env = "ICESTREAM_DEFAULT_PARTITIONS", default_value_t = 1)]
    pub default_partitions: i32,
    /// Replication factor of a topic created without one
    #[arg(
        long,
        env = "ICESTREAM_DEFAULT_REPLICATION_FACTOR",
        default_value_t = 1
    )]
    pub default_replication_factor: i16,
    /// Default min.insync.replicas of a topic that sets none: replicas that must hold an
    /// acks=all write (give every broker of a cluster the same)
    #[arg(
        long,
        env = "ICESTREAM_DEFAULT_MIN_INSYNC_REPLICAS",
        default_value_t = 1
    )]
    pub default_min_insync_replicas: i32,
    /// Default write.caching: acknowledge acks=1/all from memory and flush within flush-ms
    #[arg(long, env = "ICESTREAM_WRITE_CACHING", default_value_t = false, action = clap::ArgAction::Set)]
    pub write_caching: bool,
    /// Default flush.ms (with write caching)
    #[arg(long, env = "ICESTREAM_FLUSH_MS", default_value_t = 100)]
    pub flush_ms: i64,
    /// Default flush.bytes (with write caching)
    #[arg(long, env = "ICESTREAM_FLUSH_BYTES", default_value_t = 262144)]
    pub flush_bytes: i64,
    /// Default segment.bytes
    #[arg(long, env = "ICESTREAM_SEGMENT_BYTES", default_value_t = 134217728)]
    pub segment_bytes: i64,
    /// Default segment.ms
    #[arg(long, env = "ICESTREAM_SEGMENT_MS", default_value_t = 604800000)]
    pub segment_ms: i64,
    /// Default retention.ms (-1: forever)
    #[arg(
        long,
        env = "ICESTREAM_RETENTION_MS",
        default_value_t = 604800000,
        allow_negative_numbers = true
    )]
    pub retention_ms: i64,
    /// Default retention.bytes (-1: no limit)
    #[arg(long, env = "ICESTREAM_RETENTION_BYTES", default_value_t = -1, allow_negative_numbers = true)]
    pub retention_bytes: i64,
    /// Default max.message.bytes: the largest record batch accepted
    #[arg(long, env = "ICESTREAM_MAX_MESSAGE_BYTES", default_value_t = 1048576)]
    pub max_message_bytes: i64,
    /// Default message.timestamp.type: CreateTime or LogAppendTime
    #[arg(
        long,
        env = "ICESTREAM_MESSAGE_TIMESTAMP_TYPE",
        default_value = "CreateTime"
    )]
    pub message_timestamp_type: String,
    /// How often each partition applies retention (Kafka's log.retention.check.interval.ms)
    #[arg(
        long,
        env = "ICESTREAM_RETENTION_CHECK_INTERVAL_MS",
        default_value_t = 10000
    )]
    pub retention_check_interval_ms: u64,
    /// Idle time after which partitions forget an idempotent producer (producer.id.expiration.ms)
    #[arg(
        long,
        env = "ICESTREAM_PRODUCER_ID_EXPIRATION_MS",
        default_value_t = 86400000
    )]
    pub producer_id_expiration_ms: i64,
    /// Largest request frame accepted (Kafka's socket.request.max.bytes)
    #[arg(long, env = "ICESTREAM_MAX_REQUEST_BYTES", default_value_t = 104857600)]
    pub max_request_bytes: usize,
    /// In a cluster, the partitions of __consumer_offsets when the cluster first creates it
    /// (Kafka's offsets.topic.num.partitions); fixed from then on, a later value is ignored
    #[arg(long, env = "ICESTREAM_OFFSETS_TOPIC_PARTITIONS", default_value_t = 6)]
    pub offsets_topic_partitions: i32,
    /// Committed offsets of a consumer group expire once it has had no members for this long
    /// (of a group that never had members: once they are this old); Kafka's
    /// offsets.retention.minutes, in milliseconds
    #[arg(long, env = "ICESTREAM_OFFSETS_RETENTION_MS", default_value_t = 7 * 24 * 3600 * 1000)]
    pub offsets_retention_ms: i64,
    /// How often expired committed offsets are looked for (offsets.retention.check.interval.ms)
    #[arg(
        long,
        env = "ICESTREAM_OFFSETS_RETENTION_CHECK_INTERVAL_MS",
        default_value_t = 600_000
    )]
    pub offsets_retention_check_interval_ms: u64,
    /// The longest transaction.timeout.ms a transactional producer may ask for; longer ones
    /// get INVALID_TRANSACTION_TIMEOUT (Kafka's transaction.max.timeout.ms)
    #[arg(
        long,
        env = "ICESTREAM_TRANSACTION_MAX_TIMEOUT_MS",
        default_value_t = 900_000
    )]
    pub transaction_max_timeout_ms: i32,
    /// Incremental fetch sessions kept at once
    #[arg(long, env = "ICESTREAM_FETCH_SESSION_SLOTS", default_value_t = 1000)]
    pub fetch_session_slots: usize,
    /// Connections the Kafka listener accepts in all; more are closed at once
    #[arg(long, env = "ICESTREAM_KAFKA_MAX_CONNECTIONS", default_value_t = 10000)]
    pub kafka_max_connections: usize,
    /// Kafka listener connections accepted from one client IP (Kafka's max.connections.per.ip)
    #[arg(
        long,
        env = "ICESTREAM_KAFKA_MAX_CONNECTIONS_PER_IP",
        default_value_t = 1000
    )]
    pub kafka_max_connections_per_ip: usize,
    /// Bytes of Fetch responses one connection holds at once (being read or not yet written);
    /// a fetch asking for more is served this much
    #[arg(
        long,
        env = "ICESTREAM_FETCH_MEMORY_BYTES_PER_CONNECTION",
        default_value_t = 67108864
    )]
    pub fetch_memory_bytes_per_connection: usize,
    /// Bytes of Fetch responses all connections hold at once; fetches wait for room
    #[arg(
        long,
        env = "ICESTREAM_FETCH_MEMORY_BYTES",
        default_value_t = 536870912
    )]
    pub fetch_memory_bytes: usize,
    /// A Kafka connection whose client takes no bytes of a response for this long is closed,
    /// freeing the fetch memory its responses hold
    #[arg(
        long,
        env = "ICESTREAM_KAFKA_WRITE_STALL_TIMEOUT_MS",
        default_value_t = 60000
    )]
    pub kafka_write_stall_timeout_ms: u64,
    /// Produce is refused (KAFKA_STORAGE_ERROR, which clients retry) while the data
    /// directory's volume has less free space than this; reads, replication and retention go
    /// on, and produce resumes by itself once space frees [default: 5% of the volume, at most
    /// 1 GiB]
    #[arg(long, env = "ICESTREAM_STORAGE_MIN_FREE_BYTES")]
    pub storage_min_free_bytes: Option<u64>,
    /// Connections each HTTP listener (admin API, schema registry, Iceberg catalog) accepts
    #[arg(long, env = "ICESTREAM_HTTP_MAX_CONNECTIONS", default_value_t = 1024)]
    pub http_max_connections: usize,
    /// Connections each HTTP listener accepts from one client IP
    #[arg(
        long,
        env = "ICESTREAM_HTTP_MAX_CONNECTIONS_PER_IP",
        default_value_t = 256
    )]
    pub http_max_connections_per_ip: usize,
    /// An HTTP connection whose request head is not complete this long after it was accepted
    /// (or after the request's first byte) is closed
    #[arg(
        long,
        env = "ICESTREAM_HTTP_HEADER_READ_TIMEOUT_MS",
        default_value_t = 10000
    )]
    pub http_header_read_timeout_ms: u64,
    /// A kept-alive HTTP connection with no request for this long is closed
    #[arg(long, env = "ICESTREAM_HTTP_IDLE_TIMEOUT_MS", default_value_t = 60000)]
    pub http_idle_timeout_ms: u64,
    /// An HTTP request (reading its body and handling it) taking longer is answered 408
    #[arg(
        long,
        env = "ICESTREAM_HTTP_REQUEST_TIMEOUT_MS",
        default_value_t = 300000
    )]
    pub http_request_timeout_ms: u64,
    #[command(flatten)]
    pub tiering: crate::tiering_args::TieringArgs,
    #[command(flatten)]
    pub security: crate::security_args::SecurityArgs,
    #[command(flatten)]
    pub http_auth: crate::security_args::HttpAuthArgs,
    #[command(flatten)]
    pub cluster_auth: crate::cluster_args::ClusterAuthArgs,
    #[command(flatten)]
    pub sasl: crate::sasl_args::SaslArgs,
    /// Log filter (tracing's EnvFilter syntax, e.g. info or engine=debug)
    #[arg(long, env = "ICESTREAM_LOG", default_value = "info")]
    pub log: String,
}

/// Turns config-file keys into flags, for keys neither given as a flag nor set in the
/// environment, so that clap applies every setting's precedence in one place.
pub fn args_with_config_file(args: Vec<String>) -> anyhow::Result<Vec<String>> {
    let Some(pos) = args.iter().position(|a| a == "serve") else {
        return Ok(args);
    };
    let flag_value = |name: &str| {
        args.iter().enumerate().find_map(|(i, a)| {
            a.strip_prefix(&format!("--{name}="))
                .map(str::to_string)
                .or_else(|| {
                    (a == &format!("--{name}"))
                        .then(|| args.get(i + 1).cloned())
                        .flatten()
                })
        })
    };
    let path = flag_value("config").or_else(|| std::env::var("ICESTREAM_CONFIG").ok());
    let Some(path) = path else { return Ok(args) };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read config file {path}"))?;
    let table: BTreeMap<String, toml::Value> =
        toml::from_str(&text).with_context(|| format!("config file {path} is not valid TOML"))?;
    let cmd = ServeCommand::command();
    let known: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    let mut injected = Vec::new();
    for (key, value) in table {
        if key == "config" || !known.contains(&key) {
            bail!("config file {path}: unknown key '{key}'; valid keys are the serve flags without dashes: {}", known.join(", "));
        }
        let env = format!("ICESTREAM_{}", key.to_uppercase().replace('-', "_"));
        if flag_value(&key).is_some() || std::env::var_os(&env).is_some() {
            continue;
        }
        let v = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => bail!(
                "config file {path}: key '{key}' must be a string, integer or boolean, not {}",
                other.type_str()
            ),
        };
        injected.push(format!("--{key}={v}"));
    }
    let mut out = args[..=pos].to_vec();
    out.extend(injected);
    out.extend_from_slice(&args[pos + 1..]);
    Ok(out)
}

/// Wraps the args so that `command()` lists the serve flags for config-file validation.
#[derive(clap::Parser)]
struct ServeCommand {
    #[command(flatten)]
    args: ServeArgs,
}

impl ServeArgs {
    pub fn broker_config(&self) -> anyhow::Result<BrokerConfig> {
        let mut defaults = ClusterDefaults {
            auto_create_topics: self.auto_create_topics,
            default_partitions: self.default_partitions,
            default_replication_factor: self.default_replication_factor,
            retention_check_interval_ms: self.retention_check_interval_ms,
            producer_id_expiration_ms: self.producer_id_expiration_ms,
            ..ClusterDefaults::default()
        };
        if !(1..=100_000).contains(&self.default_partitions) {
            bail!(
                "--default-partitions must be between 1 and 100000, got {}",
                self.default_partitions
            );
        }
        if self.default_replication_factor != 1 && self.seeds.is_empty() {
            bail!(
                "--default-replication-factor must be 1 on a single-broker cluster, got {}",
                self.default_replication_factor
            );
        }
        let topic_defaults = [
            (
                "write.caching",
                self.write_caching.to_string(),
                "write-caching",
            ),
            ("flush.ms", self.flush_ms.to_string(), "flush-ms"),
            ("flush.bytes", self.flush_bytes.to_string(), "flush-bytes"),
            (
                "segment.bytes",
                self.segment_bytes.to_string(),
                "segment-bytes",
            ),
            ("segment.ms", self.segment_ms.to_string(), "segment-ms"),
            (
                "retention.ms",
                self.retention_ms.to_string(),
                "retention-ms",
            ),
            (
                "retention.bytes",
                self.retention_bytes.to_string(),
                "retention-bytes",
            ),
            (
                "max.message.bytes",
                self.max_message_bytes.to_string(),
                "max-message-bytes",
            ),
            (
                "message.timestamp.type",
                self.message_timestamp_type.clone(),
                "message-timestamp-type",
            ),
            (
                "remote.storage.enable",
                self.tiering.remote_storage_default.to_string(),
                "remote-storage-default",
            ),
            (
                "min.insync.replicas",
                self.default_min_insync_replicas.to_string(),
                "default-min-insync-replicas",
            ),
        ];
        for (key, value, flag) in topic_defaults {
            validate_entry(key, &value).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))?;
            if let Some(slot) = defaults.topic.get_mut(key) {
                *slot = value;
            }
        }
        let listeners = self
            .listener
            .kafka_listeners(self.kafka_addr, self.advertised_kafka_addr.as_deref())?;
        let tls = self
            .listener
            .tls_settings(&listeners, !self.seeds.is_empty())?;
        let smp = self
            .smp
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if smp == 0 || smp > 1024 {
            bail!("--smp must be between 1 and 1024, got {smp}");
        }
        if let (false, true, Some(why)) = (
            self.seeds.is_empty(),
            self.tiering.remote_storage_default,
            self.tiering.unshared_in_cluster(),
        ) {
            bail!("--remote-storage-default true: {why}");
        }
        Ok(BrokerConfig {
            node_id: self.node_id,
            offsets_topic_partitions: Some(
                (1..=1000)
                    .contains(&self.offsets_topic_partitions)
                    .then_some(self.offsets_topic_partitions)
                    .ok_or_else(|| {
                        anyhow::anyhow!("--offsets-topic-partitions must be between 1 and 1000")
                    })?,
            ),
            transaction_max_timeout_ms: match self.transaction_max_timeout_ms {
                ms if ms >= 1 => ms,
                _ => bail!("--transaction-max-timeout-ms must be at least 1"),
            },
            offsets_retention: engine::group::OffsetsRetention {
                retention_ms: positive_i64("offsets-retention-ms", self.offsets_retention_ms)?,
                check_interval: std::time::Duration::from_millis(
                    self.offsets_retention_check_interval_ms.max(1),
                ),
            },
            tiering_refused: match self.seeds.is_empty() {
                true => None,
                false => self.tiering.unshared_in_cluster(),
            },
            data_dir: self.data_dir.clone(),
            kafka_addr: listeners[0].addr,
            advertised_kafka_addr: listeners[0].advertised.clone(),
            listeners,
            tls,
            rpc_tls: self.listener.rpc_tls,
            admin_addr: self.admin_addr,
            authz: self.security.authz_config()?,
            cluster_secret: self.cluster_auth.secret()?,
            bootstrap_user: crate::security_args::SecurityArgs::bootstrap_user()?,
            sasl: self.sasl.sasl_config()?,
            smp,
            cluster_id: self.cluster_id.clone().or_else(|| self.seed_cluster_id()),
            max_request_bytes: self.max_request_bytes,
            fetch_session_slots: self.fetch_session_slots,
            kafka_connections: limits(
                "kafka",
                self.kafka_max_connections,
                self.kafka_max_connections_per_ip,
            )?,
            fetch_memory: engine::limits::fetch_memory::FetchMemoryLimits {
                per_connection: positive(
                    "fetch-memory-bytes-per-connection",
                    self.fetch_memory_bytes_per_connection,
                )?,
                per_broker: positive("fetch-memory-bytes", self.fetch_memory_bytes)?,
            },
            write_stall_timeout: std::time::Duration::from_millis(positive(
                "kafka-write-stall-timeout-ms",
                self.kafka_write_stall_timeout_ms as usize,
            )? as u64),
            storage_min_free_bytes: self.storage_min_free_bytes,
            defaults,
        })
    }

    /// Limits and timers of the HTTP listeners.
    pub fn http_limits(&self) -> anyhow::Result<engine::http::HttpLimits> {
        let ms = |flag: &str, v: u64| {
            positive(flag, v as usize).map(|_| std::time::Duration::from_millis(v))
        };
        Ok(engine::http::HttpLimits {
            connections: limits(
                "http",
                self.http_max_connections,
                self.http_max_connections_per_ip,
            )?,
            header_read_timeout: ms(
                "http-header-read-timeout-ms",
                self.http_header_read_timeout_ms,
            )?,
            idle_timeout: ms("http-idle-timeout-ms", self.http_idle_timeout_ms)?,
            request_timeout: ms("http-request-timeout-ms", self.http_request_timeout_ms)?,
        })
    }
}

fn positive_i64(flag: &str, v: i64) -> anyhow::Result<i64> {
    if v <= 0 {
        bail!("--{flag} must be positive");
    }
    Ok(v)
}

pub(crate) fn positive(flag: &str, v: usize) -> anyhow::Result<usize> {
    if v == 0 {
        bail!("--{flag} must be positive");
    }
    Ok(v)
}

/// A listener's connection limits from its `--<name>-max-connections[-per-ip]` flags.
pub(crate) fn limits(
    name: &str,
    total: usize,
    per_ip: usize,
) -> anyhow::Result<engine::limits::connections::ConnLimits> {
    Ok(engine::limits::connections::ConnLimits {
        max_total: positive(&format!("{name}-max-connections"), total)?,
        max_per_ip: positive(&format!("{name}-max-connections-per-ip"), per_ip)?,
    })
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.simulate_power_loss_dir {
        engine::log::power::enable(dir)
            .with_context(|| format!("cannot open the power-loss ledger in {}", dir.display()))?;
        tracing::warn!(ledger = %dir.display(), "test mode: recording syncs for simulated power loss");
    }
    if let Some(file) = &args.unsafe_fail_fsync_file_for_tests {
        engine::log::failpoint::enable(file.clone())?;
        tracing::warn!(trigger = %file.display(), "test mode: fsyncs fail while the trigger file names their path");
    }
    if args.unsafe_skip_fsync_for_tests {
        engine::log::power::set_skip_fsync(true);
        tracing::warn!("UNSAFE test mode: acknowledging produce requests without fdatasync");
    }
    let config = args.broker_config()?;
    if let Some(why) = &config.tiering_refused {
        tracing::warn!("topics with remote.storage.enable are refused: {why}");
    }
    let http_limits = args.http_limits()?;
    args.http_auth.check(&config, !args.seeds.is_empty())?;
    crate::listener_args::warn_unauthenticated(
        &config.listeners,
        config.tls.as_ref(),
        &[
            ("admin", config.admin_addr),
            ("schema_registry", args.schema_registry_addr),
            ("iceberg_catalog", args.iceberg_catalog_addr),
        ],
        // Client certificates required over https authenticate every HTTP client too.
        args.http_auth.required(config.authz.enabled)
            || (args.listener.http_tls
                && config
                    .tls
                    .as_ref()
                    .is_some_and(|t| t.client_auth == engine::security::tls::ClientAuth::Required)),
    );
    let admin_addr = config.admin_addr;
    let admin = tokio::net::TcpListener::bind(admin_addr)
        .await
        .with_context(|| format!("cannot listen on admin address {admin_addr}: is another broker running? set --admin-addr"))?;
    let sr_addr = args.schema_registry_addr;
    let schema_registry = tokio::net::TcpListener::bind(sr_addr)
        .await
        .with_context(|| format!("cannot listen on schema registry address {sr_addr}: is another broker or registry running? set --schema-registry-addr"))?;
    let tiering_config = args.tiering.tiering_config(&config.data_dir)?;
    // Checked before anything reaches the object store, so bad flags fail fast.
    let s3_region = (args.tiering.object_store == "s3").then_some(args.tiering.s3_region.as_str());
    let vendor = args.iceberg.credential_vendor(s3_region).await?;
    let store_desc = describe_store(&tiering_config.store);
    let tier = tiering::Tiering::start(tiering_config)
        .map_err(|e| anyhow::anyhow!("cannot start tiered storage ({store_desc}): {e}"))?;
    let ic_addr = args.iceberg_catalog_addr;
    let iceberg_catalog = tokio::net::TcpListener::bind(ic_addr)
        .await
        .with_context(|| format!("cannot listen on Iceberg catalog address {ic_addr}: is another broker or catalog running? set --iceberg-catalog-addr"))?;
    let catalog = crate::lake_catalog::open(&args.tiering, &config.data_dir).await?;
    // One catalog for the cluster when every broker is on one store; otherwise each broker
    // keeps its own, holding the partitions it replicates.
    let clustered = !args.seeds.is_empty();
    let shared_lake = clustered && args.tiering.unshared_in_cluster().is_none();
    if clustered && !shared_lake && args.iceberg.iceberg_catalog_uri.is_none() {
        tracing::warn!(
            "each broker serves its own Iceberg catalog over its own <data-dir>/objects, with \
             the partitions it replicates: for one catalog (one table per topic) across the \
             cluster, start every broker with --object-store s3 (same bucket and prefix) or \
             with --object-store-dir on a directory all of them mount"
        );
    }
    if let Some(vendor) = vendor {
        catalog.enable_vending(vendor);
    }
    let cluster = args.cluster_config(config.cluster_secret.clone())?;
    let broker = engine::net::start_broker(config, args.io_backend, Some(tier.clone()), cluster)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    broker.metrics.register_with(|r| tier.register_metrics(r));
    if let (true, Some(tls)) = (args.listener.http_tls, &broker.tls) {
        engine::http::set_tls(tls.http.clone());
    }
    if let (true, Some(settings), Some(_)) =
        (args.listener.http_tls, &broker.config.tls, &broker.cluster)
    {
        // Brokers call each other's registry and catalog over https too.
        let peer = engine::http::peer_client_config(settings)
            .context("cannot set up https calls to the other brokers (--http-tls)")?;
        engine::http::set_peer_tls(std::sync::Arc::new(peer));
    }
    let http_auth = args.http_auth.start(&broker)?;
    let mounts = tiering::mount::Mounts::new(broker.clone(), tier.clone());
    mounts.spawn_cluster_driver();
    let registry = schema_registry::Registry::open(broker.clone(), broker.cluster.clone())
        .await
        .context("cannot rebuild the schema registry from _schemas")?;
    // Produce-time schema id validation (confluent.value.schema.validation) asks the registry.
    let _ = broker.schema_ids.set(registry.clone());
    if let Some(c) = &broker.cluster {
        // Other brokers' registries forward writes here while this broker leads `_schemas`.
        c.members
            .set_schema_registry_url(service_url(schema_registry.local_addr()?, &broker));
        // Other brokers' translators hand rounds to this broker's Iceberg committer there
        // while it leads a topic's partition 0.
        c.members
            .set_iceberg_catalog_url(service_url(iceberg_catalog.local_addr()?, &broker));
    }
    let (lake, lake_name) = args.iceberg.lake_catalog(catalog.clone()).await?;
    let translator = iceberg_sink::Translator::new(
        broker.clone(),
        lake,
        lake_name,
        Some(std::sync::Arc::new(crate::schema_source::RegistrySchemas(
            registry.clone(),
        ))),
        args.iceberg.translator_config(shared_lake),
    );
    broker
        .metrics
        .register_with(|r| translator.metrics().register(r));
    let _ = broker.unmount_gate.set(translator.clone());
    // Translation rounds are CPU-bound (decoding, Arrow, Parquet): they run on a thread of
    // their own, so the HTTP listeners on this runtime (admin API, registry, catalog, the
    // committer's route) keep answering during a round; sharing it, the catalog stalled for
    // seconds during a backfill (benches/README.md, "Iceberg translation on a real data set").
    let translator_rt = translator_runtime()?;
    let translator_task = {
        let _on = translator_rt.enter();
        translator.start()
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        kafka = %broker.kafka_addr,
        listeners = %broker.config.listeners.iter().map(|l| format!("{}://{} ({})", l.name, l.addr, l.protocol)).collect::<Vec<_>>().join(","),
        advertised = %format!("{}:{}", broker.advertised.0, broker.advertised.1),
        admin = %admin.local_addr()?,
        schema_registry = %schema_registry.local_addr()?,
        iceberg_catalog = %iceberg_catalog.local_addr()?,
        shards = broker.shards.len(),
        segment_io = %broker.shards.io_backend,
        data_dir = %broker.config.data_dir.display(),
        object_store = %store_desc,
        cluster_id = %broker.topics.cluster_id,
        rpc = %broker.cluster.as_ref().map_or("-".to_string(), |c| c.members.me().rpc_addr.clone()),
        "icestream is ready"
    );
    let admin_local = admin.local_addr()?;
    let mut console_hosts = args.console_host.clone();
    console_hosts.push(broker.advertised.0.clone());
    engine::admin::set_console_hosts(console_hosts);
    let http = if args.listener.http_tls {
        "https"
    } else {
        "http"
    };
    let loopback = |a: std::net::SocketAddr| {
        if a.ip().is_unspecified() {
            format!("127.0.0.1:{}", a.port())
        } else {
            a.to_string()
        }
    };
    let console = std::sync::Arc::new(crate::console::Console {
        kafka: crate::console_client::ConsoleKafka::new(
            &broker,
            format!("{http}://{}", loopback(admin_local)),
            format!("{http}://{}", loopback(schema_registry.local_addr()?)),
        ),
        registry: registry.clone(),
        connect: args
            .connect_url
            .iter()
            .map(|c| match c.split_once('=') {
                Some((n, u)) => Ok((n.trim().to_string(), u.trim().to_string())),
                None => Err(anyhow::anyhow!(
                    "invalid --connect-url '{c}': use name=http://host:port"
                )),
            })
            .collect::<anyhow::Result<_>>()?,
    });
    let admin_task = tokio::spawn(engine::admin::serve_with(
        admin,
        broker.clone(),
        mounts
            .routes()
            .merge(translator.routes())
            .merge(crate::console::routes(console))
            .layer(axum::middleware::from_fn(engine::admin::browser_guard)),
        http_auth.clone(),
        http_limits,
    ));
    let registry_task = tokio::spawn(schema_registry::serve(
        schema_registry,
        registry,
        http_auth.clone(),
        http_limits,
        engine::http::limiter("schema_registry", &http_limits, &broker.metrics),
    ));
    let catalog_task = tokio::spawn(iceberg_sink::catalog::serve(
        iceberg_catalog,
        catalog,
        translator.committer_routes(),
        http_auth,
        http_limits,
        engine::http::limiter("iceberg_catalog", &http_limits, &broker.metrics),
    ));
    shutdown_signal().await;
    tracing::info!("shutting down: flushing partitions");
    admin_task.abort();
    registry_task.abort();
    catalog_task.abort();
    translator_task.abort();
    broker.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// The URL other brokers reach a listener of this broker at: its advertised host when it
/// listens on every address; https under `--http-tls` (the host must then be one the
/// certificate names).
fn service_url(local: std::net::SocketAddr, broker: &engine::Broker) -> String {
    let scheme = engine::http::scheme();
    let host = if local.ip().is_unspecified() {
        broker.advertised.0.clone()
    } else {
        local.ip().to_string()
    };
    match host.parse::<std::net::Ipv6Addr>() {
        Ok(_) => format!("{scheme}://[{host}]:{}", local.port()),
        Err(_) => format!("{scheme}://{host}:{}", local.port()),
    }
}

fn describe_store(store: &tiering::StoreConfig) -> String {
    match store {
        tiering::StoreConfig::Local { root } => format!("local {}", root.display()),
        tiering::StoreConfig::S3 {
            bucket,
            prefix,
            endpoint,
            ..
        } => format!(
            "s3://{bucket}/{prefix} at {}",
            endpoint.as_deref().unwrap_or("AWS")
        ),
    }
}

/// A single-threaded runtime on a thread of its own (`iceberg-translator`) that lives as long
/// as the process.
fn translator_runtime() -> anyhow::Result<tokio::runtime::Handle> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the Iceberg translator's runtime")?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name("iceberg-translator".into())
        .spawn(move || rt.block_on(std::future::pending::<()>()))
        .context("cannot start the Iceberg translator's thread")?;
    Ok(handle)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
