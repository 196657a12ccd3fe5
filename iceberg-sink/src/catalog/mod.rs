//! The built-in Iceberg REST catalog.
//!
//! - [`Catalog`]: the operations (namespaces; tables: create, load, commit, drop, rename,
//!   register), callable in-process, over any `object_store::ObjectStore`.
//! - [`router`] / [`serve`]: the Iceberg REST OpenAPI endpoints engines call (pyiceberg,
//!   DuckDB, Spark, Trino), with errors as the spec's `ErrorModel`.
//!
//! Layout in the store: `<catalog>/namespaces/<ns>.json` (properties),
//! `<catalog>/tables/<ns>/<table>.json` (pointer to the current metadata file) and
//! `<warehouse>/<ns>/<table>/metadata/<version>-<uuid>.metadata.json`. See docs/iceberg.md.

#[allow(clippy::module_inception)]
mod catalog;
mod error;
mod http;
mod locks;
pub mod names;
mod store;
pub mod vending;
mod wire;

pub use catalog::{Catalog, CatalogConfig, LoadedTable, PropertiesUpdate, TableChange};
pub use error::{CatalogError, Result};
pub use http::{router, serve};

#[cfg(test)]
mod tests;
