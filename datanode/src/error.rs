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
    /// A write reached a copy that is not the shard's primary (the coordinator's state is
    /// older than this node's, or this node was demoted).
    #[error("shard {shard_id} is not primary on this node; retry")]
    NotPrimary { shard_id: ShardId },
    /// An operation came from a primary whose term is older than the one this copy knows.
    #[error(
        "shard {shard_id} refuses an operation of primary term {got}: term {current} is current"
    )]
    StaleTerm {
        shard_id: ShardId,
        got: u64,
        current: u64,
    },
    /// A replica got an operation beyond the next one it expects: it missed some.
    #[error("shard {shard_id} expected operation {expected}, got {got}")]
    OperationGap {
        shard_id: ShardId,
        expected: u64,
        got: u64,
    },
    /// A replica holds an operation under a sequence number that a newer primary used for
    /// another: it must be recovered again.
    #[error("shard {shard_id} diverged from its primary at operation {seq_no}")]
    Diverged { shard_id: ShardId, seq_no: u64 },
    /// The node has not heard from the cluster leader within its lease: as a primary it could
    /// already have been replaced, so it acknowledges no write.
    #[error("this node has not heard from the cluster leader for {elapsed_ms} ms, more than its {lease_ms} ms lease; it acknowledges no writes as primary until it does")]
    LeaseExpired { elapsed_ms: u64, lease_ms: u64 },
    /// Replicating a write, or reporting a failed copy through the leader, did not succeed.
    #[error("replicating to the copies of shard {shard_id} failed: {reason}")]
    Replication { shard_id: ShardId, reason: String },
    /// A recovery failed.
    #[error("recovery of shard {shard_id} failed: {reason}")]
    Recovery { shard_id: ShardId, reason: String },
    /// A read asked this copy to show writes up to a sequence number it has not applied
    /// (a copy behind or diverged that the reader's routing still lists).
    #[error("copy of shard {shard_id} has applied operations up to {applied}, not the {wanted} this read must see")]
    NotCaughtUp {
        shard_id: ShardId,
        applied: u64,
        wanted: u64,
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
            Error::ShardNotFound { .. }
            | Error::ShardFailed { .. }
            | Error::TableBehind { .. }
            | Error::NotPrimary { .. }
            | Error::StaleTerm { .. }
            | Error::OperationGap { .. }
            | Error::Diverged { .. }
            | Error::LeaseExpired { .. }
            | Error::Replication { .. }
            | Error::Recovery { .. }
            | Error::NotCaughtUp { .. } => ErrorCode::Unavailable,
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
