//! The Kafka listener: sockets, frames and connections.

pub mod connection;
pub mod frame;
pub mod listener;
