//! Icestream's Confluent-compatible schema registry (not built yet; see the schema-registry issue).
//!
//! This crate will hold the Schema Registry REST API (subjects, versions, ids, config, mode,
//! compatibility), Avro, Protobuf and JSON Schema support with the Confluent compatibility rules,
//! and its storage on the compacted `_schemas` topic.
