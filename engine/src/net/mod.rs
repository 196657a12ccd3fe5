//! The Kafka listener: sockets, frames and connections.

pub mod connection;
pub mod fetch_budget;
pub mod frame;
pub mod limit;
pub mod listener;
