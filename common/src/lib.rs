//! Shared vocabulary of Creek: identifiers, column types, table schemas, shard routing and the
//! stable error codes every crate maps its failures to.
//!
//! This crate owns plain data and pure functions only. It must not do I/O, must not know about
//! any wire protocol (pgwire, HTTP, gRPC) and must not depend on another Creek crate.

pub mod error;
pub mod fulltext;
pub mod functions;
pub mod geo;
pub mod ids;
pub mod object;
pub mod object_uri;
pub mod partition;
pub mod routing;
pub mod schema;
pub mod state;
pub mod types;

pub use error::ErrorCode;
pub use ids::{NodeId, ShardId, TableId};
