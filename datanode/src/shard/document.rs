//! Turns Arrow rows into shard documents.
//!
//! Every table column is a key of one JSON field (`_source`) that is both indexed (exact terms)
//! and fast (columnar), so adding a column never rewrites a shard and dynamic columns can be
//! added later. Values are written with one stable tantivy type per column type, which the scan
//! side (`scan::columns`) relies on when it reads them back.

use std::collections::BTreeMap;

use creek_common::schema::{TableSchema, ID_COLUMN, PRIMARY_TERM_COLUMN, SEQ_NO_COLUMN};
use creek_common::types::ColumnType;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array,
    Int16Array, Int32Array, Int64Array, ListArray, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::record_batch::RecordBatch;
use tantivy::schema::{
    Field, IndexRecordOption, JsonObjectOptions, OwnedValue, Schema, TextFieldIndexing, FAST,
    INDEXED, STRING,
};
use tantivy::TantivyDocument;

use crate::error::{Error, Result};

/// Name of the JSON field holding all table columns.
pub const SOURCE_FIELD: &str = "_source";

/// Prefix of the key under which an array column is also kept exactly, as JSON text: the
/// columnar values drop NULL elements and cannot tell an empty array from NULL. The DEL
/// character keeps it apart from any column name DDL accepts.
pub const EXACT_ARRAY_PREFIX: &str = "\u{7f}exact:";

/// The fixed fields of every shard index.
#[derive(Debug, Clone, Copy)]
pub struct ShardFields {
    /// `_id`: exact term, fast.
    pub id: Field,
    /// `_seq_no`: fast i64.
    pub seq_no: Field,
    /// `_primary_term`: fast i64.
    pub primary_term: Field,
    /// `_source`: the table columns as a JSON object.
    pub source: Field,
}

/// Builds the tantivy schema shared by every shard of every table.
pub fn shard_schema() -> (Schema, ShardFields) {
    let mut builder = Schema::builder();
    let id = builder.add_text_field(ID_COLUMN, STRING | FAST);
    let seq_no = builder.add_i64_field(SEQ_NO_COLUMN, INDEXED | FAST);
    let primary_term = builder.add_i64_field(PRIMARY_TERM_COLUMN, FAST);
    let json_options = JsonObjectOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("raw")
                .set_index_option(IndexRecordOption::Basic),
        )
        .set_fast("raw");
    let source = builder.add_json_field(SOURCE_FIELD, json_options);
    (
        builder.build(),
        ShardFields {
            id,
            seq_no,
            primary_term,
            source,
        },
    )
}

/// Builds one document per row of `batch`. The batch has an `_id` column plus table columns
/// (any subset, any order); rows get `_seq_no = first_seq_no + row` and `primary_term`.
pub fn documents_from_batch(
    table: &TableSchema,
    fields: ShardFields,
    batch: &RecordBatch,
    first_seq_no: u64,
    primary_term: u64,
) -> Result<Vec<(String, TantivyDocument)>> {
    let ids = id_column(batch)?;
    if let Some(unknown) = batch
        .schema()
        .fields()
        .iter()
        .find(|field| field.name() != ID_COLUMN && table.column(field.name()).is_none())
    {
        // Never drop a value: the writer knew a column this definition lacks.
        return Err(Error::InvalidRequest(format!(
            "column {} is not in version {} of table {}",
            unknown.name(),
            table.version,
            table.name
        )));
    }
    let columns: Vec<(&str, &ColumnType, &ArrayRef)> = table
        .columns
        .iter()
        .filter_map(|column| {
            batch
                .column_by_name(&column.name)
                .map(|array| (column.name.as_str(), &column.column_type, array))
        })
        .collect();
    let mut documents = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut object = BTreeMap::new();
        for (name, column_type, array) in &columns {
            if let ColumnType::Array(inner) = column_type {
                if let Some(exact) = exact_array(inner, array, row)? {
                    object.insert(
                        format!("{EXACT_ARRAY_PREFIX}{name}"),
                        OwnedValue::Str(exact),
                    );
                }
            }
            if let Some(value) = owned_value(column_type, array, row)? {
                object.insert((*name).to_string(), value);
            }
        }
        let id = ids.value(row).to_string();
        let mut document = TantivyDocument::default();
        document.add_text(fields.id, &id);
        document.add_i64(fields.seq_no, (first_seq_no + row as u64) as i64);
        document.add_i64(fields.primary_term, primary_term as i64);
        document.add_object(fields.source, object);
        documents.push((id, document));
    }
    Ok(documents)
}

/// Returns the `_id` column of a write batch.
pub fn id_column(batch: &RecordBatch) -> Result<&StringArray> {
    batch
        .column_by_name(ID_COLUMN)
        .and_then(|array| array.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| Error::InvalidRequest("write batch lacks a utf8 _id column".into()))
}

/// The JSON text of one array value, NULL elements included; `None` for a NULL array.
fn exact_array(inner: &ColumnType, array: &ArrayRef, row: usize) -> Result<Option<String>> {
    if array.is_null(row) {
        return Ok(None);
    }
    let list = array
        .as_any()
        .downcast_ref::<ListArray>()
        .ok_or_else(|| Error::InvalidRequest("array column without a list array".into()))?;
    let values = list.value(row);
    let mut items = Vec::with_capacity(values.len());
    for index in 0..values.len() {
        items.push(match owned_value(inner, &values, index)? {
            None => serde_json::Value::Null,
            Some(OwnedValue::Bool(v)) => serde_json::Value::Bool(v),
            Some(OwnedValue::I64(v)) => serde_json::Value::from(v),
            // JSON has no NaN or infinities: those travel as their names.
            Some(OwnedValue::F64(v)) => serde_json::Number::from_f64(v)
                .map(serde_json::Value::Number)
                .unwrap_or_else(|| serde_json::Value::String(v.to_string())),
            Some(OwnedValue::Str(v)) => serde_json::Value::String(v),
            Some(_) => return Ok(None),
        });
    }
    Ok(Some(serde_json::Value::Array(items).to_string()))
}

fn owned_value(
    column_type: &ColumnType,
    array: &ArrayRef,
    row: usize,
) -> Result<Option<OwnedValue>> {
    if array.is_null(row) {
        return Ok(None);
    }
    let mismatch = || {
        Error::InvalidRequest(format!(
            "column of type {column_type} got arrow type {}",
            array.data_type()
        ))
    };
    macro_rules! get {
        ($ty:ty) => {
            array
                .as_any()
                .downcast_ref::<$ty>()
                .ok_or_else(mismatch)?
                .value(row)
        };
    }
    Ok(Some(match column_type {
        ColumnType::Boolean => OwnedValue::Bool(get!(BooleanArray)),
        ColumnType::SmallInt => OwnedValue::I64(i64::from(get!(Int16Array))),
        ColumnType::Integer => OwnedValue::I64(i64::from(get!(Int32Array))),
        ColumnType::BigInt => OwnedValue::I64(get!(Int64Array)),
        ColumnType::Real => OwnedValue::F64(f64::from(get!(Float32Array))),
        ColumnType::Double => OwnedValue::F64(get!(Float64Array)),
        ColumnType::Numeric { .. } => {
            let decimals = array
                .as_any()
                .downcast_ref::<Decimal128Array>()
                .ok_or_else(mismatch)?;
            OwnedValue::Str(decimals.value(row).to_string())
        }
        ColumnType::Text { .. } | ColumnType::Ip => OwnedValue::Str(get!(StringArray).to_string()),
        ColumnType::Timestamp | ColumnType::TimestampTz => {
            OwnedValue::I64(get!(TimestampMicrosecondArray))
        }
        ColumnType::Date => OwnedValue::I64(i64::from(get!(Date32Array))),
        ColumnType::Array(inner) => {
            let list = array
                .as_any()
                .downcast_ref::<ListArray>()
                .ok_or_else(mismatch)?;
            let values = list.value(row);
            let mut items = Vec::with_capacity(values.len());
            for index in 0..values.len() {
                if let Some(value) = owned_value(inner, &values, index)? {
                    items.push(value);
                }
            }
            OwnedValue::Array(items)
        }
    }))
}
