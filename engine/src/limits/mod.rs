//! Resource limits every listener and the broker share: connection counts and the memory Fetch
//! responses may hold.

pub mod connections;
pub mod fetch_memory;
