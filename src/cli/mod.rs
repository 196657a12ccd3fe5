//! The operator CLI: `icestream topic ...` and `icestream cluster ...`.
//!
//! Like Redpanda's `rpk`, every command is a client of the running broker over its
//! public APIs (the Kafka protocol and the admin HTTP API); nothing here reads the data
//! directory. Every failure becomes one `anyhow` error whose Display is a single line
//! saying what went wrong and what to do; `main` prints it as `error: {e}`.

mod batches;
mod client;
mod cluster;
mod consume;
mod errors;
mod group;
mod http;
mod offsets;
mod output;
mod partitioner;
mod produce;
mod table;
mod topic;

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
    /// Output format
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
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
        /// Where to: start, end, or an offset
        #[arg(long)]
        to: group::SeekTo,
        /// Only this partition (default: all)
        #[arg(short, long)]
        partition: Option<i32>,
    },
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
    }
}

#[cfg(test)]
mod tests;
