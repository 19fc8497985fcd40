//! The small, stable set of error kinds every Creek crate maps its failures onto.
//!
//! Codes are mapped to the outside world (SQLSTATE, CrateDB HTTP codes, HTTP status) only at the
//! edges, in the coordinator's frontends. This module must stay free of protocol specifics.

use datafusion::error::DataFusionError;
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
    /// COPY data that is not well-formed records (field count, an unterminated quote).
    BadCopyFileFormat,
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
    /// A scalar subquery returned more than one row.
    CardinalityViolation,
    /// An object cannot be dropped because others (views) depend on it.
    DependentObjectsStillExist,
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
    /// A `$n` parameter is out of range or has no value.
    UndefinedParameter,
    /// A date or timestamp is outside the range its type can represent.
    DatetimeOverflow,
    /// A prepared statement of that name exists already.
    DuplicatePreparedStatement,
    /// No prepared statement of that name exists.
    UndefinedPreparedStatement,
    /// Rows changed concurrently more often than a read-modify-write retries.
    SerializationFailure,
    /// Any failure that is a bug or an unexpected environment problem.
    Internal,
}

impl ErrorCode {
    /// Returns whether retrying the same request may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Unavailable | ErrorCode::SerializationFailure
        )
    }

    /// Returns the SQLSTATE of this code: what pgwire reports, and Flight in `x-sqlstate`.
    pub fn sqlstate(self) -> &'static str {
        match self {
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
            ErrorCode::CardinalityViolation => "cardinality_violation",
            ErrorCode::DependentObjectsStillExist => "dependent_objects_still_exist",
            ErrorCode::NotNullViolation => "not_null_violation",
            ErrorCode::InvalidParameterValue => "invalid_parameter_value",
            ErrorCode::BadCopyFileFormat => "bad_copy_file_format",
            ErrorCode::FeatureNotSupported => "feature_not_supported",
            ErrorCode::QueryCanceled => "query_canceled",
            ErrorCode::DataCorrupted => "data_corrupted",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::ProgramLimitExceeded => "program_limit_exceeded",
            ErrorCode::UndefinedParameter => "undefined_parameter",
            ErrorCode::DatetimeOverflow => "datetime_overflow",
            ErrorCode::DuplicatePreparedStatement => "duplicate_prepared_statement",
            ErrorCode::UndefinedPreparedStatement => "undefined_prepared_statement",
            ErrorCode::SerializationFailure => "serialization_failure",
            ErrorCode::Internal => "internal",
        }
    }

    /// Parses the name produced by [`ErrorCode::as_str`].
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        ALL_CODES.iter().copied().find(|code| code.as_str() == name)
    }
}

const ALL_CODES: [ErrorCode; 29] = [
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
    ErrorCode::BadCopyFileFormat,
    ErrorCode::DatatypeMismatch,
    ErrorCode::DivisionByZero,
    ErrorCode::NumericOutOfRange,
    ErrorCode::CardinalityViolation,
    ErrorCode::DependentObjectsStillExist,
    ErrorCode::NotNullViolation,
    ErrorCode::InvalidParameterValue,
    ErrorCode::FeatureNotSupported,
    ErrorCode::QueryCanceled,
    ErrorCode::DataCorrupted,
    ErrorCode::Unavailable,
    ErrorCode::ProgramLimitExceeded,
    ErrorCode::UndefinedParameter,
    ErrorCode::DatetimeOverflow,
    ErrorCode::DuplicatePreparedStatement,
    ErrorCode::UndefinedPreparedStatement,
    ErrorCode::SerializationFailure,
    ErrorCode::Internal,
];

/// An error that carries a Creek [`ErrorCode`] through layers that only know `dyn Error`
/// (DataFusion's `External`, tonic statuses).
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
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

impl CodedError {
    /// Classifies a DataFusion error (by its root cause) and keeps a client-facing message.
    pub fn from_datafusion(error: &DataFusionError) -> CodedError {
        let message = match error.find_root() {
            DataFusionError::External(inner) => match inner.downcast_ref::<CodedError>() {
                Some(coded) => coded.message.clone(),
                None => inner.to_string(),
            },
            DataFusionError::ArrowError(inner, _) => strip_prefix(&inner.to_string()),
            DataFusionError::SQL(inner, _) => strip_prefix(&inner.to_string()),
            other => strip_prefix(&other.to_string()),
        };
        CodedError::new(datafusion_code(error), message)
    }
}

/// Removes DataFusion's and Arrow's context prefixes from an error message.
pub fn strip_prefix(message: &str) -> String {
    let mut text = message.trim();
    for prefix in [
        "Error during planning: ",
        "Schema error: ",
        "SQL error: ",
        "Arrow error: ",
        "Execution error: ",
        "Optimizer rule ",
        "This feature is not implemented: ",
        "Invalid argument error: ",
        "Compute error: ",
        "Cast error: ",
        "Parser error: ",
        "ParserError(\"",
        "External error: ",
    ] {
        while let Some(rest) = text.strip_prefix(prefix) {
            text = rest;
        }
    }
    text.trim_end_matches("\")").to_string()
}

/// Classifies a DataFusion error by walking to its root cause.
pub fn datafusion_code(error: &DataFusionError) -> ErrorCode {
    match error.find_root() {
        DataFusionError::External(inner) => inner
            .downcast_ref::<CodedError>()
            .map(|coded| coded.code)
            .unwrap_or(ErrorCode::Internal),
        DataFusionError::SQL(_, _) => ErrorCode::SyntaxError,
        DataFusionError::SchemaError(inner, _) => {
            let text = inner.to_string();
            if text.contains("No field named") || text.contains("not found") {
                ErrorCode::UndefinedColumn
            } else if text.contains("Duplicate") || text.contains("duplicate") {
                ErrorCode::DuplicateObject
            } else {
                ErrorCode::InvalidParameterValue
            }
        }
        DataFusionError::NotImplemented(_) => ErrorCode::FeatureNotSupported,
        DataFusionError::ArrowError(inner, _) => arrow_code(&inner.to_string()),
        DataFusionError::Plan(text) => {
            if text.contains("table") && text.contains("not found") {
                ErrorCode::UndefinedTable
            } else if text.contains("not found in struct") {
                // `o['key']` of an object without that sub-column.
                ErrorCode::UndefinedColumn
            } else if text.contains("Invalid function") || text.contains("No function matches") {
                ErrorCode::UndefinedFunction
            } else if text.contains("Cannot infer common")
                || text.contains("not supported")
                || text.contains("Cannot coerce")
                || text.contains("type_coercion")
            {
                ErrorCode::DatatypeMismatch
            } else {
                ErrorCode::InvalidParameterValue
            }
        }
        DataFusionError::Execution(text) => arrow_code(text),
        DataFusionError::ResourcesExhausted(_) => ErrorCode::ProgramLimitExceeded,
        _ => ErrorCode::Internal,
    }
}

/// Classifies an Arrow error by its message.
pub fn arrow_code(text: &str) -> ErrorCode {
    let lower = text.to_ascii_lowercase();
    if lower.contains("divide by zero") || lower.contains("division by zero") {
        ErrorCode::DivisionByZero
    } else if lower.contains("overflow") || lower.contains("can't cast value") {
        // Arrow's "Can't cast value 1e10 to type Int32": a number beyond the target's range.
        ErrorCode::NumericOutOfRange
    } else if lower.contains("cannot cast")
        || lower.contains("cast error")
        || lower.contains("parser error")
        || lower.contains("error parsing")
        || lower.contains("invalid")
        || lower.contains("can't parse")
        || lower.contains("cannot parse")
    {
        ErrorCode::InvalidTextRepresentation
    } else {
        ErrorCode::Internal
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
