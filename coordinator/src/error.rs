//! Errors of the coordinator, each with a stable [`ErrorCode`]. Mapping codes to SQLSTATE or
//! CrateDB HTTP codes happens only in `frontend`.

use creek_common::error::{CodedError, ErrorCode};
use datafusion::error::DataFusionError;

/// A failure while executing a statement.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A failure with a known code and a client-facing message.
    #[error("{0}")]
    Coded(#[from] CodedError),
    /// A failure inside DataFusion (planning or execution).
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    /// An Arrow kernel failed (casts, batch assembly).
    #[error("{0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
}

/// Result alias of the coordinator crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Creates a coded error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error::Coded(CodedError::new(code, message))
    }

    /// Returns the stable code of this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Coded(coded) => coded.code,
            Error::DataFusion(error) => datafusion_code(error),
            Error::Arrow(error) => arrow_code(&error.to_string()),
        }
    }

    /// Returns whether retrying may succeed.
    pub fn is_retryable(&self) -> bool {
        self.code().is_retryable()
    }

    /// Returns the message shown to clients: DataFusion's context prefixes are removed and
    /// internal failures are masked.
    pub fn client_message(&self) -> String {
        match self {
            Error::Coded(coded) => coded.message.clone(),
            Error::Arrow(error) => strip_prefix(&error.to_string()),
            Error::DataFusion(error) => {
                let root = error.find_root();
                match root {
                    DataFusionError::External(inner) => match inner.downcast_ref::<CodedError>() {
                        Some(coded) => coded.message.clone(),
                        None => inner.to_string(),
                    },
                    DataFusionError::ArrowError(inner, _) => strip_prefix(&inner.to_string()),
                    DataFusionError::SQL(inner, _) => strip_prefix(&inner.to_string()),
                    other => strip_prefix(&other.to_string()),
                }
            }
        }
    }
}

fn strip_prefix(message: &str) -> String {
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

fn arrow_code(text: &str) -> ErrorCode {
    let lower = text.to_ascii_lowercase();
    if lower.contains("divide by zero") || lower.contains("division by zero") {
        ErrorCode::DivisionByZero
    } else if lower.contains("overflow") {
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
