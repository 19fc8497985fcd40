//! Arrow IPC framing for record batches carried inside protobuf `bytes` fields.

use datafusion::arrow::compute::CastOptions;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use std::sync::Arc;

use arrow_flight::SchemaAsIpc;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::ipc::writer::IpcWriteOptions;

/// Encodes one batch as an Arrow IPC stream.
pub fn batch_to_ipc(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let mut buffer = Vec::new();
    {
        let mut writer = StreamWriter::try_new(&mut buffer, batch.schema_ref())?;
        writer.write(batch)?;
        writer.finish()?;
    }
    Ok(buffer)
}

/// Decodes an Arrow IPC stream into one batch (concatenating if the stream holds several).
pub fn batch_from_ipc(bytes: &[u8]) -> Result<RecordBatch, ArrowError> {
    let reader = StreamReader::try_new(bytes, None)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    datafusion::arrow::compute::concat_batches(&schema, &batches)
}

/// Encodes a schema as Arrow IPC bytes (as Flight's `FlightInfo.schema` carries it).
pub fn schema_to_ipc(schema: &Schema) -> Result<Vec<u8>, ArrowError> {
    let options = IpcWriteOptions::default();
    let message: arrow_flight::IpcMessage = SchemaAsIpc::new(schema, &options).try_into()?;
    Ok(message.0.to_vec())
}

/// Decodes a schema encoded by [`schema_to_ipc`].
pub fn schema_from_ipc(bytes: &[u8]) -> Result<SchemaRef, ArrowError> {
    let message = arrow_flight::IpcMessage(bytes::Bytes::copy_from_slice(bytes));
    Ok(Arc::new(Schema::try_from(message)?))
}

/// `batch` under `schema`, the one a client was promised: names and field metadata from the
/// schema, and columns cast where an operator produced another physical type than planned
/// (`Utf8View` for `Utf8`). Fails if the column counts differ.
pub fn conform_to_schema(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, ArrowError> {
    if batch.num_columns() != schema.fields().len() {
        return Err(ArrowError::SchemaError(format!(
            "a batch of {} columns for a schema of {}",
            batch.num_columns(),
            schema.fields().len()
        )));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                // Not `safe`: a value that does not convert is an error, never a NULL.
                let options = CastOptions {
                    safe: false,
                    ..Default::default()
                };
                datafusion::arrow::compute::cast_with_options(column, field.data_type(), &options)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Arrow refuses nulls under a non-nullable field: promised schemas are made with every
    // field nullable, as planning may say NOT NULL where a shard still has nulls.
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options)
}
