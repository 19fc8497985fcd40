//! The coordinator: accepts client connections (pgwire, HTTP), parses and plans SQL with
//! DataFusion over the cluster-state catalog, sends plan fragments to data nodes over Arrow
//! Flight and writes over gRPC, and merges the results.
//!
//! It owns no table data and must never depend on the `creek-datanode` crate: everything it
//! knows about shards comes from cluster state, and everything it does to them goes over the
//! wire through `creek-proto`.

pub mod catalog;
pub mod cluster;
pub mod consensus;
pub mod error;
pub mod frontend;
pub mod jobs;
pub mod memory;
pub mod plan;
pub mod session;
pub mod sql;

pub use error::{Error, Result};
