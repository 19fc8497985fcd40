//! Arrow IPC framing for record batches carried inside protobuf `bytes` fields.

use datafusion::arrow::compute::CastOptions;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use std::sync::Arc;

use arrow_flight::SchemaAsIpc;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
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
    // Arrow refuses nulls under a non-nullable field: promised schemas have every field
    // nullable (`client_schema`).
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options)
}

/// `schema` as Flight clients are promised it: every field nullable (planning may call a column NOT NULL
/// where a shard still holds nulls, and Arrow refuses such a batch under a non-nullable
/// field), and string and binary views as plain strings and binaries (DataFusion produces
/// views for some expressions; many Flight clients cannot read them, and a sliced view column
/// would carry its whole data buffers in every message).
pub fn client_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| plain_field(field).with_nullable(true))
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn plain_field(field: &Field) -> Field {
    field.clone().with_data_type(plain_type(field.data_type()))
}

fn plain_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::List(field) => DataType::List(Arc::new(plain_field(field))),
        DataType::LargeList(field) => DataType::LargeList(Arc::new(plain_field(field))),
        DataType::FixedSizeList(field, size) => {
            DataType::FixedSizeList(Arc::new(plain_field(field)), *size)
        }
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|field| Arc::new(plain_field(field)))
                .collect(),
        ),
        other => other.clone(),
    }
}
