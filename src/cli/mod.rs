//! The operator CLI: `icestream topic ...` and `icestream cluster ...`.
//!
//! Like Redpanda's `rpk`, every command is a client of the running broker over its
//! public APIs (the Kafka protocol and the admin HTTP API); nothing here reads the data
//! directory. Every failure becomes one `anyhow` error whose Display is a single line
//! saying what went wrong and what to do; `main` prints it as `error: {e}`.

pub(crate) mod batches;
pub(crate) mod client;
mod cluster;
mod consume;
pub(crate) mod errors;
pub(crate) mod group;
pub(crate) mod http;
pub(crate) mod offsets;
pub(crate) mod output;
pub(crate) mod partitioner;
pub(crate) mod produce;
pub(crate) mod sasl;
mod schema;
pub(crate) mod security;
mod storage;
mod table;
pub(crate) mod tls;
pub(crate) mod topic;
pub(crate) mod transaction;

/// A client command group (`topic`, `group`, `transaction`, `schema`, `cluster`) with the connection and
/// output settings every command in it takes; `serve` does not take them.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientCommand<C: clap::Subcommand> {
    #[command(flatten)]
    pub args: ClientArgs,
    #[command(subcommand)]
    pub command: C,
}

/// The long options of [`ClientArgs`] that take a value.
const CLIENT_OPTIONS: [&str; 10] = [
    "--brokers",
    "--admin-url",
    "--schema-registry-url",
    "--format",
    "--user",
    "--password",
    "--tls-ca-file",
    "--tls-cert-file",
    "--tls-key-file",
    "--sasl-mechanism",
];
/// The long options of [`ClientArgs`] without a value.
const CLIENT_FLAGS: [&str; 1] = ["--tls"];

/// The client options may also stand before the command (`icestream --brokers H topic
/// list`), as when they were options of `icestream` itself: moves them after the command's
/// name, where they are defined. Anything else is left as it is.
pub fn hoist_client_options(args: Vec<String>) -> Vec<String> {
    let mut moved = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let a = args[i].as_str();
        if CLIENT_OPTIONS.contains(&a) && i + 1 < args.len() {
            moved.extend_from_slice(&args[i..i + 2]);
            i += 2;
        } else if CLIENT_FLAGS.contains(&a)
            || CLIENT_OPTIONS
                .iter()
                .any(|o| a.strip_prefix(o).is_some_and(|v| v.starts_with('=')))
        {
            moved.push(args[i].clone());
            i += 1;
        } else if moved.is_empty() || a.starts_with('-') {
            return args;
        } else {
            // `a` is the command's name.
            let mut out = vec![args[0].clone(), args[i].clone()];
            out.extend(moved);
            out.extend_from_slice(&args[i + 1..]);
            return out;
        }
    }
    args
}

/// Connection and output settings shared by every client command.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// Kafka bootstrap address of the broker
    #[arg(
        long,
        global = true,
        env = "ICESTREAM_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,
    /// Admin HTTP API of the broker
    #[arg(
        long,
        global = true,
        env = "ICESTREAM_ADMIN_URL",
        default_value = "http://127.0.0.1:9644"
    )]
    pub admin_url: String,
    /// Schema registry REST API of the broker
    #[arg(
        long,
        global = true,
        env = "ICESTREAM_SCHEMA_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub schema_registry_url: String,
    /// Output format
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// User to authenticate as: HTTP Basic on the admin API and schema registry, and SASL on
    /// Kafka connections with --sasl-mechanism
    #[arg(long, global = true, env = "ICESTREAM_USER")]
    pub user: Option<String>,
    /// The user's password (prefer the environment variable: flags show in `ps`)
    #[arg(
        long,
        global = true,
        env = "ICESTREAM_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// SASL mechanism for Kafka connections, with --user and --password: SCRAM-SHA-256,
    /// SCRAM-SHA-512, PLAIN, or OAUTHBEARER with the token as --password (unset: Kafka
    /// connections do not authenticate)
    #[arg(long, global = true, env = "ICESTREAM_SASL_MECHANISM", value_enum)]
    pub sasl_mechanism: Option<sasl::SaslMechanism>,
    /// Connect to the brokers over TLS (implied by any --tls-* flag; https:// URLs always are)
    #[arg(long, global = true, env = "ICESTREAM_TLS")]
    pub tls: bool,
    /// CA certificates (PEM) that signed the brokers' certificates [default: the system's]
    #[arg(long, global = true, env = "ICESTREAM_CLIENT_CA_FILE")]
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Client certificate chain (PEM) for listeners that require one (mTLS)
    #[arg(long, global = true, env = "ICESTREAM_CLIENT_CERT_FILE")]
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM)
    #[arg(long, global = true, env = "ICESTREAM_CLIENT_KEY_FILE")]
    pub tls_key_file: Option<std::path::PathBuf>,
    /// Not a flag: trust exactly the leaf certificate in this file (the web console reaching
    /// its own broker's TLS listener with the broker's `--tls-cert-file`).
    #[arg(skip)]
    pub tls_pinned_cert: Option<std::path::PathBuf>,
    /// Not a flag: the same for https URLs (the console calling its own admin API).
    #[arg(skip)]
    pub http_pinned_cert: Option<std::path::PathBuf>,
}

impl ClientArgs {
    /// Every setting at its default (the flags' defaults, no TLS, no credentials).
    pub fn defaults() -> Self {
        ClientArgs {
            brokers: "127.0.0.1:9092".into(),
            admin_url: "http://127.0.0.1:9644".into(),
            schema_registry_url: "http://127.0.0.1:8081".into(),
            format: Format::Table,
            user: None,
            password: None,
            sasl_mechanism: None,
            tls: false,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_pinned_cert: None,
            http_pinned_cert: None,
        }
    }
}

/// How command output is printed.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for people
    Table,
    /// JSON for scripts (one object per command, one line per record when streaming)
    Json,
}

/// `icestream topic ...`
#[derive(clap::Subcommand, Debug, Clone)]
pub enum TopicCommand {
    /// Create a topic
    Create {
        /// Topic name
        name: String,
        /// Number of partitions (-1: broker default)
        #[arg(short, long, default_value_t = -1, allow_negative_numbers = true)]
        partitions: i32,
        /// Replication factor (-1: broker default)
        #[arg(short, long, default_value_t = -1, allow_negative_numbers = true)]
        replicas: i16,
        /// Topic config as key=value (repeatable)
        #[arg(short, long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
    },
    /// List topics
    List,
    /// Show a topic's partitions, offsets and non-default configs
    Describe {
        /// Topic name
        name: String,
    },
    /// Delete topics
    Delete {
        /// Topic names
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Set or remove topic configs
    AlterConfig {
        /// Topic name
        name: String,
        /// Config to set, as key=value (repeatable)
        #[arg(long, value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Config to reset to its default (repeatable)
        #[arg(long, value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Grow a topic to a new total number of partitions
    AddPartitions {
        /// Topic name
        name: String,
        /// New total number of partitions
        #[arg(long)]
        count: i32,
    },
    /// Produce stdin to a topic, one record per line
    Produce {
        /// Topic name
        name: String,
        /// Record key for every record
        #[arg(short, long)]
        key: Option<String>,
        /// Partition (default: murmur2 of the key, or round-robin per batch without one)
        #[arg(short, long)]
        partition: Option<i32>,
        /// Acknowledgements to wait for
        #[arg(long, value_enum, default_value_t = produce::Acks::All)]
        acks: produce::Acks,
        /// Batch compression
        #[arg(long, value_enum, default_value_t = produce::CompressionArg::None)]
        compression: produce::CompressionArg,
    },
    /// Print records of a topic
    Consume {
        /// Topic name
        name: String,
        /// Only this partition (default: all)
        #[arg(short, long)]
        partition: Option<i32>,
        /// Where to start: start, end, or an offset
        #[arg(short, long, default_value = "start")]
        offset: consume::StartOffset,
        /// Exit after this many records (default: follow forever)
        #[arg(short, long)]
        num: Option<u64>,
    },
}

/// `icestream cluster ...`
#[derive(clap::Subcommand, Debug, Clone)]
pub enum ClusterCommand {
    /// Show the cluster id, controller and brokers
    Info,
    /// Ask the admin API whether the broker is ready; exits non-zero when it is not
    Health,
    /// Show every broker and whether it is active, draining or decommissioned
    Status,
    /// Write a backup of the cluster metadata to a file (restore it with `serve
    /// --recover-controller --restore-metadata <file>`)
    Backup {
        /// The file to write
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Move every replica off a broker and stop placing new ones on it
    Decommission {
        /// The broker's node id
        #[arg(long)]
        node: i32,
    },
    /// Move a partition to other replicas (Kafka's AlterPartitionReassignments)
    Reassign {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: i32,
        /// The new replicas, preferred leader first (e.g. 2,3,4)
        #[arg(long, value_delimiter = ',', required_unless_present = "cancel")]
        replicas: Option<Vec<i32>>,
        /// Cancel the partition's ongoing reassignment instead
        #[arg(long, conflicts_with = "replicas")]
        cancel: bool,
    },
    /// Hibernate topics into object storage and bring them back
    #[command(subcommand)]
    Storage(StorageCommand),
}

/// `icestream cluster storage ...`
#[derive(clap::Subcommand, Debug, Clone)]
pub enum StorageCommand {
    /// Upload everything of a topic, write its manifest and remove it from the broker
    Unmount {
        /// Topic name
        topic: String,
    },
    /// Bring an unmounted topic back with its offsets and committed group offsets
    Mount {
        /// Name the topic had when it was unmounted
        topic: String,
        /// Mount it under this name instead
        #[arg(long = "as", value_name = "NEW_NAME")]
        new_name: Option<String>,
        /// In a cluster: replicas per partition (as many as when it was unmounted if not given)
        #[arg(long, value_name = "N")]
        replication_factor: Option<i16>,
    },
    /// List topics unmounted into the object store
    ListMountable,
}

/// `icestream group ...`
#[derive(clap::Subcommand, Debug, Clone)]
pub enum GroupCommand {
    /// List consumer groups
    List,
    /// Show a group's state, members, committed offsets and lag per partition
    Describe {
        /// Group id
        name: String,
    },
    /// Delete groups without members, with their committed offsets
    Delete {
        /// Group ids
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Move a group's committed offsets on a topic (the group must have no active members)
    Seek {
        /// Group id
        name: String,
        /// Topic whose offsets move
        #[arg(long)]
        topic: String,
        /// Where to: start, end, an offset, or ts:MILLISECONDS (the first record at or after it)
        #[arg(long)]
        to: group::SeekTo,
        /// Only this partition (default: all)
        #[arg(short, long)]
        partition: Option<i32>,
    },
}

/// `icestream transaction ...`
#[derive(clap::Subcommand, Debug, Clone)]
pub enum TransactionCommand {
    /// List the transactional ids every coordinator knows, with their state and producer id
    List {
        /// Only transactions in this state, e.g. Ongoing (repeatable)
        #[arg(long = "state", value_name = "STATE")]
        states: Vec<transaction::TxnState>,
        /// Only transactions of this producer id (repeatable)
        #[arg(long = "producer-id", value_name = "N")]
        producer_ids: Vec<i64>,
    },
    /// Show a transaction's state, producer id and epoch, timeout, start and partitions
    Describe {
        /// Transactional id
        transactional_id: String,
    },
    /// Show the producers a partition's leader knows and the transactions they hold open
    DescribeProducers {
        /// Topic name
        #[arg(long)]
        topic: String,
        /// Partition
        #[arg(short, long)]
        partition: i32,
    },
    /// Find transactions left open on partitions that their coordinator does not know
    FindHanging {
        /// Only this topic (default: every topic)
        #[arg(long)]
        topic: Option<String>,
        /// Only this partition of --topic
        #[arg(short, long, requires = "topic")]
        partition: Option<i32>,
        /// Transactions open for less than this are not checked (the brokers'
        /// transaction.max.timeout.ms)
        #[arg(long, value_name = "MS", default_value_t = transaction::DEFAULT_MAX_TIMEOUT_MS)]
        max_transaction_timeout_ms: i64,
    },
    /// Abort a transaction left open on a partition by writing its abort marker there
    #[command(group(
        clap::ArgGroup::new("which").required(true).args(["start_offset", "producer_id"])
    ))]
    Abort {
        /// Topic name
        #[arg(long)]
        topic: String,
        /// Partition
        #[arg(short, long)]
        partition: i32,
        /// The first offset of the open transaction (see find-hanging or describe-producers)
        #[arg(long, value_name = "OFFSET")]
        start_offset: Option<i64>,
        /// The producer id holding the transaction open (with --producer-epoch and
        /// --coordinator-epoch)
        #[arg(long, value_name = "N", requires_all = ["producer_epoch", "coordinator_epoch"])]
        producer_id: Option<i64>,
        /// The producer's epoch
        #[arg(long, value_name = "N", requires = "producer_id")]
        producer_epoch: Option<i16>,
        /// The coordinator epoch of the producer's last marker on the partition (0 if none)
        #[arg(long, value_name = "N", requires = "producer_id")]
        coordinator_epoch: Option<i32>,
    },
}

/// `icestream schema ...`
#[derive(clap::Subcommand, Debug, Clone)]
pub enum SchemaCommand {
    /// Register a schema under a subject; prints its id
    Register {
        /// Subject, e.g. orders-value
        subject: String,
        /// File holding the schema text
        #[arg(short, long)]
        file: String,
        /// Schema type: AVRO, JSON or PROTOBUF
        #[arg(short = 't', long = "type", default_value = "AVRO")]
        schema_type: schema::SchemaType,
        /// A reference NAME=SUBJECT:VERSION (a named type, $ref or import); repeatable
        #[arg(short = 'r', long = "reference", value_name = "NAME=SUBJECT:VERSION")]
        references: Vec<schema::Reference>,
    },
    /// Show a subject's schema at a version, or the schema with an id
    Get {
        /// Subject (omit with --id)
        #[arg(required_unless_present = "id", conflicts_with = "id")]
        subject: Option<String>,
        /// Version: a number or latest
        #[arg(short, long, conflicts_with = "id")]
        version: Option<schema::Version>,
        /// Global schema id
        #[arg(long)]
        id: Option<u32>,
    },
    /// List subjects, or the versions of one subject
    List {
        /// Subject whose versions to list
        subject: Option<String>,
        /// Include soft-deleted subjects or versions
        #[arg(long)]
        deleted: bool,
    },
    /// Check whether a schema is compatible with a subject; exits non-zero when not
    Check {
        /// Subject
        subject: String,
        /// File holding the new schema text
        #[arg(short, long)]
        file: String,
        /// Schema type: AVRO, JSON or PROTOBUF
        #[arg(short = 't', long = "type", default_value = "AVRO")]
        schema_type: schema::SchemaType,
        /// A reference NAME=SUBJECT:VERSION (a named type, $ref or import); repeatable
        #[arg(short = 'r', long = "reference", value_name = "NAME=SUBJECT:VERSION")]
        references: Vec<schema::Reference>,
        /// Version to check against: a number or latest (default: what the level names)
        #[arg(short, long)]
        version: Option<schema::Version>,
    },
    /// Delete a subject or one version (soft, or for good with --permanent)
    Delete {
        /// Subject
        subject: String,
        /// Only this version: a number or latest
        #[arg(short, long)]
        version: Option<schema::Version>,
        /// Delete for good (soft-deletes first when needed)
        #[arg(long)]
        permanent: bool,
    },
    /// Show or set the compatibility level, of a subject or global
    Config {
        /// Subject (default: the global level)
        subject: Option<String>,
        /// New level: BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE or NONE
        #[arg(long, value_name = "LEVEL")]
        set: Option<String>,
    },
    /// Show or set the mode, of a subject or global
    Mode {
        /// Subject (default: the global mode)
        subject: Option<String>,
        /// New mode: READWRITE, READONLY, READONLY_OVERRIDE or IMPORT
        #[arg(long, value_name = "MODE")]
        set: Option<String>,
        /// Allow IMPORT on a registry or subject that already has schemas
        #[arg(long)]
        force: bool,
    },
}

/// Runs one `icestream schema` command against the schema registry.
pub async fn run_schema(args: &ClientArgs, cmd: SchemaCommand) -> anyhow::Result<()> {
    match cmd {
        SchemaCommand::Register {
            subject,
            file,
            schema_type,
            references,
        } => schema::register(args, &subject, &file, schema_type, &references).await,
        SchemaCommand::Get {
            subject,
            version,
            id,
        } => schema::get(args, subject.as_deref(), version, id).await,
        SchemaCommand::List { subject, deleted } => {
            schema::list(args, subject.as_deref(), deleted).await
        }
        SchemaCommand::Check {
            subject,
            file,
            schema_type,
            references,
            version,
        } => schema::check(args, &subject, &file, schema_type, &references, version).await,
        SchemaCommand::Delete {
            subject,
            version,
            permanent,
        } => schema::delete(args, &subject, version, permanent).await,
        SchemaCommand::Config { subject, set } => {
            schema::config(args, subject.as_deref(), set.as_deref()).await
        }
        SchemaCommand::Mode {
            subject,
            set,
            force,
        } => schema::mode(args, subject.as_deref(), set.as_deref(), force).await,
    }
}

/// Runs one `icestream group` command.
pub async fn run_group(args: &ClientArgs, cmd: GroupCommand) -> anyhow::Result<()> {
    match cmd {
        GroupCommand::List => group::list(args).await,
        GroupCommand::Describe { name } => group::describe(args, &name).await,
        GroupCommand::Delete { names } => group::delete(args, &names).await,
        GroupCommand::Seek {
            name,
            topic,
            to,
            partition,
        } => group::seek(args, &name, &topic, to, partition).await,
    }
}

/// Runs one `icestream transaction` command.
pub async fn run_transaction(args: &ClientArgs, cmd: TransactionCommand) -> anyhow::Result<()> {
    match cmd {
        TransactionCommand::List {
            states,
            producer_ids,
        } => transaction::list(args, &states, &producer_ids).await,
        TransactionCommand::Describe { transactional_id } => {
            transaction::describe(args, &transactional_id).await
        }
        TransactionCommand::DescribeProducers { topic, partition } => {
            transaction::describe_producers(args, &topic, partition).await
        }
        TransactionCommand::FindHanging {
            topic,
            partition,
            max_transaction_timeout_ms,
        } => {
            transaction::find_hanging(
                args,
                topic.as_deref(),
                partition,
                max_transaction_timeout_ms,
            )
            .await
        }
        TransactionCommand::Abort {
            topic,
            partition,
            start_offset,
            producer_id,
            producer_epoch,
            coordinator_epoch,
        } => {
            let which = match (start_offset, producer_id, producer_epoch, coordinator_epoch) {
                (Some(o), _, _, _) => transaction::AbortWhich::StartOffset(o),
                (None, Some(id), Some(epoch), Some(coordinator_epoch)) => {
                    transaction::AbortWhich::Producer {
                        id,
                        epoch,
                        coordinator_epoch,
                    }
                }
                _ => anyhow::bail!(
                    "say which transaction to abort: --start-offset, or --producer-id with --producer-epoch and --coordinator-epoch"
                ),
            };
            transaction::abort(args, &topic, partition, which).await
        }
    }
}

/// Runs one `icestream topic` command against the broker.
pub async fn run_topic(args: &ClientArgs, cmd: TopicCommand) -> anyhow::Result<()> {
    match cmd {
        TopicCommand::Create {
            name,
            partitions,
            replicas,
            config,
        } => topic::create(args, &name, partitions, replicas, &config).await,
        TopicCommand::List => topic::list(args).await,
        TopicCommand::Describe { name } => topic::describe(args, &name).await,
        TopicCommand::Delete { names } => topic::delete(args, &names).await,
        TopicCommand::AlterConfig { name, set, delete } => {
            topic::alter_config(args, &name, &set, &delete).await
        }
        TopicCommand::AddPartitions { name, count } => {
            topic::add_partitions(args, &name, count).await
        }
        TopicCommand::Produce {
            name,
            key,
            partition,
            acks,
            compression,
        } => {
            let opts = produce::ProduceOptions {
                key,
                partition,
                acks,
                compression,
            };
            produce::run(args, &name, opts).await
        }
        TopicCommand::Consume {
            name,
            partition,
            offset,
            num,
        } => consume::run(args, &name, partition, offset, num).await,
    }
}

/// Runs one `icestream cluster` command.
pub async fn run_cluster(args: &ClientArgs, cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Info => cluster::info(args).await,
        ClusterCommand::Health => cluster::health(args).await,
        ClusterCommand::Status => cluster::status(args).await,
        ClusterCommand::Decommission { node } => cluster::decommission(args, node).await,
        ClusterCommand::Backup { out } => cluster::backup(args, &out).await,
        ClusterCommand::Reassign {
            topic,
            partition,
            replicas,
            cancel: _,
        } => cluster::reassign(args, &topic, partition, replicas).await,
        ClusterCommand::Storage(StorageCommand::Unmount { topic }) => {
            storage::unmount(args, &topic).await
        }
        ClusterCommand::Storage(StorageCommand::Mount {
            topic,
            new_name,
            replication_factor,
        }) => storage::mount(args, &topic, new_name.as_deref(), replication_factor).await,
        ClusterCommand::Storage(StorageCommand::ListMountable) => {
            storage::list_mountable(args).await
        }
    }
}

#[cfg(test)]
mod tests;
