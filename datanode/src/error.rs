//! Errors of the data node, each mapped to a stable [`ErrorCode`].

use creek_common::error::{CodedError, ErrorCode};
use creek_common::ShardId;

/// Failures of shard storage and fragment execution on a data node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The shard is not held by this node.
    #[error("shard {shard_id} is not on this node")]
    ShardNotFound { shard_id: ShardId },
    /// A shard file failed its checksum or could not be decoded.
    #[error("shard {shard_id} is corrupt: {detail}")]
    ShardCorrupted { shard_id: ShardId, detail: String },
    /// Disk I/O failed.
    #[error("i/o error on shard {shard_id}: {source}")]
    Io {
        shard_id: ShardId,
        source: std::io::Error,
    },
    /// The tantivy index failed.
    #[error("index error on shard {shard_id}: {source}")]
    Index {
        shard_id: ShardId,
        source: tantivy::TantivyError,
    },
    /// The shard failed a storage step and acknowledges nothing until it is opened again.
    #[error("shard {shard_id} has failed and accepts no writes until it is recovered: {reason}")]
    ShardFailed { shard_id: ShardId, reason: String },
    /// A write was planned with a newer table definition than this node has learnt yet.
    #[error("shard {shard_id} has table definition version {have}, the write needs {want}; retry")]
    TableBehind {
        shard_id: ShardId,
        have: u64,
        want: u64,
    },
    /// A request could not be decoded or is inconsistent with the table.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Arrow failed to encode or decode a batch.
    #[error("arrow error: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
}

/// Result alias of the data node crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Returns the stable code of this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::ShardNotFound { .. } | Error::ShardFailed { .. } | Error::TableBehind { .. } => {
                ErrorCode::Unavailable
            }
            Error::ShardCorrupted { .. } => ErrorCode::DataCorrupted,
            Error::Io { .. } | Error::Index { .. } | Error::Arrow(_) => ErrorCode::Internal,
            Error::InvalidRequest(_) => ErrorCode::InvalidParameterValue,
        }
    }

    /// Returns whether retrying may succeed.
    pub fn is_retryable(&self) -> bool {
        self.code().is_retryable()
    }

    /// Converts into the protocol-neutral error carried across gRPC.
    pub fn to_coded(&self) -> CodedError {
        CodedError::new(self.code(), self.to_string())
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> tonic::Status {
        creek_proto::status::status_from_error(&error.to_coded())
    }
}

impl From<Error> for datafusion::error::DataFusionError {
    fn from(error: Error) -> datafusion::error::DataFusionError {
        datafusion::error::DataFusionError::External(Box::new(error.to_coded()))
    }
}
