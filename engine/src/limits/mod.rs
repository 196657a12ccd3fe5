//! Resource limits every listener and the broker share: connection counts, the memory Fetch
//! responses may hold, and the clients' quotas.

pub mod connections;
pub mod fetch_memory;
pub mod quotas;
