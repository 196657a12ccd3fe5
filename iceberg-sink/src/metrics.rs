//! Per-topic translation metrics, registered under `iceberg_` (so `icestream_iceberg_...`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: String,
}

#[derive(Debug, Default, Clone)]
pub struct Metrics {
    pub lag_records: Family<TopicLabel, Gauge>,
    pub lag_ms: Family<TopicLabel, Gauge>,
    pub target_lag_ms: Family<TopicLabel, Gauge>,
    pub records: Family<TopicLabel, Counter>,
    pub files: Family<TopicLabel, Counter>,
    pub bytes: Family<TopicLabel, Counter>,
    pub commits: Family<TopicLabel, Counter>,
    pub commit_errors: Family<TopicLabel, Counter>,
    pub dlq_records: Family<TopicLabel, Counter>,
    pub dropped_records: Family<TopicLabel, Counter>,
    pub skipped_records: Family<TopicLabel, Counter>,
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("iceberg");
        r.register(
            "translation_lag_records",
            "Records in the log not yet committed to the topic's Iceberg table",
            self.lag_records.clone(),
        );
        r.register(
            "translation_lag_ms",
            "How long the oldest untranslated data has waited (0 when caught up)",
            self.lag_ms.clone(),
        );
        r.register(
            "target_lag_ms",
            "The topic's iceberg.target.lag.ms: how stale its table may be",
            self.target_lag_ms.clone(),
        );
        r.register(
            "records_written",
            "Records committed to Iceberg tables",
            self.records.clone(),
        );
        r.register(
            "files_written",
            "Parquet data files committed",
            self.files.clone(),
        );
        r.register(
            "bytes_written",
            "Bytes of Parquet data files committed",
            self.bytes.clone(),
        );
        r.register("commits", "Snapshots committed", self.commits.clone());
        r.register(
            "commit_errors",
            "Failed translation rounds (read, write or commit; each is retried)",
            self.commit_errors.clone(),
        );
        r.register(
            "dlq_records",
            "Records that could not be decoded, written to the <topic>~dlq table",
            self.dlq_records.clone(),
        );
        r.register(
            "dropped_records",
            "Records that could not be decoded, dropped (iceberg.invalid.record.action=drop)",
            self.dropped_records.clone(),
        );
        r.register(
            "skipped_records",
            "Offsets retention or DeleteRecords removed before they were translated",
            self.skipped_records.clone(),
        );
    }

    /// Creates a translated topic's counters at 0, so that dashboards and alerts see them
    /// before the first commit or error.
    pub fn touch(&self, label: &TopicLabel) {
        for f in [
            &self.records,
            &self.files,
            &self.bytes,
            &self.commits,
            &self.commit_errors,
            &self.dlq_records,
            &self.dropped_records,
            &self.skipped_records,
        ] {
            let _ = f.get_or_create(label);
        }
    }

    pub fn label(topic: &str) -> TopicLabel {
        TopicLabel {
            topic: topic.to_string(),
        }
    }
}
