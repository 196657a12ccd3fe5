//! Iceberg topics for Icestream.
//!
//! - [`catalog`]: the built-in Iceberg REST catalog the broker serves (default
//!   `127.0.0.1:8181`), backed by an object store.
//! - [`lake`]: the catalog seam the translator commits through (`iceberg::Catalog`): the
//!   built-in catalog in-process, or an external REST catalog.
//! - [`translator`]: log -> Arrow -> Parquet -> Iceberg commit, one task per Iceberg topic,
//!   with the Kafka offsets each snapshot covers in its summary ([`offsets`]) for exactly-once
//!   resumption; one broker per topic commits the rounds ([`committer`], [`commit`]). Table layouts: [`key_value`]; partition specs: [`spec`]; topic settings:
//!   [`settings`]; schema-driven values: [`decode`]; metrics and admin routes: [`metrics`], [`routes`];
//!   the newest data files and dead letters the console shows: [`browse`].

pub mod browse;
pub mod catalog;
pub mod commit;
pub mod committer;
pub mod decode;
pub mod dlq;
pub mod error;
pub mod files;
pub mod key_value;
pub mod lake;
pub mod metrics;
pub mod object_io;
pub mod offsets;
mod routes;
pub mod schema_mode;
pub mod settings;
pub mod spec;
pub mod status;
mod table;
pub mod translator;
mod unmount_gate;

pub use error::SinkError;
/// The `iceberg` crate, for the binary to name its catalog trait without its own dependency.
pub use iceberg;
pub use translator::{Translator, TranslatorConfig};
