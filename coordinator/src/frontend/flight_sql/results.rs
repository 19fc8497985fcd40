//! What a Flight SQL call leaves for a later one: results waiting for their `DoGet`, and how
//! rows and errors go on the wire (Flight status codes with the SQLSTATE pgwire would send).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::FlightData;
use creek_common::ErrorCode;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::stream::BoxStream;
use futures::StreamExt;
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

/// `schema` with every field nullable: planning may call a column NOT NULL where a shard still
/// holds nulls, and Arrow refuses such a batch under a non-nullable field.
pub fn relaxed(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| field.as_ref().clone().with_nullable(true))
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Encodes `rows` as Flight data under `schema`, the schema `GetFlightInfo` promised.
/// Dropping the returned stream drops `rows`, which stops the query on every node.
pub fn flight_stream(
    schema: SchemaRef,
    rows: Option<SendableRecordBatchStream>,
) -> BoxStream<'static, Result<FlightData, Status>> {
    let promised = schema.clone();
    let batches = futures::stream::iter(rows).flatten().map(move |batch| {
        let batch = batch.map_err(|e| FlightError::Tonic(Box::new(status(Error::from(e)))))?;
        creek_proto::ipc::conform_to_schema(&batch, &promised)
            .map_err(|e| FlightError::Tonic(Box::new(status(Error::from(e)))))
    });
    FlightDataEncoderBuilder::new()
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

    /// Keeps a result; returns the handle its ticket carries. Refused while
    /// [`MAX_PENDING`] results wait: evicting one would fail another client's fetch.
    pub fn insert(
        &self,
        schema: SchemaRef,
        rows: Option<SendableRecordBatchStream>,
    ) -> Result<Vec<u8>, Status> {
        let handle = uuid::Uuid::new_v4().as_bytes().to_vec();
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_PENDING {
            return Err(status_of(
                ErrorCode::ProgramLimitExceeded,
                format!(
                    "{MAX_PENDING} results are waiting to be fetched from this coordinator; \
                     fetch them (DoGet) or let their tickets expire"
                ),
            ));
        }
        entries.insert(
            handle.clone(),
            Pending {
                schema,
                rows,
                created: Instant::now(),
            },
        );
        Ok(handle)
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
