//! SQL: parsing with Creek's extensions, DDL against cluster state, DML routed to shards, and
//! the system schemas. Queries themselves are planned and executed by DataFusion.

pub mod copy;
pub mod ddl;
pub mod dml;
pub mod load;
pub mod parse;
pub mod system;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_plan::SendableRecordBatchStream;

/// The result of one statement.
pub enum Output {
    /// Rows, streamed.
    Rows {
        /// The result schema.
        schema: SchemaRef,
        /// The rows.
        stream: SendableRecordBatchStream,
    },
    /// `COPY ... FROM STDIN`: the protocol must now receive the rows from the client.
    CopyIn(Box<copy::CopyFromStdin>),
    /// A command that changed `count` rows (or 0), reported with `tag` (e.g. `INSERT`).
    Affected {
        /// The command tag, e.g. `INSERT`, `CREATE TABLE`.
        tag: String,
        /// Rows affected.
        count: u64,
    },
}
