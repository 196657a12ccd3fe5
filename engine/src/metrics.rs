//! Prometheus metrics, served by the admin API at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

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
    pub fetched_bytes: Counter,
    pub fsync_seconds: Histogram,
    pub connections: Gauge,
    pub connections_closed_bad_input: Counter,
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
            fetched_bytes: Counter::default(),
            fsync_seconds,
            connections: Gauge::default(),
            connections_closed_bad_input: Counter::default(),
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
            data_dir_free_bytes: Gauge::default(),
            data_dir_total_bytes: Gauge::default(),
            rpc_rejected: Family::default(),
            registry: parking_lot::Mutex::new(Registry::default()),
            scrape_hooks: parking_lot::Mutex::new(Vec::new()),
            consumer_group_lag: Family::default(),
        };
        registry.register(
            "rpc_rejected",
            "Inter-broker RPC messages dropped or refused (forged, corrupt or impossible), by reason",
            m.rpc_rejected.clone(),
        );
        registry.register(
            "kafka_consumer_group_lag",
            "High watermark minus the group's committed offset, by group, topic and partition",
            m.consumer_group_lag.clone(),
        );
        registry.register(
            "kafka_requests",
            "Kafka requests handled, by API",
            m.requests.clone(),
        );
        registry.register(
            "kafka_request_seconds",
            "Kafka request latency, by API",
            m.request_seconds.clone(),
        );
        registry.register(
            "kafka_request_errors",
            "Kafka error codes returned, by API and error",
            m.request_errors.clone(),
        );
        registry.register(
            "kafka_produced_bytes",
            "Record batch bytes appended",
            m.produced_bytes.clone(),
        );
        registry.register(
            "kafka_produced_records",
            "Records appended",
            m.produced_records.clone(),
        );
        registry.register(
            "kafka_fetched_bytes",
            "Record batch bytes served to fetches",
            m.fetched_bytes.clone(),
        );
        registry.register(
            "storage_fsync_seconds",
            "fdatasync latency of segment files",
            m.fsync_seconds.clone(),
        );
        registry.register(
            "kafka_connections",
            "Open Kafka client connections",
            m.connections.clone(),
        );
        registry.register(
            "kafka_connections_closed_bad_input",
            "Connections closed for malformed or oversized frames",
            m.connections_closed_bad_input.clone(),
        );
        registry.register(
            "connections_refused",
            "New connections closed at once because the listener's total or per-IP limit was reached, by listener",
            m.connections_refused.clone(),
        );
        registry.register(
            "fetch_memory_bytes",
            "Bytes reserved by Fetch responses being read or waiting to be written (bounded by --fetch-memory-bytes)",
            m.fetch_memory_bytes.clone(),
        );
        registry.register(
            "partitions",
            "Partitions hosted by this broker",
            m.partitions.clone(),
        );
        registry.register("topics", "Topics", m.topics.clone());
        registry.register(
            "storage_recovery_truncated_bytes",
            "Bytes of torn writes truncated at start-up",
            m.recovery_truncated_bytes.clone(),
        );
        registry.register(
            "storage_failed_partitions",
            "Partition replicas stopped by a write or sync error (they recover at restart)",
            m.storage_failed_partitions.clone(),
        );
        registry.register(
            "storage_low_disk",
            "1 while produce is refused because the data volume is nearly full",
            m.storage_low_disk.clone(),
        );
        m.register_topic_and_partition_metrics(&mut registry);
        Metrics {
            registry: parking_lot::Mutex::new(registry),
            ..m
        }
    }

    fn register_topic_and_partition_metrics(&self, registry: &mut Registry) {
        registry.register(
            "topic_produced_bytes",
            "Record batch bytes accepted by Produce on the partition leader, by topic",
            self.topic_produced_bytes.clone(),
        );
        registry.register(
            "topic_fetched_bytes",
            "Record batch bytes returned to Fetch requests, by topic",
            self.topic_fetched_bytes.clone(),
        );
        registry.register(
            "log_local_bytes",
            "Bytes of the topic's partition logs on this broker's disk, by topic",
            self.log_local_bytes.clone(),
        );
        registry.register(
            "log_remote_bytes",
            "Bytes of the topic's segments in the remote tier, by topic (remote.storage.enable)",
            self.log_remote_bytes.clone(),
        );
        registry.register(
            "under_replicated_partitions",
            "Partitions this broker leads whose in-sync replicas are fewer than their replicas",
            self.under_replicated_partitions.clone(),
        );
        registry.register(
            "offline_partitions",
            "Partitions with no live leader (reported by the controller leader only; 0 elsewhere)",
            self.offline_partitions.clone(),
        );
        registry.register(
            "leader_partitions",
            "Partitions this broker leads",
            self.leader_partitions.clone(),
        );
        registry.register(
            "leader_changes",
            "Partition leaderships this broker took (each change is counted once, by the new leader)",
            self.leader_changes.clone(),
        );
        registry.register(
            "data_dir_free_bytes",
            "Bytes available to the broker on the data directory's file system",
            self.data_dir_free_bytes.clone(),
        );
        registry.register(
            "data_dir_total_bytes",
            "Size of the data directory's file system",
            self.data_dir_total_bytes.clone(),
        );
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
