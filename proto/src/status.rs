//! Carries a Creek [`ErrorCode`] across gRPC so the coordinator can rebuild a data node's error.
//!
//! The code travels in the `creek-error-code` metadata header beside the usual `tonic::Code`;
//! the message is the status message.

use creek_common::error::{CodedError, ErrorCode};

pub const ERROR_CODE_HEADER: &str = "creek-error-code";

/// The metadata key carrying an error's SQLSTATE to Flight SQL clients.
pub const SQLSTATE_HEADER: &str = "x-sqlstate";

/// A Flight status for a client (of a coordinator's Flight SQL or a data node's client Flight
/// port): a code that says what kind of failure it is, the message pgwire would show, and the
/// SQLSTATE in `x-sqlstate`.
pub fn client_status(code: ErrorCode, message: String) -> tonic::Status {
    let grpc = match code {
        ErrorCode::UndefinedTable
        | ErrorCode::UndefinedColumn
        | ErrorCode::UndefinedSchema
        | ErrorCode::UndefinedFunction
        | ErrorCode::UndefinedObject
        | ErrorCode::UndefinedPreparedStatement => tonic::Code::NotFound,
        ErrorCode::DuplicateKey
        | ErrorCode::DuplicateObject
        | ErrorCode::DuplicatePreparedStatement => tonic::Code::AlreadyExists,
        ErrorCode::FeatureNotSupported => tonic::Code::Unimplemented,
        ErrorCode::Unavailable => tonic::Code::Unavailable,
        ErrorCode::QueryCanceled => tonic::Code::Cancelled,
        ErrorCode::ProgramLimitExceeded => tonic::Code::ResourceExhausted,
        ErrorCode::SerializationFailure => tonic::Code::Aborted,
        ErrorCode::DependentObjectsStillExist => tonic::Code::FailedPrecondition,
        ErrorCode::Internal | ErrorCode::DataCorrupted => tonic::Code::Internal,
        _ => tonic::Code::InvalidArgument,
    };
    let mut status = tonic::Status::new(grpc, message);
    if let Ok(value) = code.sqlstate().parse() {
        status.metadata_mut().insert(SQLSTATE_HEADER, value);
    }
    status
}

/// Builds a gRPC status from a coded error.
pub fn status_from_error(error: &CodedError) -> tonic::Status {
    let grpc_code = match error.code {
        ErrorCode::UndefinedTable | ErrorCode::UndefinedColumn | ErrorCode::UndefinedSchema => {
            tonic::Code::NotFound
        }
        ErrorCode::DuplicateKey | ErrorCode::DuplicateObject => tonic::Code::AlreadyExists,
        ErrorCode::Unavailable => tonic::Code::Unavailable,
        ErrorCode::QueryCanceled => tonic::Code::Cancelled,
        ErrorCode::Internal | ErrorCode::DataCorrupted => tonic::Code::Internal,
        _ => tonic::Code::InvalidArgument,
    };
    let mut status = tonic::Status::new(grpc_code, error.message.clone());
    if let Ok(value) = error.code.as_str().parse() {
        status.metadata_mut().insert(ERROR_CODE_HEADER, value);
    }
    status
}

/// Rebuilds the coded error a data node sent, or classifies a transport failure.
pub fn error_from_status(status: &tonic::Status) -> CodedError {
    let code = status
        .metadata()
        .get(ERROR_CODE_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(ErrorCode::from_name)
        .unwrap_or(match status.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => ErrorCode::Unavailable,
            tonic::Code::Cancelled => ErrorCode::QueryCanceled,
            _ => ErrorCode::Internal,
        });
    CodedError::new(code, status.message().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_survives_the_round_trip() {
        let error = CodedError::new(ErrorCode::DuplicateKey, "duplicate key 1");
        let back = error_from_status(&status_from_error(&error));
        assert_eq!(back.code, ErrorCode::DuplicateKey);
        assert_eq!(back.message, "duplicate key 1");
    }
}
