//! Errors of the coordinator, each with a stable [`ErrorCode`]. Mapping codes to SQLSTATE or
//! CrateDB HTTP codes happens only in `frontend`.

use creek_common::error::{arrow_code, datafusion_code, strip_prefix, CodedError, ErrorCode};
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

    /// Converts into a DataFusion error that keeps the code, for failures inside DataFusion
    /// operators and functions (downcast again at the edge).
    pub fn into_datafusion(self) -> DataFusionError {
        match self {
            Error::DataFusion(error) => error,
            other => DataFusionError::External(Box::new(CodedError::new(
                other.code(),
                other.client_message(),
            ))),
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
            Error::DataFusion(error) => CodedError::from_datafusion(error).message,
        }
    }
}
