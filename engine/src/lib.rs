//! Icestream's engine: the Kafka protocol server, shards, partitions and log storage.
//!
//! The engine knows nothing of tiering, Iceberg or the schema registry; those crates plug into
//! its seams (see `docs/architecture.md`). Reading order: [`broker`] wires everything;
//! [`net`] turns bytes into requests; [`handlers`] holds one file per Kafka API;
//! [`partition`] is the single-writer actor that owns a partition's [`log`]; [`shard`] runs
//! those actors thread-per-core; [`replication`] is where Raft plugs in.

pub mod admin;
pub mod admin_security;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod disk_space;
pub mod durability;
pub mod dynamic_config;
pub mod fetch_session;
pub mod group;
pub mod handlers;
pub mod http;
pub mod http_auth;
pub mod internal_topic;
pub mod limits;
pub mod log;
pub mod log_reader;
pub mod metrics;
pub mod names;
pub mod net;
pub mod partition;
pub mod producer_ids;
pub mod raft;
pub mod reconciler;
pub mod remote;
pub mod replication;
pub mod schema_ids;
pub mod scrape;
pub mod security;
pub mod shard;
pub mod syncfs;
pub mod time;
pub mod topic_jobs;
pub mod topic_labels;
pub mod topics;
pub mod txn;
pub mod unmount;
pub mod vectored;

pub use broker::Broker;
pub use config::{BrokerConfig, ClusterDefaults};
pub use durability::IoBackend;
