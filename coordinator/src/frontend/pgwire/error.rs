//! Creek errors as PostgreSQL protocol errors (the SQLSTATE table is `ErrorCode::sqlstate`).

use pgwire::error::{ErrorInfo, PgWireError};

use crate::error::Error;

/// Converts a Creek error into a pgwire ErrorResponse.
pub fn to_pg_error(error: &Error) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        error.code().sqlstate().to_string(),
        error.client_message(),
    )))
}
