//! Client protocols. Each one only decodes requests, calls [`crate::session::Session::execute`]
//! and encodes the answer; error codes are mapped to the protocol's own codes here and only here.

pub mod flight_sql;
pub mod float_text;
pub mod http;
pub mod pgwire;

/// The PostgreSQL version Creek reports to clients.
pub const SERVER_VERSION: &str = "15.0";
/// The CrateDB-compatible version reported by `GET /`.
pub const CRATE_VERSION: &str = "5.10.0";
