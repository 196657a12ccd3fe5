//! Per-topic translation metrics, registered under `iceberg_` (so `icestream_iceberg_...`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: String,
}

engine::metric_set! {
    /// Registered under `iceberg_` (so `icestream_iceberg_...`).
    pub struct Metrics in "iceberg" {
        /// Records in the log not yet committed to the topic's Iceberg table
        pub lag_records: Family<TopicLabel, Gauge> => "translation_lag_records",
        /// How long the oldest untranslated data has waited (0 when caught up)
        pub lag_ms: Family<TopicLabel, Gauge> => "translation_lag_ms",
        /// The topic's iceberg.target.lag.ms: how stale its table may be
        pub target_lag_ms: Family<TopicLabel, Gauge> => "target_lag_ms",
        /// Records this broker's committer landed in Iceberg tables
        pub records: Family<TopicLabel, Counter> => "records_written",
        /// Parquet data files this broker's committer landed
        pub files: Family<TopicLabel, Counter> => "files_written",
        /// Bytes of Parquet data files this broker's committer landed
        pub bytes: Family<TopicLabel, Counter> => "bytes_written",
        /// Snapshots this broker committed as the topic's committer
        pub commits: Family<TopicLabel, Counter> => "commits",
        /// Translation rounds this broker's committer landed (several per snapshot when batched)
        pub rounds: Family<TopicLabel, Counter> => "committer_rounds",
        /// Rounds this broker's committer refused because the table already covered them
        pub rounds_superseded: Family<TopicLabel, Counter> => "committer_rounds_superseded",
        /// Failed translation rounds (read, write or commit; each is retried)
        pub commit_errors: Family<TopicLabel, Counter> => "commit_errors",
        /// Records that could not be decoded, written to the <topic>~dlq table
        pub dlq_records: Family<TopicLabel, Counter> => "dlq_records",
        /// Records that could not be decoded, dropped (iceberg.invalid.record.action=drop)
        pub dropped_records: Family<TopicLabel, Counter> => "dropped_records",
        /// Offsets retention or DeleteRecords removed before they were translated
        pub skipped_records: Family<TopicLabel, Counter> => "skipped_records",
    }
}

impl Metrics {
    /// Creates a translated topic's counters at 0, so that dashboards and alerts see them
    /// before the first commit or error.
    pub fn touch(&self, label: &TopicLabel) {
        for f in [
            &self.records,
            &self.files,
            &self.bytes,
            &self.commits,
            &self.rounds,
            &self.rounds_superseded,
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
