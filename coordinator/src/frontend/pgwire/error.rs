//! Maps Creek error codes to SQLSTATE: the one exhaustive table for the PostgreSQL protocol.

use creek_common::ErrorCode;
use pgwire::error::{ErrorInfo, PgWireError};

use crate::error::Error;

/// Returns the SQLSTATE of an error code.
pub fn sqlstate(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::SyntaxError => "42601",
        ErrorCode::UndefinedTable => "42P01",
        ErrorCode::UndefinedColumn => "42703",
        ErrorCode::UndefinedSchema => "3F000",
        ErrorCode::UndefinedFunction => "42883",
        ErrorCode::UndefinedObject => "42704",
        ErrorCode::DuplicateObject => "42P07",
        ErrorCode::DuplicateKey => "23505",
        ErrorCode::InvalidTextRepresentation => "22P02",
        ErrorCode::InvalidEncoding => "22021",
        ErrorCode::DatatypeMismatch => "42804",
        ErrorCode::DivisionByZero => "22012",
        ErrorCode::NumericOutOfRange => "22003",
        ErrorCode::CardinalityViolation => "21000",
        ErrorCode::DependentObjectsStillExist => "2BP01",
        ErrorCode::NotNullViolation => "23502",
        ErrorCode::InvalidParameterValue => "22023",
        ErrorCode::BadCopyFileFormat => "22P04",
        ErrorCode::FeatureNotSupported => "0A000",
        ErrorCode::QueryCanceled => "57014",
        ErrorCode::DataCorrupted => "XX001",
        ErrorCode::Unavailable => "58000",
        ErrorCode::ProgramLimitExceeded => "54000",
        ErrorCode::UndefinedParameter => "42P02",
        ErrorCode::DatetimeOverflow => "22008",
        ErrorCode::DuplicatePreparedStatement => "42P05",
        ErrorCode::UndefinedPreparedStatement => "26000",
        ErrorCode::SerializationFailure => "40001",
        ErrorCode::Internal => "XX000",
    }
}

/// Converts a Creek error into a pgwire ErrorResponse.
pub fn to_pg_error(error: &Error) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        sqlstate(error.code()).to_string(),
        error.client_message(),
    )))
}
