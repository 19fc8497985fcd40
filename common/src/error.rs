//! The small, stable set of error kinds every Creek crate maps its failures onto.
//!
//! Codes are mapped to the outside world (SQLSTATE, CrateDB HTTP codes, HTTP status) only at the
//! edges, in the coordinator's frontends. This module must stay free of protocol specifics.

use serde::{Deserialize, Serialize};

/// Names a kind of failure, independent of the protocol that reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The SQL text does not parse.
    SyntaxError,
    /// A table or view does not exist.
    UndefinedTable,
    /// A column does not exist.
    UndefinedColumn,
    /// A schema does not exist.
    UndefinedSchema,
    /// A function does not exist or has no matching signature.
    UndefinedFunction,
    /// A type or other named object does not exist.
    UndefinedObject,
    /// A table, view or column exists already.
    DuplicateObject,
    /// A primary key value exists already.
    DuplicateKey,
    /// A value cannot be converted to the target type.
    InvalidTextRepresentation,
    /// Input bytes are not valid in the client encoding (UTF-8).
    InvalidEncoding,
    /// A value has the wrong type for its column or operator.
    DatatypeMismatch,
    /// Division by zero.
    DivisionByZero,
    /// A numeric value is out of range for its type.
    NumericOutOfRange,
    /// A NOT NULL column got a null.
    NotNullViolation,
    /// A parameter or argument is invalid.
    InvalidParameterValue,
    /// The statement is valid SQL but Creek does not support it.
    FeatureNotSupported,
    /// The query was cancelled by the client.
    QueryCanceled,
    /// Stored data failed a checksum or could not be decoded.
    DataCorrupted,
    /// A node or shard could not be reached.
    Unavailable,
    /// A request is larger than the configured limit.
    ProgramLimitExceeded,
    /// Any failure that is a bug or an unexpected environment problem.
    Internal,
}

impl ErrorCode {
    /// Returns whether retrying the same request may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::Unavailable)
    }

    /// Returns a stable lowercase name used in metadata headers between nodes.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::SyntaxError => "syntax_error",
            ErrorCode::UndefinedTable => "undefined_table",
            ErrorCode::UndefinedColumn => "undefined_column",
            ErrorCode::UndefinedSchema => "undefined_schema",
            ErrorCode::UndefinedFunction => "undefined_function",
            ErrorCode::UndefinedObject => "undefined_object",
            ErrorCode::DuplicateObject => "duplicate_object",
            ErrorCode::DuplicateKey => "duplicate_key",
            ErrorCode::InvalidTextRepresentation => "invalid_text_representation",
            ErrorCode::InvalidEncoding => "invalid_encoding",
            ErrorCode::DatatypeMismatch => "datatype_mismatch",
            ErrorCode::DivisionByZero => "division_by_zero",
            ErrorCode::NumericOutOfRange => "numeric_out_of_range",
            ErrorCode::NotNullViolation => "not_null_violation",
            ErrorCode::InvalidParameterValue => "invalid_parameter_value",
            ErrorCode::FeatureNotSupported => "feature_not_supported",
            ErrorCode::QueryCanceled => "query_canceled",
            ErrorCode::DataCorrupted => "data_corrupted",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::ProgramLimitExceeded => "program_limit_exceeded",
            ErrorCode::Internal => "internal",
        }
    }

    /// Parses the name produced by [`ErrorCode::as_str`].
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        ALL_CODES.iter().copied().find(|code| code.as_str() == name)
    }
}

const ALL_CODES: [ErrorCode; 21] = [
    ErrorCode::InvalidEncoding,
    ErrorCode::UndefinedObject,
    ErrorCode::SyntaxError,
    ErrorCode::UndefinedTable,
    ErrorCode::UndefinedColumn,
    ErrorCode::UndefinedSchema,
    ErrorCode::UndefinedFunction,
    ErrorCode::DuplicateObject,
    ErrorCode::DuplicateKey,
    ErrorCode::InvalidTextRepresentation,
    ErrorCode::DatatypeMismatch,
    ErrorCode::DivisionByZero,
    ErrorCode::NumericOutOfRange,
    ErrorCode::NotNullViolation,
    ErrorCode::InvalidParameterValue,
    ErrorCode::FeatureNotSupported,
    ErrorCode::QueryCanceled,
    ErrorCode::DataCorrupted,
    ErrorCode::Unavailable,
    ErrorCode::ProgramLimitExceeded,
    ErrorCode::Internal,
];

/// An error that carries a Creek [`ErrorCode`] through layers that only know `dyn Error`
/// (DataFusion's `External`, tonic statuses).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct CodedError {
    /// The kind of failure.
    pub code: ErrorCode,
    /// A client-facing message: lowercase, no trailing period.
    pub message: String,
}

impl CodedError {
    /// Creates an error of `code` with a client-facing `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> CodedError {
        CodedError {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_name() {
        for code in ALL_CODES {
            assert_eq!(ErrorCode::from_name(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::from_name("nope"), None);
    }
}
