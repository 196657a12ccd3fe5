//! Icestream's Confluent-compatible schema registry, served by the broker on its own listener.
//!
//! - [`api`]: the Confluent Schema Registry REST API (subjects, versions, ids, config, mode,
//!   compatibility) with Confluent's content types and error codes.
//! - [`authz`]: who may do what (subjects and the registry are ACL resources, as Redpanda's).
//! - [`avro`]: Avro parsing, schema identity and compatibility by Avro schema resolution.
//! - [`compat`]: compatibility levels and the driver every format's check goes through.
//! - [`forward`]: in a cluster, writes forwarded to the registry of the `_schemas` leader.
//! - [`json_schema`]: JSON Schema parsing, identity and Confluent's JSON Schema compatibility
//!   rules (a hand-written structural checker).
//! - [`metrics`]: request counters for `/metrics`.
//! - [`protobuf`]: `.proto` parsing (protox), identity and Confluent's Protobuf rules.
//! - [`proto_text`]: `.proto` text for schemas registered as descriptors.
//! - [`registry`]: the registry's operations, split by job: errors, format dispatch, the state
//!   rebuilt from `_schemas`, the record encoding and (in a cluster) routing to the leader.
//! - [`store`]: the compacted `_schemas` topic in Confluent's own record format.
//!
//! Avro, JSON Schema and Protobuf are supported; see docs/schema-registry.md.

pub mod api;
pub mod authz;
pub mod avro;
pub mod compat;
pub mod forward;
pub mod json_schema;
pub mod metrics;
pub mod proto_text;
pub mod protobuf;
pub mod registry;
pub mod store;

pub use api::serve;
pub use registry::Registry;
pub use store::SCHEMAS_TOPIC;
