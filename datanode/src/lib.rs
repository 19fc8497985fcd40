//! The data node: holds shards (a tantivy index plus a translog each), applies writes durably,
//! and executes plan fragments next to the data, streaming Arrow batches over Flight.
//!
//! It owns storage and local execution only. It must not parse SQL, plan queries across nodes or
//! decide where shards live: the coordinator does that and talks to this crate over gRPC and
//! Arrow Flight only (see `creek-proto`).

pub mod cluster_client;
pub mod codec;
pub mod durable_file;
pub mod error;
pub mod export;
pub mod flight;
pub mod graceful_stop;
pub mod membership;
pub mod node;
pub mod recovery;
pub mod replication;
pub mod scan;
pub mod service;
pub mod shard;

pub use error::{Error, Result};
pub use node::{DataNode, DatanodeConfig};
