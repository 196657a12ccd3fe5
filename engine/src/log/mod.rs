//! Log storage: v2 record batches in segment files with sparse indexes.

pub mod batch;
pub mod compaction;
pub mod control;
pub mod cut;
pub mod failpoint;
pub mod file_slice;
pub mod files;
pub mod index;
pub mod partition_log;
pub mod power;
pub mod producer_state;
pub mod records;
pub mod segment;

pub use partition_log::{Appended, LogConfig, PartitionLog, SealedSummary};
