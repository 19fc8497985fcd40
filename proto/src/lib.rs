//! Generated gRPC/prost types for the coordinator ↔ data node protocol, plus the thin
//! conversions both sides need (error codes in gRPC metadata, Arrow IPC framing).
//!
//! This crate holds no logic of either role: the coordinator and the data node depend on it,
//! never on each other.

pub mod cluster_auth;
pub mod exec;
pub mod ipc;
pub mod node_stats;
pub mod status;
pub mod ticket;
pub mod transport;

/// Generated protobuf and gRPC code for `creek.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("creek.v1");
}

pub use arrow_flight;
