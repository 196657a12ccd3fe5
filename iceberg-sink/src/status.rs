//! What `GET /v1/iceberg/topics/{topic}` reports: the table, its last snapshot and the lag.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct SnapshotInfo {
    pub snapshot_id: i64,
    pub timestamp_ms: i64,
    /// The snapshot summary's extra properties, including the Kafka offsets it covers.
    pub summary: BTreeMap<String, String>,
}

/// A topic's translation state as its task last saw it.
#[derive(Debug, Clone, Default)]
pub struct TopicStatus {
    pub mode: String,
    pub table: String,
    pub table_exists: bool,
    pub location: Option<String>,
    pub snapshot: Option<SnapshotInfo>,
    /// `(partition, next offset the table lacks, high watermark)`.
    pub partitions: Vec<(i32, i64, i64)>,
    pub target_lag_ms: u64,
    pub lag_ms: u64,
    pub last_error: Option<String>,
}
