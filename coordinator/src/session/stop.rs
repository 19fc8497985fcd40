//! How a statement's rows stop early: a client's cancel request (`cancellable`), its job
//! killed or its `statement_timeout` passed (`rows_until`). Each ends the stream with 57014 and
//! drops it, which stops the work behind it on every node. Streams only; which statements may
//! stop is `Session::supervised`'s business.

use std::sync::Arc;

use creek_common::error::{CodedError, ErrorCode};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::sql::Output;

/// Ends `stream` with a 57014 error as soon as `token` is cancelled, dropping it so the work
/// behind it stops.
pub(super) fn cancellable(
    schema: SchemaRef,
    stream: SendableRecordBatchStream,
    token: CancellationToken,
) -> SendableRecordBatchStream {
    let rows = stream.take_until(token.clone().cancelled_owned());
    let canceled = futures::stream::once(async move {
        token.is_cancelled().then(|| {
            Err(DataFusionError::External(Box::new(CodedError::new(
                ErrorCode::QueryCanceled,
                "canceling statement due to user request",
            ))))
        })
    })
    .filter_map(futures::future::ready);
    Box::pin(RecordBatchStreamAdapter::new(schema, rows.chain(canceled)))
}

pub(super) fn job_killed() -> CodedError {
    CodedError::new(
        ErrorCode::QueryCanceled,
        "canceling statement: job killed (KILL)",
    )
}

pub(super) fn statement_timeout() -> CodedError {
    CodedError::new(
        ErrorCode::QueryCanceled,
        "canceling statement due to statement timeout",
    )
}

/// Ends a result's rows with 57014 at `deadline` (`statement_timeout`) or when `killed` is
/// cancelled, dropping the stream so the work behind it stops (PostgreSQL's timeout covers
/// sending the rows too).
pub(super) fn rows_until(
    output: Output,
    deadline: Option<tokio::time::Instant>,
    killed: CancellationToken,
) -> Output {
    let Output::Rows { schema, stream } = output else {
        return output;
    };
    let reason: Arc<Mutex<Option<CodedError>>> = Arc::default();
    let stop = {
        let reason = reason.clone();
        async move {
            let expired = async move {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            let why = tokio::select! {
                _ = killed.cancelled() => job_killed(),
                _ = expired => statement_timeout(),
            };
            *reason.lock() = Some(why);
        }
    };
    let rows = stream.take_until(Box::pin(stop));
    let error = futures::stream::once(async move {
        reason
            .lock()
            .take()
            .map(|why| Err(DataFusionError::External(Box::new(why))))
    })
    .filter_map(futures::future::ready);
    Output::Rows {
        schema: schema.clone(),
        stream: Box::pin(RecordBatchStreamAdapter::new(schema, rows.chain(error))),
    }
}
