//! Prometheus metrics, served by the admin API at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
pub use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub api: String,
    pub error: String,
}

/// Which listener a connection metric is about: kafka, rpc, admin, schema_registry, iceberg_catalog.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

/// Labels of `icestream_kafka_consumer_group_lag`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LagLabels {
    pub group: String,
    pub topic: String,
    pub partition: String,
}

/// A `topic` label, bounded by [`crate::topic_labels::TopicLabels`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: String,
}

/// Labels of `icestream_rpc_rejected`: why an inter-broker message was dropped or refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub reason: String,
}

/// Inter-broker messages dropped or refused, by reason.
pub type Rejections = Family<RejectLabels, Counter>;

type ScrapeHook = Box<dyn Fn() + Send + Sync>;

pub struct Metrics {
    registry: parking_lot::Mutex<Registry>,
    /// Run before every scrape, to refresh gauges computed on demand (consumer lag).
    scrape_hooks: parking_lot::Mutex<Vec<ScrapeHook>>,
    pub consumer_group_lag: Family<LagLabels, Gauge>,
    pub requests: Family<ApiLabels, Counter>,
    pub request_seconds: Family<ApiLabels, Histogram>,
    pub request_errors: Family<ErrorLabels, Counter>,
    pub produced_bytes: Counter,
    pub produced_records: Counter,
    pub produce_answered_at_local_append: Counter,
    pub fetched_bytes: Counter,
    pub fsync_seconds: Histogram,
    pub connections: Gauge,
    pub connections_closed_bad_input: Counter,
    /// Kafka connections whose TLS handshake failed or timed out.
    pub tls_handshake_failures: Counter,
    /// Connections closed at once because a listener's limits were reached.
    pub connections_refused: Family<ListenerLabels, Counter>,
    /// Bytes reserved by Fetch responses being built or waiting to be written.
    pub fetch_memory_bytes: Gauge,
    pub partitions: Gauge,
    pub topics: Gauge,
    pub recovery_truncated_bytes: Counter,
    /// Partitions on this broker stopped by a storage error (`partition::failure`).
    pub storage_failed_partitions: Gauge,
    /// 1 while produce is refused because the data volume is nearly full (`disk_space`).
    pub storage_low_disk: Gauge,
    /// Bounds the values of every per-topic `topic` label.
    pub topic_labels: crate::topic_labels::TopicLabels,
    pub topic_produced_bytes: Family<TopicLabel, Counter>,
    pub topic_fetched_bytes: Family<TopicLabel, Counter>,
    /// The rest are set at scrape time by [`crate::scrape`].
    pub log_local_bytes: Family<TopicLabel, Gauge>,
    pub log_remote_bytes: Family<TopicLabel, Gauge>,
    pub under_replicated_partitions: Gauge,
    pub offline_partitions: Gauge,
    pub leader_partitions: Gauge,
    /// Counted by the partition's Raft group when this broker takes its leadership.
    pub leader_changes: Counter,
    /// Counted by a partition replica when it installs a snapshot from its leader.
    pub raft_snapshots_installed: Counter,
    pub controller_snapshots_installed: Counter,
    pub data_dir_free_bytes: Gauge,
    pub data_dir_total_bytes: Gauge,
    pub rpc_rejected: Rejections,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("icestream");
        let requests = Family::<ApiLabels, Counter>::default();
        let request_seconds = Family::<ApiLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        let request_errors = Family::<ErrorLabels, Counter>::default();
        let fsync_seconds = Histogram::new(exponential_buckets(0.00005, 2.0, 18));
        let m = Metrics {
            requests,
            request_seconds,
            request_errors,
            produced_bytes: Counter::default(),
            produced_records: Counter::default(),
            produce_answered_at_local_append: Counter::default(),
            fetched_bytes: Counter::default(),
            fsync_seconds,
            connections: Gauge::default(),
            connections_closed_bad_input: Counter::default(),
            tls_handshake_failures: Counter::default(),
            connections_refused: Family::default(),
            fetch_memory_bytes: Gauge::default(),
            partitions: Gauge::default(),
            topics: Gauge::default(),
            recovery_truncated_bytes: Counter::default(),
            storage_failed_partitions: Gauge::default(),
            storage_low_disk: Gauge::default(),
            topic_labels: Default::default(),
            topic_produced_bytes: Family::default(),
            topic_fetched_bytes: Family::default(),
            log_local_bytes: Family::default(),
            log_remote_bytes: Family::default(),
            under_replicated_partitions: Gauge::default(),
            offline_partitions: Gauge::default(),
            leader_partitions: Gauge::default(),
            leader_changes: Counter::default(),
            raft_snapshots_installed: Counter::default(),
            controller_snapshots_installed: Counter::default(),
            data_dir_free_bytes: Gauge::default(),
            data_dir_total_bytes: Gauge::default(),
            rpc_rejected: Family::default(),
            registry: parking_lot::Mutex::new(Registry::default()),
            scrape_hooks: parking_lot::Mutex::new(Vec::new()),
            consumer_group_lag: Family::default(),
        };
        crate::register_metrics!(&mut registry, m, {
            /// Inter-broker RPC messages dropped or refused (forged, corrupt or impossible), by reason
            rpc_rejected => "rpc_rejected",
            /// High watermark minus the group's committed offset, by group, topic and partition
            consumer_group_lag => "kafka_consumer_group_lag",
            /// Kafka requests handled, by API
            requests => "kafka_requests",
            /// Kafka request latency, by API
            request_seconds => "kafka_request_seconds",
            /// Kafka error codes returned, by API and error
            request_errors => "kafka_request_errors",
            /// Record batch bytes appended
            produced_bytes => "kafka_produced_bytes",
            /// Records appended
            produced_records => "kafka_produced_records",
            /// acks=1 produces a partition leader in a cluster answered at its local append, before the group committed them (the others wait for the commit: those behind an idempotent producer's entry, or just after an election)
            produce_answered_at_local_append => "produce_answered_at_local_append",
            /// Record batch bytes served to fetches
            fetched_bytes => "kafka_fetched_bytes",
            /// fdatasync latency of segment files
            fsync_seconds => "storage_fsync_seconds",
            /// Open Kafka client connections
            connections => "kafka_connections",
            /// Connections closed for malformed or oversized frames
            connections_closed_bad_input => "kafka_connections_closed_bad_input",
            /// Connections to SSL and SASL_SSL Kafka listeners whose TLS handshake failed (a plaintext client, a refused or missing client certificate) or timed out
            tls_handshake_failures => "kafka_tls_handshake_failures",
            /// New connections closed at once because the listener's total or per-IP limit was reached, by listener
            connections_refused => "connections_refused",
            /// Bytes reserved by Fetch responses being read or waiting to be written (bounded by --fetch-memory-bytes)
            fetch_memory_bytes => "fetch_memory_bytes",
            /// Partitions hosted by this broker
            partitions => "partitions",
            /// Topics
            topics => "topics",
            /// Bytes of torn writes truncated at start-up
            recovery_truncated_bytes => "storage_recovery_truncated_bytes",
            /// Partition replicas stopped by a write or sync error (they recover at restart)
            storage_failed_partitions => "storage_failed_partitions",
            /// 1 while produce is refused because the data volume is nearly full
            storage_low_disk => "storage_low_disk",
            /// Record batch bytes accepted by Produce on the partition leader, by topic
            topic_produced_bytes => "topic_produced_bytes",
            /// Record batch bytes returned to Fetch requests, by topic
            topic_fetched_bytes => "topic_fetched_bytes",
            /// Bytes of the topic's partition logs on this broker's disk, by topic
            log_local_bytes => "log_local_bytes",
            /// Bytes of the topic's segments in the remote tier, by topic (remote.storage.enable)
            log_remote_bytes => "log_remote_bytes",
            /// Partitions this broker leads whose in-sync replicas are fewer than their replicas
            under_replicated_partitions => "under_replicated_partitions",
            /// Partitions with no live leader (reported by the controller leader only; 0 elsewhere)
            offline_partitions => "offline_partitions",
            /// Partitions this broker leads
            leader_partitions => "leader_partitions",
            /// Partition leaderships this broker took (each change is counted once, by the new leader)
            leader_changes => "leader_changes",
            /// Snapshots partition replicas on this broker installed from their leader (they were behind the leader's Raft log; their segments were copied)
            raft_snapshots_installed => "raft_snapshots_installed",
            /// Metadata snapshots this broker's controller replica installed from the controller leader (it was behind the leader's first log entry: down for a while, or new)
            controller_snapshots_installed => "controller_snapshots_installed",
            /// Bytes available to the broker on the data directory's file system
            data_dir_free_bytes => "data_dir_free_bytes",
            /// Size of the data directory's file system
            data_dir_total_bytes => "data_dir_total_bytes",
        });
        Metrics {
            registry: parking_lot::Mutex::new(registry),
            ..m
        }
    }

    /// The label to count `topic` under (its name, or `other` past the cap).
    pub fn topic_label(&self, topic: &str) -> TopicLabel {
        TopicLabel {
            topic: self.topic_labels.label(topic),
        }
    }

    /// Lets another crate (tiering, the Iceberg sink) register its metrics beside the engine's.
    pub fn register_with(&self, f: impl FnOnce(&mut Registry)) {
        f(&mut self.registry.lock());
    }

    /// The refusal counter of one listener.
    pub fn refused(&self, listener: &str) -> Counter {
        self.connections_refused
            .get_or_create(&ListenerLabels {
                listener: listener.to_string(),
            })
            .clone()
    }

    /// Registers a function run before every scrape.
    pub fn on_scrape(&self, hook: ScrapeHook) {
        self.scrape_hooks.lock().push(hook);
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        for hook in self.scrape_hooks.lock().iter() {
            hook();
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry.lock()).is_err() {
            out.clear();
        }
        out
    }
}

/// The help text of a metric from the lines of its doc comment.
#[doc(hidden)]
pub fn help_text(lines: &[&str]) -> String {
    lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ")
}

/// Registers fields of `$set` in `$registry`, each under its name with its doc comment as the
/// help text: one line a metric instead of a `register` call each (the engine's metrics, and
/// [`metric_set!`]'s for the other crates).
#[macro_export]
macro_rules! register_metrics {
    ($registry:expr, $set:expr, { $( $(#[doc = $help:literal])+ $field:ident => $name:literal ),* $(,)? }) => {{
        let registry: &mut $crate::metrics::Registry = $registry;
        $( registry.register($name, $crate::metrics::help_text(&[$($help),+]), $set.$field.clone()); )*
    }};
}

/// A crate's metrics as one declaration: the struct (`Debug`, `Default`, `Clone`; clones share
/// the values) and `register`, which puts every field in a registry under `$prefix`, named as
/// given, its doc comment as the help text. Used by tiering and the Iceberg sink.
#[macro_export]
macro_rules! metric_set {
    (
        $(#[$meta:meta])*
        $vis:vis struct $set:ident in $prefix:literal {
            $( $(#[doc = $help:literal])+ $fvis:vis $field:ident: $ty:ty => $name:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default, Clone)]
        $vis struct $set {
            $( $(#[doc = $help])+ $fvis $field: $ty, )*
        }

        impl $set {
            /// Registers every metric under the set's prefix.
            pub fn register(&self, registry: &mut $crate::metrics::Registry) {
                let r = registry.sub_registry_with_prefix($prefix);
                $crate::register_metrics!(r, self, { $( $(#[doc = $help])+ $field => $name ),* });
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    crate::metric_set! {
        struct Sample in "sample" {
            /// Things counted,
            /// over two lines
            pub things: Counter => "things",
        }
    }

    #[test]
    fn a_metric_set_registers_each_field_with_its_doc_as_help() {
        let m = Sample::default();
        m.clone().things.inc();
        let mut registry = prometheus_client::registry::Registry::with_prefix("icestream");
        m.register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(
            out.contains("# HELP icestream_sample_things Things counted, over two lines.\n"),
            "{out}"
        );
        assert!(out.contains("icestream_sample_things_total 1\n"), "{out}");
    }

    #[test]
    fn the_engine_registers_its_metrics_with_their_help() {
        let out = super::Metrics::new().encode();
        assert!(out.contains("# HELP icestream_kafka_requests Kafka requests handled, by API.\n"));
        assert!(out.contains(
            "# HELP icestream_data_dir_total_bytes Size of the data directory's file system.\n"
        ));
    }
}
