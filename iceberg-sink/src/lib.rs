//! Iceberg topics for Icestream.
//!
//! [`catalog`] is the built-in Iceberg REST catalog the broker serves (default
//! `127.0.0.1:8181`), backed by an object store. Still to come in this crate: the translator
//! (log -> Arrow -> Parquet -> Iceberg commit, with the Kafka offsets each snapshot covers
//! recorded in its summary for exactly-once resumption), the dead-letter table, partition specs
//! and schema evolution; the translator commits through [`catalog::Catalog`] in-process.

pub mod catalog;
pub mod decode;
