//! Parameters bound to Flight SQL prepared statements: Arrow batches become rows of values,
//! each cast to the type the statement infers for its parameter.

use std::sync::Arc;

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::FlightData;
use creek_common::ErrorCode;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use futures::{Stream, StreamExt, TryStreamExt};
use tonic::Status;

use super::results::status_of;

/// At most this many parameter rows are kept bound to one prepared query.
pub const MAX_BOUND_ROWS: usize = 10_000;

/// The parameter schema of a statement with these inferred types: `$1`, `$2`, ... (a type
/// planning could not infer is `Null`: any value is accepted and typed by its use).
pub fn parameter_schema(types: &[Option<DataType>]) -> SchemaRef {
    let fields: Vec<Field> = types
        .iter()
        .enumerate()
        .map(|(index, data_type)| {
            Field::new(
                format!("${}", index + 1),
                data_type.clone().unwrap_or(DataType::Null),
                true,
            )
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The Flight data of a `DoPut`, refusing compressed IPC bodies: their header claims the
/// uncompressed size and Arrow allocates by that claim, so one small message could make the
/// coordinator allocate without bound. Clients (ADBC among them) send uncompressed bodies
/// unless told otherwise.
pub fn uncompressed(
    request: PeekableFlightDataStream,
) -> impl Stream<Item = Result<FlightData, FlightError>> + Send {
    request.map(|data| {
        let data = data.map_err(|status| FlightError::Tonic(Box::new(status)))?;
        if let Ok(message) = ipc::root_as_message(&data.data_header) {
            let compression = match message.header_as_record_batch() {
                Some(batch) => batch.compression(),
                None => message
                    .header_as_dictionary_batch()
                    .and_then(|dictionary| dictionary.data())
                    .and_then(|batch| batch.compression()),
            };
            if compression.is_some() {
                return Err(FlightError::Tonic(Box::new(status_of(
                    ErrorCode::FeatureNotSupported,
                    "compressed Arrow IPC bodies are not accepted; send them uncompressed".into(),
                ))));
            }
        }
        Ok(data)
    })
}

/// Turns a decoding failure into a client status.
pub fn flight_status(error: FlightError) -> Status {
    match error {
        FlightError::Tonic(status) => *status,
        other => status_of(
            ErrorCode::InvalidParameterValue,
            format!("bad Arrow data: {other}"),
        ),
    }
}

/// The batches a `DoPut` carries (after the command in its first message's descriptor).
pub fn batches(
    request: PeekableFlightDataStream,
) -> impl Stream<Item = Result<RecordBatch, Status>> + Send {
    FlightRecordBatchStream::new_from_flight_data(uncompressed(request)).map_err(flight_status)
}

/// The rows of `batch` as parameter values, each cast to its parameter's inferred type.
pub fn rows(
    batch: &RecordBatch,
    types: &[Option<DataType>],
) -> Result<Vec<Vec<ScalarValue>>, Status> {
    if !types.is_empty() && batch.num_columns() != types.len() {
        return Err(status_of(
            ErrorCode::UndefinedParameter,
            format!(
                "the statement has {} parameter(s), {} were bound",
                types.len(),
                batch.num_columns()
            ),
        ));
    }
    (0..batch.num_rows())
        .map(|row| {
            batch
                .columns()
                .iter()
                .enumerate()
                .map(|(index, column)| {
                    let value = ScalarValue::try_from_array(column, row).map_err(|e| {
                        status_of(ErrorCode::InvalidParameterValue, e.to_string())
                    })?;
                    match types.get(index).and_then(Option::as_ref) {
                        Some(target) if value.data_type() != *target && !value.is_null() => {
                            value.cast_to(target).map_err(|e| {
                                status_of(
                                    ErrorCode::DatatypeMismatch,
                                    format!(
                                        "parameter ${} of type {} does not convert to {target}: {e}",
                                        index + 1,
                                        value.data_type()
                                    ),
                                )
                            })
                        }
                        Some(target) if value.is_null() => ScalarValue::try_from(target)
                            .map_err(|e| status_of(ErrorCode::InvalidParameterValue, e.to_string())),
                        _ => Ok(value),
                    }
                })
                .collect()
        })
        .collect()
}
