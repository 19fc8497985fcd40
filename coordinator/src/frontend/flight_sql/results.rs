//! What a Flight SQL call leaves for a later one: results waiting for their `DoGet`, and how
//! rows and errors go on the wire (Flight status codes with the SQLSTATE pgwire would send).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::FlightData;
use creek_common::ErrorCode;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use parking_lot::Mutex;
use tonic::Status;

use crate::error::Error;

/// Results nobody fetched are at most this many; more are refused until some are fetched
/// or expire.
const MAX_PENDING: usize = 1024;

/// A Flight status for a Creek error (see `creek_proto::status::client_status`).
pub fn status_of(code: ErrorCode, message: String) -> Status {
    creek_proto::status::client_status(code, message)
}

/// The Flight status of a coordinator error.
pub fn status(error: Error) -> Status {
    status_of(error.code(), error.client_message())
}

/// `schema` as Flight clients are promised it (see `creek_proto::ipc::client_schema`).
pub fn relaxed(schema: &SchemaRef) -> SchemaRef {
    creek_proto::ipc::client_schema(schema)
}

/// Encodes `rows` as Flight data under `schema`, the schema `GetFlightInfo` promised.
/// Dropping the returned stream drops `rows`, which stops the query on every node.
pub fn flight_stream(
    schema: SchemaRef,
    rows: Option<SendableRecordBatchStream>,
) -> BoxStream<'static, Result<FlightData, Status>> {
    let promised = schema.clone();
    let batches = futures::stream::iter(rows)
        .flatten()
        .map(move |batch| {
            let batch = batch.map_err(|e| FlightError::Tonic(Box::new(status(Error::from(e)))))?;
            let batch = creek_proto::ipc::conform_to_schema(&batch, &promised)
                .map_err(|e| FlightError::Tonic(Box::new(status(Error::from(e)))))?;
            Ok::<_, FlightError>(futures::stream::iter(
                pieces(batch).into_iter().map(Ok::<_, FlightError>),
            ))
        })
        .try_flatten();
    FlightDataEncoderBuilder::new()
        // Split by `pieces` instead: the encoder's own estimate counts a buffer shared by
        // several columns once per column.
        .with_max_flight_data_size(usize::MAX)
        .with_schema(schema)
        .build(batches)
        .map(|data| {
            data.map_err(|error| match error {
                FlightError::Tonic(status) => *status,
                other => Status::internal(other.to_string()),
            })
        })
        .boxed()
}

/// About how many bytes of rows one Flight message carries: gRPC clients refuse large
/// messages (4 MiB by default, 16 MiB in ADBC's), and Arrow's own encoder aims at 2 MiB.
const MESSAGE_BYTES: usize = 2 << 20;

/// `batch` in slices of about [`MESSAGE_BYTES`], measured by the bytes its rows hold. A batch
/// decoded from a data node's Flight data has every column in one shared buffer, which
/// Arrow's estimate (`get_buffer_memory_size`) counts once per column: a 100-column batch
/// would look 100 times its size and go out in slivers of a few rows.
fn pieces(batch: RecordBatch) -> Vec<RecordBatch> {
    let bytes: usize = batch
        .columns()
        .iter()
        .map(|column| {
            column
                .to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| column.get_buffer_memory_size())
        })
        .sum();
    let rows = batch.num_rows();
    let count = bytes.div_ceil(MESSAGE_BYTES).clamp(1, rows.max(1));
    if count == 1 {
        return vec![batch];
    }
    let per_piece = rows.div_ceil(count);
    (0..rows)
        .step_by(per_piece)
        .map(|offset| batch.slice(offset, per_piece.min(rows - offset)))
        .collect()
}

/// A statement's result waiting for its `DoGet`.
struct Pending {
    schema: SchemaRef,
    /// `None` for a statement that returns no rows.
    rows: Option<SendableRecordBatchStream>,
    created: Instant,
}

/// Results of statements `GetFlightInfo` ran, by the random handle in their ticket. Each is
/// fetched once; one not fetched within the ticket lifetime is dropped by [`Self::sweep`],
/// which ends its query.
pub struct PendingResults {
    entries: Mutex<HashMap<Vec<u8>, Pending>>,
    ttl: Duration,
}

impl PendingResults {
    /// Keeps results for `ttl`.
    pub fn new(ttl: Duration) -> PendingResults {
        PendingResults {
            entries: Mutex::default(),
            ttl,
        }
    }

    /// How often [`Self::sweep`] should run.
    pub fn sweep_interval(&self) -> Duration {
        (self.ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(10))
    }

    /// Fails while [`MAX_PENDING`] results wait (after dropping the expired ones): checked
    /// before a statement runs, so a refused call has done nothing. Evicting a result instead
    /// would fail the fetch of a client about to make it.
    pub fn ensure_room(&self) -> Result<(), Status> {
        if self.entries.lock().len() < MAX_PENDING {
            return Ok(());
        }
        self.sweep();
        if self.entries.lock().len() < MAX_PENDING {
            return Ok(());
        }
        Err(status_of(
            ErrorCode::ProgramLimitExceeded,
            format!(
                "{MAX_PENDING} results are waiting to be fetched from this coordinator; \
                 fetch them (DoGet) or let their tickets expire"
            ),
        ))
    }

    /// Keeps a result; returns the handle its ticket carries.
    pub fn insert(&self, schema: SchemaRef, rows: Option<SendableRecordBatchStream>) -> Vec<u8> {
        let handle = uuid::Uuid::new_v4().as_bytes().to_vec();
        self.entries.lock().insert(
            handle.clone(),
            Pending {
                schema,
                rows,
                created: Instant::now(),
            },
        );
        handle
    }

    /// Drops the results whose tickets have expired.
    pub fn sweep(&self) {
        let expired: Vec<Pending> = {
            let mut entries = self.entries.lock();
            let handles: Vec<Vec<u8>> = entries
                .iter()
                .filter(|(_, pending)| pending.created.elapsed() > self.ttl)
                .map(|(handle, _)| handle.clone())
                .collect();
            handles
                .iter()
                .filter_map(|handle| entries.remove(handle))
                .collect()
        };
        // Dropped outside the lock: ending a query's streams may take a moment.
        drop(expired);
    }

    /// Takes the result `handle` names, if it is still there.
    pub fn take(
        &self,
        handle: &[u8],
    ) -> Result<(SchemaRef, Option<SendableRecordBatchStream>), Status> {
        let pending = self.entries.lock().remove(handle);
        match pending {
            Some(pending) if pending.created.elapsed() <= self.ttl => {
                Ok((pending.schema, pending.rows))
            }
            _ => Err(Status::not_found(
                "no result for this ticket: it was fetched already or has expired; run the statement again",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, Int64Array};
    use datafusion::arrow::ipc::reader::StreamReader;

    #[test]
    fn pieces_measure_rows_not_shared_buffers() {
        // 100 columns of 20,000 int64s: 16 MB of rows, decoded from one IPC message, so every
        // column's buffer is a slice of one shared allocation.
        let columns: Vec<(String, ArrayRef)> = (0..100)
            .map(|i| {
                let values = Int64Array::from_iter_values(0..20_000);
                (format!("c{i}"), std::sync::Arc::new(values) as ArrayRef)
            })
            .collect();
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let bytes = creek_proto::ipc::batch_to_ipc(&batch).unwrap();
        let decoded = StreamReader::try_new(bytes.as_slice(), None)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let split = pieces(decoded);
        // About 16 MB / 2 MiB pieces, not thousands of slivers.
        assert!((7..=10).contains(&split.len()), "{} pieces", split.len());
        assert_eq!(
            split.iter().map(RecordBatch::num_rows).sum::<usize>(),
            20_000
        );
        assert_eq!(pieces(RecordBatch::new_empty(batch.schema())).len(), 1);
    }
}
