//! Broker settings and per-topic configs with Kafka's names, validated in one table.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::log::LogConfig;

/// Everything the engine needs to run one broker. The binary fills it from flags,
/// `ICESTREAM_*` variables and the config file.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: i32,
    /// Why topics may not use tiered storage here (`remote.storage.enable` refused): a
    /// cluster whose object store is each broker's own directory.
    pub tiering_refused: Option<String>,
    /// `__consumer_offsets`' partitions when a cluster creates it (`offsets.topic.num.partitions`);
    /// `None`: 6. Fixed once the topic exists.
    pub offsets_topic_partitions: Option<i32>,
    /// Committed offsets of groups without members expire (`offsets.retention.minutes`).
    pub offsets_retention: OffsetsRetention,
    /// The longest `transaction.timeout.ms` a transactional producer may ask for
    /// (`transaction.max.timeout.ms`).
    pub transaction_max_timeout_ms: i32,
    pub data_dir: PathBuf,
    pub kafka_addr: SocketAddr,
    /// `host:port` clients are told to connect to.
    pub advertised_kafka_addr: (String, u16),
    /// The Kafka listeners (Kafka's `listeners` with `advertised.listeners`); empty: one
    /// PLAINTEXT listener on `kafka_addr`, advertised as `advertised_kafka_addr` (see
    /// [`BrokerConfig::kafka_listeners`]). Once bound, the first is `kafka_addr`.
    pub listeners: Vec<KafkaListener>,
    /// The certificate, key and client-certificate policy of the SSL and SASL_SSL listeners.
    pub tls: Option<crate::security::tls::TlsSettings>,
    /// `--rpc-tls`: the inter-broker RPC is mutual TLS with `tls`'s certificate and CA file.
    pub rpc_tls: bool,
    pub admin_addr: SocketAddr,
    /// Whether requests are authorized against ACLs, and the superusers.
    pub authz: crate::security::AuthzConfig,
    /// The shared secret brokers of a cluster prove to each other (`--cluster-secret-file`);
    /// `None`: inter-broker traffic is not authenticated.
    pub cluster_secret: Option<std::sync::Arc<[u8]>>,
    /// A user created at start when absent (`ICESTREAM_BOOTSTRAP_USER`).
    pub bootstrap_user: Option<crate::security::BootstrapUser>,
    /// The SASL mechanisms SASL listeners offer, and what they check against.
    pub sasl: std::sync::Arc<crate::security::sasl::SaslConfig>,
    pub smp: usize,
    pub cluster_id: Option<String>,
    /// Largest request frame accepted (Kafka's `socket.request.max.bytes`).
    pub max_request_bytes: usize,
    /// Incremental fetch sessions kept at once (Kafka's `max.incremental.fetch.session.cache.slots`).
    pub fetch_session_slots: usize,
    /// Connections the Kafka listener accepts, in total and per client IP.
    pub kafka_connections: crate::limits::connections::ConnLimits,
    /// Bytes of Fetch responses held per connection and per broker.
    pub fetch_memory: crate::limits::fetch_memory::FetchMemoryLimits,
    /// A Kafka connection whose peer accepts no response bytes for this long is closed.
    pub write_stall_timeout: std::time::Duration,
    /// Produce is refused while the data volume has less free space (`None`: 5% of the
    /// volume, at most 1 GiB); see [`crate::disk_space`].
    pub storage_min_free_bytes: Option<u64>,
    pub defaults: ClusterDefaults,
}

/// How a Kafka listener's clients connect (Kafka's `security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub const ALL: [SecurityProtocol; 4] = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ];

    /// Kafka's name for it: `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Parses Kafka's name, in any case.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether connections are TLS (SSL, SASL_SSL).
    pub fn is_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether clients authenticate with SASL (SASL_PLAINTEXT, SASL_SSL).
    pub fn is_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl std::fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One Kafka listener: its name (what `Session::listener` and the advertised addresses are
/// keyed by), its security protocol, where it binds and what clients are told to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaListener {
    pub name: std::sync::Arc<str>,
    pub protocol: SecurityProtocol,
    pub addr: SocketAddr,
    /// `host:port` announced in Metadata, FindCoordinator and DescribeCluster to clients of
    /// this listener; port 0: the port bound.
    pub advertised: (String, u16),
}

impl BrokerConfig {
    /// The listeners to bind: `listeners`, or one PLAINTEXT listener on `kafka_addr`.
    pub fn kafka_listeners(&self) -> Vec<KafkaListener> {
        if !self.listeners.is_empty() {
            return self.listeners.clone();
        }
        vec![KafkaListener {
            name: std::sync::Arc::from(SecurityProtocol::Plaintext.name()),
            protocol: SecurityProtocol::Plaintext,
            addr: self.kafka_addr,
            advertised: self.advertised_kafka_addr.clone(),
        }]
    }
}

/// Kafka listener connections by default: 10,000 in all (each idle connection costs a few
/// KiB of buffers and a file descriptor) and 1,000 from one address (many clients behind one
/// NAT still fit; one misbehaving host cannot take every slot).
pub const KAFKA_CONNECTIONS: crate::limits::connections::ConnLimits =
    crate::limits::connections::ConnLimits {
        max_total: 10_000,
        max_per_ip: 1_000,
    };

/// Cluster-wide defaults operators set; topic configs override the last group.
#[derive(Debug, Clone)]
pub struct ClusterDefaults {
    pub auto_create_topics: bool,
    pub default_partitions: i32,
    pub default_replication_factor: i16,
    /// How often each partition applies retention (Kafka's `log.retention.check.interval.ms`).
    pub retention_check_interval_ms: u64,
    /// Idle time after which a partition forgets an idempotent producer's sequences (Kafka's
    /// `producer.id.expiration.ms`).
    pub producer_id_expiration_ms: i64,
    /// Defaults for each topic config key, as strings in Kafka's format.
    pub topic: BTreeMap<&'static str, String>,
}

impl Default for ClusterDefaults {
    fn default() -> Self {
        ClusterDefaults {
            auto_create_topics: false,
            default_partitions: 1,
            default_replication_factor: 1,
            retention_check_interval_ms: 10_000,
            producer_id_expiration_ms: 86_400_000,
            topic: all_configs()
                .map(|d| (d.name, d.default.to_string()))
                .collect(),
        }
    }
}

/// Kafka's `offsets.retention.minutes` and `offsets.retention.check.interval.ms`.
#[derive(Debug, Clone, Copy)]
pub struct OffsetsRetention {
    pub retention_ms: i64,
    pub check_interval: std::time::Duration,
}

impl Default for OffsetsRetention {
    fn default() -> Self {
        OffsetsRetention {
            retention_ms: 7 * 24 * 3600 * 1000,
            check_interval: std::time::Duration::from_secs(600),
        }
    }
}

impl BrokerConfig {
    /// A config for tests and benches: loopback, ephemeral ports, one shard.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        BrokerConfig {
            node_id: 0,
            tiering_refused: None,
            offsets_retention: Default::default(),
            offsets_topic_partitions: None,
            transaction_max_timeout_ms: crate::txn::MAX_TIMEOUT_MS,
            data_dir,
            kafka_addr: "127.0.0.1:0".parse().expect("static address"),
            advertised_kafka_addr: ("127.0.0.1".into(), 0),
            listeners: Vec::new(),
            tls: None,
            rpc_tls: false,
            admin_addr: "127.0.0.1:0".parse().expect("static address"),
            authz: Default::default(),
            cluster_secret: None,
            bootstrap_user: None,
            sasl: Default::default(),
            smp: 1,
            cluster_id: None,
            max_request_bytes: 100 << 20,
            fetch_session_slots: 1000,
            kafka_connections: KAFKA_CONNECTIONS,
            fetch_memory: Default::default(),
            write_stall_timeout: std::time::Duration::from_secs(60),
            storage_min_free_bytes: None,
            defaults: ClusterDefaults::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A 64-bit integer of at least `min`.
    Long(i64),
    /// A 32-bit integer of at least `min`.
    Int(i64),
    Bool,
    Choice(&'static [&'static str]),
    /// Free text, checked by the subsystem that reads it.
    Text,
    /// A 32-bit integer in `min..=max`, or one of the listed special values (Kafka's
    /// `compression.gzip.level` takes -1 besides 1..=9).
    IntIn(i64, i64, &'static [i64]),
    /// A floating-point number between 0 and 1 (Kafka's DOUBLE with `between(0, 1)`).
    Ratio,
    /// A comma-separated list, checked by the subsystem that reads it (Kafka's LIST).
    List,
    /// `none`, or `racks:` and a comma-separated list of rack names (Redpanda's leaders
    /// preference).
    RackPreference,
}

/// One topic config key Icestream understands.
#[derive(Debug)]
pub struct ConfigDef {
    pub name: &'static str,
    /// The cluster-wide default's name, as Kafka brokers call it.
    pub broker_name: &'static str,
    pub kind: Kind,
    pub default: &'static str,
    pub doc: &'static str,
}

/// The topic configs Icestream honours. Anything else is refused with INVALID_CONFIG rather than
/// stored and silently ignored.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef { name: "cleanup.policy", broker_name: "log.cleanup.policy", kind: Kind::Choice(&["delete", "compact", "compact,delete", "delete,compact"]), default: "delete", doc: "delete: remove old segments by retention; compact: keep the newest record per key; both: do both" },
    ConfigDef { name: "delete.retention.ms", broker_name: "log.cleaner.delete.retention.ms", kind: Kind::Long(0), default: "86400000", doc: "how long compaction keeps tombstones (null values) so consumers see deletes" },
    ConfigDef { name: "retention.ms", broker_name: "log.retention.ms", kind: Kind::Long(-1), default: "604800000", doc: "age after which sealed segments are deleted; -1 keeps forever" },
    ConfigDef { name: "retention.bytes", broker_name: "log.retention.bytes", kind: Kind::Long(-1), default: "-1", doc: "partition size above which the oldest sealed segments are deleted; -1 for no limit" },
    ConfigDef { name: "segment.bytes", broker_name: "log.segment.bytes", kind: Kind::Int(1024), default: "134217728", doc: "segment size at which the log rolls" },
    ConfigDef { name: "segment.ms", broker_name: "log.roll.ms", kind: Kind::Long(1), default: "604800000", doc: "segment age at which the log rolls" },
    ConfigDef { name: "max.message.bytes", broker_name: "message.max.bytes", kind: Kind::Int(0), default: "1048576", doc: "largest record batch accepted, after compression" },
    ConfigDef { name: "message.timestamp.type", broker_name: "log.message.timestamp.type", kind: Kind::Choice(&["CreateTime", "LogAppendTime"]), default: "CreateTime", doc: "whether records keep the producer's timestamp or get the broker's" },
    ConfigDef { name: "index.interval.bytes", broker_name: "log.index.interval.bytes", kind: Kind::Int(0), default: "4096", doc: "bytes of log between two offset index entries" },
    ConfigDef { name: "write.caching", broker_name: "write.caching", kind: Kind::Bool, default: "false", doc: "acknowledge acks=1/all produces once in memory and flush in the background within flush.ms / flush.bytes" },
    ConfigDef { name: "flush.ms", broker_name: "log.flush.interval.ms", kind: Kind::Long(0), default: "100", doc: "with write.caching, longest time an acknowledged batch stays unflushed" },
    ConfigDef { name: "flush.bytes", broker_name: "log.flush.interval.bytes", kind: Kind::Long(0), default: "262144", doc: "with write.caching, unflushed bytes that trigger a flush" },
    ConfigDef { name: "min.insync.replicas", broker_name: "min.insync.replicas", kind: Kind::Int(1), default: "1", doc: "replicas that must hold an acks=all write" },
    ConfigDef { name: "remote.storage.enable", broker_name: "log.remote.storage.enable", kind: Kind::Bool, default: "false", doc: "upload sealed segments to object storage and serve old offsets from there (not with cleanup.policy=compact)" },
    ConfigDef { name: "local.retention.ms", broker_name: "log.local.retention.ms", kind: Kind::Long(-2), default: "-2", doc: "with remote storage, age after which uploaded segments leave the local disk; -2 uses retention.ms" },
    ConfigDef { name: "local.retention.bytes", broker_name: "log.local.retention.bytes", kind: Kind::Long(-2), default: "-2", doc: "with remote storage, local partition size above which uploaded segments leave the local disk; -2 uses retention.bytes" },
    ConfigDef { name: "compression.type", broker_name: "compression.type", kind: Kind::Choice(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]), default: "producer", doc: "batches are stored as the producer compressed them; the other Kafka values are accepted and stored with no effect (Icestream never recompresses)" },
    // Compaction scheduling and produce-time timestamp bounds, as in Kafka.
    ConfigDef { name: "min.cleanable.dirty.ratio", broker_name: "log.cleaner.min.cleanable.ratio", kind: Kind::Ratio, default: "0.5", doc: "compaction starts once the uncompacted (dirty) share of the sealed log reaches this ratio" },
    ConfigDef { name: "min.compaction.lag.ms", broker_name: "log.cleaner.min.compaction.lag.ms", kind: Kind::Long(0), default: "0", doc: "segments holding records younger than this are not compacted yet" },
    ConfigDef { name: "max.compaction.lag.ms", broker_name: "log.cleaner.max.compaction.lag.ms", kind: Kind::Long(1), default: "9223372036854775807", doc: "a sealed segment is compacted within this time of being written, whatever the dirty ratio" },
    ConfigDef { name: "message.timestamp.before.max.ms", broker_name: "log.message.timestamp.before.max.ms", kind: Kind::Long(0), default: "9223372036854775807", doc: "with CreateTime, batches holding a record older than the broker's clock by more than this are refused (INVALID_TIMESTAMP)" },
    ConfigDef { name: "message.timestamp.after.max.ms", broker_name: "log.message.timestamp.after.max.ms", kind: Kind::Long(0), default: "3600000", doc: "with CreateTime, batches holding a record ahead of the broker's clock by more than this are refused (INVALID_TIMESTAMP)" },
    // Confluent Server's names for produce-time schema id validation, and Redpanda's aliases.
    ConfigDef { name: "confluent.value.schema.validation", broker_name: "confluent.value.schema.validation", kind: Kind::Bool, default: "false", doc: "every non-null record value must start with the Confluent wire format (magic byte 0, 4-byte schema id) naming a registered schema" },
    ConfigDef { name: "confluent.key.schema.validation", broker_name: "confluent.key.schema.validation", kind: Kind::Bool, default: "false", doc: "the same check for every non-null record key" },
    ConfigDef { name: "redpanda.value.schema.id.validation", broker_name: "redpanda.value.schema.id.validation", kind: Kind::Bool, default: "false", doc: "alias of confluent.value.schema.validation (Redpanda's name)" },
    ConfigDef { name: "redpanda.key.schema.id.validation", broker_name: "redpanda.key.schema.id.validation", kind: Kind::Bool, default: "false", doc: "alias of confluent.key.schema.validation (Redpanda's name)" },
    // Iceberg topics (docs/iceberg.md). Checked in depth by the translator, which reports a
    // bad partition spec in its metrics and logs rather than refusing the topic.
    ConfigDef { name: "iceberg.mode", broker_name: "iceberg.mode", kind: Kind::Choice(&["disabled", "key_value", "value_schema_id_prefix", "value_schema_latest"]), default: "disabled", doc: "make the topic an Iceberg table: key_value (raw bytes) or values decoded with the schema registry" },
    ConfigDef { name: "iceberg.target.lag.ms", broker_name: "iceberg.target.lag.ms", kind: Kind::Long(100), default: "60000", doc: "how stale the Iceberg table may be" },
    ConfigDef { name: "iceberg.partition.spec", broker_name: "iceberg.partition.spec", kind: Kind::Text, default: "(hour(kafka.timestamp))", doc: "partition spec of the table, e.g. (hour(kafka.timestamp)) or (bucket(16, key), day(kafka.timestamp)); () for none" },
    ConfigDef { name: "iceberg.delete", broker_name: "iceberg.delete", kind: Kind::Bool, default: "true", doc: "drop the Iceberg table when the topic is deleted" },
    ConfigDef { name: "iceberg.invalid.record.action", broker_name: "iceberg.invalid.record.action", kind: Kind::Choice(&["dlq_table", "drop"]), default: "dlq_table", doc: "records that cannot be decoded go to the <topic>~dlq table, or are dropped" },
    // Leader pinning, Redpanda's name: the partition's leader is kept on a replica in the
    // first of these racks that holds one.
    ConfigDef { name: "redpanda.leaders.preference", broker_name: "default_leaders_preference", kind: Kind::RackPreference, default: "none", doc: "racks:<rack>[,<rack>...] keeps each partition's leadership on a replica in the first listed rack that holds one (then the next); none: the first replica leads" },
    ConfigDef { name: "iceberg.namespace", broker_name: "iceberg.namespace", kind: Kind::Text, default: "", doc: "namespace of the topic's table (empty: the broker's --iceberg-namespace)" },
];

/// Kafka 4's other topic configs: accepted, type-checked, stored and described, with no
/// effect. Each `doc` says why (docs/configuration.md lists them too).
pub const KAFKA_ACCEPTED_CONFIGS: &[ConfigDef] = &[
    ConfigDef { name: "file.delete.delay.ms", broker_name: "log.segment.delete.delay.ms", kind: Kind::Long(0), default: "60000", doc: "no effect: segments are deleted at once, since readers hold their files open" },
    ConfigDef { name: "flush.messages", broker_name: "log.flush.interval.messages", kind: Kind::Long(1), default: "9223372036854775807", doc: "no effect: writes are flushed before they are acknowledged; with write.caching, flush.ms and flush.bytes bound the delay" },
    ConfigDef { name: "segment.index.bytes", broker_name: "log.index.size.max.bytes", kind: Kind::Int(4), default: "10485760", doc: "no effect: offset indexes grow with the segment rather than being preallocated" },
    ConfigDef { name: "segment.jitter.ms", broker_name: "log.roll.jitter.ms", kind: Kind::Long(0), default: "0", doc: "no effect: segments roll at exactly segment.ms" },
    ConfigDef { name: "preallocate", broker_name: "log.preallocate", kind: Kind::Bool, default: "false", doc: "no effect: segment files are never preallocated" },
    ConfigDef { name: "unclean.leader.election.enable", broker_name: "unclean.leader.election.enable", kind: Kind::Bool, default: "false", doc: "no effect: partition leaders are elected by Raft, which never elects a replica missing committed records" },
    ConfigDef { name: "leader.replication.throttled.replicas", broker_name: "leader.replication.throttled.replicas", kind: Kind::List, default: "", doc: "no effect: replication is not throttled" },
    ConfigDef { name: "follower.replication.throttled.replicas", broker_name: "follower.replication.throttled.replicas", kind: Kind::List, default: "", doc: "no effect: replication is not throttled" },
    ConfigDef { name: "remote.log.copy.disable", broker_name: "remote.log.copy.disable", kind: Kind::Bool, default: "false", doc: "no effect: with remote.storage.enable, sealed segments are always uploaded" },
    ConfigDef { name: "remote.log.delete.on.disable", broker_name: "remote.log.delete.on.disable", kind: Kind::Bool, default: "false", doc: "no effect: remote storage cannot be turned off on a topic once on" },
    ConfigDef { name: "compression.gzip.level", broker_name: "compression.gzip.level", kind: Kind::IntIn(1, 9, &[-1]), default: "-1", doc: "no effect: Icestream never recompresses batches (compression.type)" },
    ConfigDef { name: "compression.lz4.level", broker_name: "compression.lz4.level", kind: Kind::IntIn(1, 17, &[]), default: "9", doc: "no effect: Icestream never recompresses batches (compression.type)" },
    ConfigDef { name: "max.decompressed.message.bytes", broker_name: "max.decompressed.message.bytes", kind: Kind::IntIn(1, 2147483639, &[]), default: "2147483639", doc: "no effect: decompression is bounded by a limit derived from max.message.bytes" },
    ConfigDef { name: "remote.copy.lag.ms", broker_name: "log.remote.copy.lag.ms", kind: Kind::Long(-1), default: "0", doc: "no effect: with remote.storage.enable, segments are uploaded as soon as they are sealed" },
    ConfigDef { name: "remote.copy.lag.bytes", broker_name: "log.remote.copy.lag.bytes", kind: Kind::Long(-1), default: "-1", doc: "no effect: with remote.storage.enable, segments are uploaded as soon as they are sealed" },
    ConfigDef { name: "errors.deadletterqueue.group.enable", broker_name: "errors.deadletterqueue.group.enable", kind: Kind::Bool, default: "false", doc: "no effect: share groups (KIP-932), whose dead-letter queues this enables, are not implemented" },
    ConfigDef { name: "compression.zstd.level", broker_name: "compression.zstd.level", kind: Kind::IntIn(-131072, 22, &[]), default: "3", doc: "no effect: Icestream never recompresses batches (compression.type)" },
];

/// Every topic config key accepted: those Icestream honours, then Kafka's others.
pub fn all_configs() -> impl Iterator<Item = &'static ConfigDef> {
    TOPIC_CONFIGS.iter().chain(KAFKA_ACCEPTED_CONFIGS)
}

/// Other brokers' names for Icestream topic configs, accepted so that a migrating user's
/// configs work; they are stored under the Icestream name.
pub const CONFIG_ALIASES: &[(&str, &str)] = &[
    ("redpanda.iceberg.mode", "iceberg.mode"),
    ("redpanda.iceberg.target.lag.ms", "iceberg.target.lag.ms"),
    ("redpanda.iceberg.partition.spec", "iceberg.partition.spec"),
    ("redpanda.iceberg.delete", "iceberg.delete"),
    (
        "redpanda.iceberg.invalid.record.action",
        "iceberg.invalid.record.action",
    ),
];

/// The Icestream name of a config key (aliases resolved; other names unchanged).
pub fn canonical_name(name: &str) -> &str {
    CONFIG_ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, canonical)| canonical)
}

pub fn config_def(name: &str) -> Option<&'static ConfigDef> {
    let name = canonical_name(name);
    all_configs().find(|d| d.name == name)
}

/// A config value that failed validation; the message names the key.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct InvalidConfig(pub String);

/// Checks one `key=value` pair against the table.
pub fn validate_entry(name: &str, value: &str) -> Result<(), InvalidConfig> {
    let def = config_def(name).ok_or_else(|| {
        InvalidConfig(format!(
            "unknown topic config '{name}'; supported: {}",
            supported_names()
        ))
    })?;
    let bad = |why: String| {
        InvalidConfig(format!(
            "invalid value '{value}' for topic config '{name}': {why}"
        ))
    };
    match def.kind {
        Kind::Long(min) => {
            let v: i64 = value
                .trim()
                .parse()
                .map_err(|_| bad("expected an integer".into()))?;
            if v < min {
                return Err(bad(format!("must be at least {min}")));
            }
        }
        Kind::Int(min) => {
            let v: i32 = value
                .trim()
                .parse()
                .map_err(|_| bad("expected a 32-bit integer".into()))?;
            if (v as i64) < min {
                return Err(bad(format!("must be at least {min}")));
            }
        }
        Kind::Bool => {
            if !matches!(value.trim(), "true" | "false") {
                return Err(bad("expected true or false".into()));
            }
        }
        Kind::Choice(opts) => {
            if !opts.contains(&value.trim()) {
                return Err(bad(format!("supported values: {}", opts.join(", "))));
            }
        }
        Kind::IntIn(min, max, special) => {
            let v: i32 = value
                .trim()
                .parse()
                .map_err(|_| bad("expected a 32-bit integer".into()))?;
            let v = v as i64;
            if !((min..=max).contains(&v) || special.contains(&v)) {
                return Err(bad(format!(
                    "must be in [{min}, {max}]{}",
                    special
                        .iter()
                        .map(|s| format!(" or {s}"))
                        .collect::<String>()
                )));
            }
        }
        Kind::Ratio => {
            let v: f64 = value
                .trim()
                .parse()
                .map_err(|_| bad("expected a number".into()))?;
            if !(0.0..=1.0).contains(&v) {
                return Err(bad("must be between 0 and 1".into()));
            }
        }
        Kind::RackPreference => {
            rack_preference(value).map_err(bad)?;
        }
        Kind::Text | Kind::List => {}
    }
    Ok(())
}

/// The racks a `redpanda.leaders.preference` value names, in order (`none`: none).
pub fn rack_preference(value: &str) -> Result<Vec<String>, String> {
    let v = value.trim();
    if v == "none" {
        return Ok(vec![]);
    }
    let Some(list) = v.strip_prefix("racks:") else {
        return Err("expected none or racks:<rack>[,<rack>...]".into());
    };
    let racks: Vec<String> = list.split(',').map(|r| r.trim().to_string()).collect();
    if racks.iter().any(String::is_empty) {
        return Err("a rack name is empty".into());
    }
    Ok(racks)
}

fn supported_names() -> String {
    all_configs().map(|d| d.name).collect::<Vec<_>>().join(", ")
}

/// A topic's explicit overrides; every other key takes the cluster default.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicConfig {
    pub overrides: BTreeMap<String, String>,
}

impl TopicConfig {
    /// Whether the topic's own overrides turn remote storage on (whatever brokers' defaults
    /// say): unmount needs it, and it is never turned off again.
    pub fn remote_storage_set(&self) -> bool {
        self.overrides
            .get("remote.storage.enable")
            .map(String::as_str)
            == Some("true")
    }

    /// Builds a config from requested pairs, validating each.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, InvalidConfig> {
        let mut overrides = BTreeMap::new();
        for (k, v) in pairs {
            validate_entry(k, v)?;
            overrides.insert(canonical_name(k).to_string(), v.trim().to_string());
        }
        let config = TopicConfig { overrides };
        config.check_combination()?;
        Ok(config)
    }

    /// [`Self::from_pairs`] over the owned pairs CreateTopics and AlterConfigs decode.
    pub fn from_entries(pairs: &[(String, String)]) -> Result<Self, InvalidConfig> {
        Self::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// IncrementalAlterConfigs SET: validates one pair and sets it under its canonical name,
    /// as CreateTopics and AlterConfigs store it (replacing a value an older release stored
    /// under an alias). The caller checks [`Self::check_combination`] once all are set.
    pub fn set_entry(&mut self, key: &str, value: &str) -> Result<(), InvalidConfig> {
        validate_entry(key, value)?;
        self.overrides.remove(key);
        self.overrides
            .insert(canonical_name(key).to_string(), value.trim().to_string());
        Ok(())
    }

    /// IncrementalAlterConfigs DELETE: removes an override. Deleting an unknown key is an
    /// error too: it names no config.
    pub fn delete_entry(&mut self, key: &str) -> Result<(), InvalidConfig> {
        if config_def(key).is_none() {
            return Err(InvalidConfig(format!("unknown topic config '{key}'")));
        }
        self.overrides.remove(key);
        self.overrides.remove(canonical_name(key));
        Ok(())
    }

    /// Rules across keys. Remote storage keeps segments as sealed, so it cannot be combined
    /// with compaction, which rewrites them (Kafka refuses the same).
    pub fn check_combination(&self) -> Result<(), InvalidConfig> {
        let set = |k: &str| self.overrides.get(k).map(String::as_str);
        if set("remote.storage.enable") == Some("true")
            && set("cleanup.policy").is_some_and(|p| p.contains("compact"))
        {
            return Err(InvalidConfig(
                "remote.storage.enable=true cannot be combined with cleanup.policy=compact".into(),
            ));
        }
        Ok(())
    }

    /// The effective value of `key` and whether it is an override.
    pub fn get<'a>(&'a self, key: &str, defaults: &'a ClusterDefaults) -> (&'a str, bool) {
        // An alias set through IncrementalAlterConfigs is stored under its own name.
        let alias = CONFIG_ALIASES
            .iter()
            .find(|(_, canonical)| *canonical == key)
            .and_then(|(alias, _)| self.overrides.get(*alias));
        match self.overrides.get(key).or(alias) {
            Some(v) => (v, true),
            None => (
                defaults.topic.get(key).map(String::as_str).unwrap_or(""),
                false,
            ),
        }
    }

    fn num(&self, key: &str, d: &ClusterDefaults) -> i64 {
        self.get(key, d).0.parse().unwrap_or(0)
    }

    fn flag(&self, key: &str, d: &ClusterDefaults) -> bool {
        self.get(key, d).0 == "true"
    }

    pub fn resolve(&self, d: &ClusterDefaults) -> ResolvedTopicConfig {
        // Retention deletes segments only when the policy includes `delete`.
        let deletes = self.get("cleanup.policy", d).0.contains("delete");
        let compact = self.get("cleanup.policy", d).0.contains("compact");
        let retention_ms = if deletes {
            self.num("retention.ms", d)
        } else {
            -1
        };
        let retention_bytes = if deletes {
            self.num("retention.bytes", d)
        } else {
            -1
        };
        // -2 means "the total retention" (KIP-405).
        let local = |key: &str, total: i64| match self.num(key, d) {
            -2 => total,
            v if total >= 0 && (v < 0 || v > total) => total,
            v => v,
        };
        ResolvedTopicConfig {
            log: LogConfig {
                segment_bytes: self.num("segment.bytes", d).max(1024) as u64,
                segment_ms: self.num("segment.ms", d).max(1),
                retention_ms,
                retention_bytes,
                // A cluster default may turn tiering on; compacted topics never tier.
                remote_storage: self.get("remote.storage.enable", d).0 == "true" && !compact,
                local_retention_ms: local("local.retention.ms", retention_ms),
                local_retention_bytes: local("local.retention.bytes", retention_bytes),
                index_interval_bytes: self.num("index.interval.bytes", d).max(0) as u64,
                log_append_time: self.get("message.timestamp.type", d).0 == "LogAppendTime",
            },
            max_message_bytes: self.num("max.message.bytes", d).max(0) as usize,
            write_caching: self.get("write.caching", d).0 == "true",
            flush_ms: self.num("flush.ms", d).max(0) as u64,
            flush_bytes: self.num("flush.bytes", d).max(0) as u64,
            retention_check_ms: d.retention_check_interval_ms.max(100),
            producer_expiry_ms: d.producer_id_expiration_ms.max(0),
            compact,
            delete_retention_ms: self.num("delete.retention.ms", d).max(0),
            min_cleanable_dirty_ratio: self
                .get("min.cleanable.dirty.ratio", d)
                .0
                .parse()
                .unwrap_or(0.5),
            min_compaction_lag_ms: self.num("min.compaction.lag.ms", d).max(0),
            max_compaction_lag_ms: self.num("max.compaction.lag.ms", d).max(1),
            timestamp_before_max_ms: self.num("message.timestamp.before.max.ms", d).max(0),
            timestamp_after_max_ms: self.num("message.timestamp.after.max.ms", d).max(0),
            value_schema_validation: self.flag("confluent.value.schema.validation", d)
                || self.flag("redpanda.value.schema.id.validation", d),
            key_schema_validation: self.flag("confluent.key.schema.validation", d)
                || self.flag("redpanda.key.schema.id.validation", d),
            leader_racks: rack_preference(self.get("redpanda.leaders.preference", d).0)
                .unwrap_or_default(),
        }
    }
}

/// Typed view of a topic's effective config.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedTopicConfig {
    pub log: LogConfig,
    pub max_message_bytes: usize,
    pub write_caching: bool,
    pub flush_ms: u64,
    pub flush_bytes: u64,
    pub retention_check_ms: u64,
    pub producer_expiry_ms: i64,
    /// `cleanup.policy` includes `compact`.
    pub compact: bool,
    pub delete_retention_ms: i64,
    /// Compaction starts when the dirty share of the sealed log reaches this...
    pub min_cleanable_dirty_ratio: f64,
    /// ...counting only segments whose newest record is older than this...
    pub min_compaction_lag_ms: i64,
    /// ...or when a dirty segment's oldest record is older than this.
    pub max_compaction_lag_ms: i64,
    /// CreateTime records may be at most this far behind / ahead of the broker's clock.
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
    /// Produce checks that non-null values (keys) carry a registered schema id.
    pub value_schema_validation: bool,
    pub key_schema_validation: bool,
    /// `redpanda.leaders.preference`: racks whose replicas should lead, in order.
    pub leader_racks: Vec<String>,
}

/// Topic names Kafka accepts: 1-249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 {
        return Err(format!(
            "topic name must be 1 to 249 characters, got {}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err("topic name cannot be '.' or '..'".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name '{name}' contains '{c}'; allowed: ASCII letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_key() {
        assert!(validate_entry("retention.ms", "1000").is_ok());
        let e = validate_entry("retention.ms", "soon").unwrap_err();
        assert!(e.0.contains("retention.ms"), "{e}");
        let e = validate_entry("no.such.key", "1").unwrap_err();
        assert!(e.0.contains("no.such.key"), "{e}");
        assert!(validate_entry("message.timestamp.type", "LogAppendTime").is_ok());
        assert!(validate_entry("segment.bytes", "10").is_err());
        assert!(validate_entry("write.caching", "maybe").is_err());
    }

    #[test]
    fn resolve_uses_overrides_then_defaults() {
        let d = ClusterDefaults::default();
        let c = TopicConfig::from_pairs([("segment.bytes", "2048"), ("write.caching", "true")])
            .unwrap();
        let r = c.resolve(&d);
        assert_eq!(r.log.segment_bytes, 2048);
        assert!(r.write_caching);
        assert_eq!(r.max_message_bytes, 1048576);
        assert_eq!(c.get("retention.ms", &d), ("604800000", false));
        assert!(!r.value_schema_validation && !r.key_schema_validation);
    }

    #[test]
    fn leaders_preference_is_none_or_a_rack_list() {
        assert_eq!(rack_preference("none"), Ok(vec![]));
        assert_eq!(
            rack_preference("racks:a, b"),
            Ok(vec!["a".to_string(), "b".to_string()])
        );
        for bad in ["", "a,b", "racks:", "racks:a,,b", "rack:a"] {
            assert!(rack_preference(bad).is_err(), "{bad:?}");
            assert!(validate_entry("redpanda.leaders.preference", bad).is_err());
        }
        let mut c = TopicConfig::default();
        c.set_entry("redpanda.leaders.preference", "racks:eu-1")
            .unwrap();
        assert_eq!(
            c.resolve(&ClusterDefaults::default()).leader_racks,
            vec!["eu-1".to_string()]
        );
    }

    #[test]
    fn schema_validation_accepts_redpanda_aliases() {
        let d = ClusterDefaults::default();
        let c = TopicConfig::from_pairs([("confluent.value.schema.validation", "true")]).unwrap();
        assert!(c.resolve(&d).value_schema_validation);
        let c = TopicConfig::from_pairs([("redpanda.key.schema.id.validation", "true")]).unwrap();
        let r = c.resolve(&d);
        assert!(r.key_schema_validation && !r.value_schema_validation);
        assert!(validate_entry("confluent.value.schema.validation", "yes").is_err());
    }

    #[test]
    fn kafka_configs_are_typed_and_accepted() {
        assert!(validate_entry("min.cleanable.dirty.ratio", "0.01").is_ok());
        assert!(validate_entry("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(validate_entry("compression.gzip.level", "-1").is_ok());
        assert!(validate_entry("compression.gzip.level", "0").is_err());
        assert!(validate_entry("compression.zstd.level", "-5").is_ok());
        assert!(validate_entry("preallocate", "true").is_ok());
        assert!(validate_entry("flush.messages", "0").is_err());
        assert!(validate_entry("compression.type", "zstd").is_ok());
        assert!(validate_entry("message.downconversion.enable", "true").is_err());
        let d = ClusterDefaults::default();
        assert_eq!(d.topic["segment.jitter.ms"], "0");
        let c = TopicConfig::from_pairs([("message.timestamp.after.max.ms", "5")]).unwrap();
        let r = c.resolve(&d);
        assert_eq!(r.timestamp_after_max_ms, 5);
        assert_eq!(r.timestamp_before_max_ms, i64::MAX);
        assert_eq!(r.min_cleanable_dirty_ratio, 0.5);
    }

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        assert!(validate_topic_name("bad/name").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
    }
}
