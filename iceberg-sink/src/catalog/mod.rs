//! The built-in Iceberg REST catalog.
//!
//! - [`Catalog`]: the operations (namespaces; tables: create, load, commit, drop, rename,
//!   register), callable in-process, over any `object_store::ObjectStore`.
//! - [`router`] / [`serve`]: the Iceberg REST OpenAPI endpoints engines call (pyiceberg,
//!   DuckDB, Spark, Trino), with errors as the spec's `ErrorModel`, behind the broker's HTTP
//!   authentication; [`authz`]: tables follow their topics' ACLs.
//!
//! Layout in the store: `<catalog>/namespaces/<ns>/<version>.json` (properties),
//! `<catalog>/tables/<ns>/<table>/<version>.json` (the current metadata file: the newest
//! version wins, each created once, see `pointers.rs`) and
//! `<warehouse>/<ns>/<table>/metadata/<version>-<uuid>.metadata.json`. Pointers of the
//! earlier layout (`<ns>.json`, `<table>.json`) are migrated at startup (`migrate.rs`). See
//! docs/iceberg.md.

pub mod authz;
#[allow(clippy::module_inception)]
mod catalog;
mod error;
mod http;
mod locks;
mod migrate;
pub mod names;
mod pointers;
mod store;
pub mod vending;
mod wire;

pub use catalog::{Catalog, CatalogConfig, LoadedTable, PropertiesUpdate, TableChange};
pub use error::{CatalogError, Result};
pub use http::{router, serve};
pub use migrate::Migrated;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_shared;
