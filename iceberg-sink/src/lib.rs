//! Iceberg topics for Icestream (not built yet; see the Iceberg issue).
//!
//! This crate will hold the translator (log -> Arrow -> Parquet -> Iceberg commit, with the
//! Kafka offsets each snapshot covers recorded in its summary for exactly-once resumption), the
//! dead-letter table, partition specs and schema evolution, and the built-in Iceberg REST
//! catalog the broker serves.
