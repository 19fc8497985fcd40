//! The field layout of a shard index, and turning Arrow rows into its documents.
//!
//! An index created for a table gives each scalar column a field of its own, named after the
//! column: indexed (exact terms) and fast (columnar), or fast only for `INDEX OFF` columns.
//! A tantivy schema is fixed when the index is created, so what it cannot name lives in
//! JSON fields: array columns and columns added later are keys of `_source` (indexed and
//! fast), or of `_columnar` (fast only) when `INDEX OFF`. Indexes written before typed fields
//! existed have only `_source` and keep working. [`locate`] is the one place that decides
//! where a column is; the write side here and the scan side (`scan::columns`, `scan::query`)
//! both ask it. Values are written with one stable tantivy type per column type, which the
//! scan side relies on when it reads them back.

use std::collections::BTreeMap;

use creek_common::schema::{
    ColumnDef, ColumnIndex, TableSchema, ID_COLUMN, PRIMARY_TERM_COLUMN, SEQ_NO_COLUMN,
};
use creek_common::types::ColumnType;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Decimal128Array, FixedSizeListArray, Float32Array,
    Float64Array, Int16Array, Int32Array, Int64Array, ListArray, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::record_batch::RecordBatch;
use tantivy::schema::{
    Field, IndexRecordOption, JsonObjectOptions, NumericOptions, OwnedValue, Schema,
    TextFieldIndexing, TextOptions, Type, FAST,
};
use tantivy::TantivyDocument;

use crate::error::{Error, Result};

/// Name of the JSON field holding indexed columns without a field of their own.
pub const SOURCE_FIELD: &str = "_source";

/// Name of the JSON field holding `INDEX OFF` columns without a field of their own.
pub const COLUMNAR_FIELD: &str = "_columnar";

/// Prefix of the key under which an array column is also kept exactly, as JSON text: the
/// columnar values drop NULL elements and cannot tell an empty array from NULL. The DEL
/// character keeps it apart from any column name DDL accepts.
pub const EXACT_ARRAY_PREFIX: &str = "\u{7f}exact:";

/// Key of a point's longitude in the JSON object that stores it.
pub const GEO_LON_KEY: &str = "lon";
/// Key of a point's latitude in the JSON object that stores it.
pub const GEO_LAT_KEY: &str = "lat";
/// Keys of a shape's bounding box in the JSON object that stores it (its GeoJSON is kept
/// under the exact-form key, as an array's is).
pub const SHAPE_MIN_LON_KEY: &str = "minlon";
/// See [`SHAPE_MIN_LON_KEY`].
pub const SHAPE_MAX_LON_KEY: &str = "maxlon";
/// See [`SHAPE_MIN_LON_KEY`].
pub const SHAPE_MIN_LAT_KEY: &str = "minlat";
/// See [`SHAPE_MIN_LON_KEY`].
pub const SHAPE_MAX_LAT_KEY: &str = "maxlat";

/// Prefix of the field of a FULLTEXT index (`_ft_<index name>`); table and index names never
/// start with `_`, so it names nothing else. The field's analyzer is registered under the
/// same name (`analysis::register_analyzers`).
pub const FULLTEXT_FIELD_PREFIX: &str = "_ft_";

/// The field (and analyzer) name of the FULLTEXT index `index`.
pub fn fulltext_field_name(index: &str) -> String {
    format!("{FULLTEXT_FIELD_PREFIX}{index}")
}

/// The fixed fields of every shard index.
#[derive(Debug, Clone, Copy)]
pub struct ShardFields {
    /// `_id`: exact term, fast.
    pub id: Field,
    /// `_seq_no`: fast i64.
    pub seq_no: Field,
    /// `_primary_term`: fast i64.
    pub primary_term: Field,
    /// `_source`: indexed columns without a field of their own, as a JSON object.
    pub source: Field,
    /// `_columnar`: `INDEX OFF` columns without a field of their own; absent from indexes
    /// created before it existed, which keep such columns in `_source`.
    pub columnar: Option<Field>,
}

impl ShardFields {
    /// Finds the fixed fields in an index's schema.
    pub fn of(schema: &Schema) -> Result<ShardFields> {
        let field = |name: &str| {
            schema.get_field(name).map_err(|_| {
                Error::InvalidRequest(format!("shard index schema lacks the {name} field"))
            })
        };
        Ok(ShardFields {
            id: field(ID_COLUMN)?,
            seq_no: field(SEQ_NO_COLUMN)?,
            primary_term: field(PRIMARY_TERM_COLUMN)?,
            source: field(SOURCE_FIELD)?,
            columnar: schema.get_field(COLUMNAR_FIELD).ok(),
        })
    }
}

/// How every indexed value is indexed: one exact term, postings without frequencies, and no
/// field norms (they only weigh relevance scores, which exact terms do not have; writing them
/// costs a byte per document and field).
fn exact_terms() -> TextFieldIndexing {
    TextFieldIndexing::default()
        .set_tokenizer("raw")
        .set_index_option(IndexRecordOption::Basic)
        .set_fieldnorms(false)
}

/// A text field of exact terms that is also fast.
fn exact_text_fast() -> TextOptions {
    TextOptions::default()
        .set_indexing_options(exact_terms())
        .set_fast("raw")
}

/// An indexed and fast numeric field, without field norms (see [`exact_terms`]).
fn indexed_numeric_fast() -> NumericOptions {
    NumericOptions::default().set_indexed().set_fast()
}

/// Builds the schema of a new shard index for `table`.
pub fn new_index_schema(table: &TableSchema) -> Schema {
    let mut builder = Schema::builder();
    builder.add_text_field(ID_COLUMN, exact_text_fast());
    builder.add_i64_field(SEQ_NO_COLUMN, indexed_numeric_fast());
    builder.add_i64_field(PRIMARY_TERM_COLUMN, FAST);
    let json = |indexed: bool| {
        let options = JsonObjectOptions::default().set_fast("raw");
        if indexed {
            options.set_indexing_options(exact_terms())
        } else {
            options
        }
    };
    builder.add_json_field(SOURCE_FIELD, json(true));
    builder.add_json_field(COLUMNAR_FIELD, json(false));
    for index in &table.fulltext {
        // Analyzed terms with frequencies and positions (for scoring and phrases), and field
        // norms (document lengths, for BM25).
        let name = fulltext_field_name(&index.name);
        builder.add_text_field(
            &name,
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(&name)
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions)
                    .set_fieldnorms(true),
            ),
        );
    }
    for column in &table.columns {
        let Some(value_type) = typed_field_type(&column.column_type) else {
            continue;
        };
        if !tantivy::schema::is_valid_field_name(&column.name) {
            continue;
        }
        let indexed = column.index == ColumnIndex::Plain;
        let numeric = if indexed {
            indexed_numeric_fast()
        } else {
            NumericOptions::from(FAST)
        };
        match value_type {
            Type::Str => {
                let options: TextOptions = if indexed {
                    exact_text_fast()
                } else {
                    TextOptions::default().set_fast("raw")
                };
                builder.add_text_field(&column.name, options);
            }
            Type::Bool => {
                builder.add_bool_field(&column.name, numeric);
            }
            Type::F64 => {
                builder.add_f64_field(&column.name, numeric);
            }
            _ => {
                builder.add_i64_field(&column.name, numeric);
            }
        }
    }
    builder.build()
}

/// The tantivy type of a column's own field; `None` for arrays and points, which live in JSON
/// fields (a point as an object of two numbers, `lon` and `lat`, so a box of locations is two
/// ranges over the fast values of `<column>.lon` and `<column>.lat`).
fn typed_field_type(column_type: &ColumnType) -> Option<Type> {
    Some(match column_type {
        ColumnType::Boolean => Type::Bool,
        ColumnType::SmallInt
        | ColumnType::Integer
        | ColumnType::BigInt
        | ColumnType::Timestamp
        | ColumnType::TimestampTz
        | ColumnType::Date => Type::I64,
        ColumnType::Real | ColumnType::Double => Type::F64,
        ColumnType::Numeric { .. } | ColumnType::Text { .. } | ColumnType::Ip => Type::Str,
        ColumnType::Array(_)
        | ColumnType::GeoPoint
        | ColumnType::GeoShape
        | ColumnType::Object { .. } => return None,
    })
}

/// Where one column's values are in an index.
#[derive(Debug, Clone)]
pub struct ColumnLocation {
    /// The column's own field, or the JSON field it is a key of.
    pub field: Field,
    /// Whether `field` is a JSON field (the column is its key of the column's name).
    pub json: bool,
    /// Whether the values are exact terms of the inverted index (else columnar only).
    pub indexed: bool,
    /// The column's name for fast-field and exists lookups.
    pub fast_name: String,
}

/// Where `column` (of `column_type`, declared with `index`) is in an index of `schema`.
pub fn locate(
    schema: &Schema,
    name: &str,
    column_type: &ColumnType,
    index: ColumnIndex,
) -> Result<ColumnLocation> {
    if let (Some(value_type), Ok(field)) = (typed_field_type(column_type), schema.get_field(name)) {
        let entry = schema.get_field_entry(field);
        if entry.field_type().value_type() == value_type {
            return Ok(ColumnLocation {
                field,
                json: false,
                indexed: entry.is_indexed(),
                fast_name: name.to_string(),
            });
        }
    }
    let fields = ShardFields::of(schema)?;
    let (field, json_name, indexed) = match (index, fields.columnar) {
        (ColumnIndex::Off, Some(columnar)) => (columnar, COLUMNAR_FIELD, false),
        _ => (fields.source, SOURCE_FIELD, true),
    };
    Ok(ColumnLocation {
        field,
        json: true,
        indexed,
        fast_name: format!("{json_name}.{name}"),
    })
}

/// [`locate`] for a column definition.
pub fn locate_column(schema: &Schema, column: &ColumnDef) -> Result<ColumnLocation> {
    locate(schema, &column.name, &column.column_type, column.index)
}

/// Builds one document per row of `batch` for an index of `schema`. The batch has an `_id`
/// column plus table columns (any subset, any order); rows get
/// `_seq_no = first_seq_no + row` and `primary_term`.
pub fn documents_from_batch(
    table: &TableSchema,
    schema: &Schema,
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
    let mut columns: Vec<(&ColumnDef, ColumnLocation, &ArrayRef)> = Vec::new();
    for column in &table.columns {
        if let Some(array) = batch.column_by_name(&column.name) {
            columns.push((column, locate_column(schema, column)?, array));
        }
    }
    // Each FULLTEXT index's field and the text columns of the batch it indexes (an index the
    // shard's layout lacks is skipped: the table cannot gain one after its shards exist).
    let mut fulltext: Vec<(Field, Vec<&StringArray>)> = Vec::new();
    for index in &table.fulltext {
        let Ok(field) = schema.get_field(&fulltext_field_name(&index.name)) else {
            continue;
        };
        let texts = index
            .columns
            .iter()
            .filter_map(|name| batch.column_by_name(name))
            .filter_map(|array| array.as_any().downcast_ref::<StringArray>())
            .collect();
        fulltext.push((field, texts));
    }
    let mut documents = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let id = ids.value(row).to_string();
        let mut document = TantivyDocument::default();
        document.add_text(fields.id, &id);
        document.add_i64(fields.seq_no, (first_seq_no + row as u64) as i64);
        document.add_i64(fields.primary_term, primary_term as i64);
        // Keys of each JSON field, built only for columns without a field of their own.
        let mut objects: Vec<(Field, BTreeMap<String, OwnedValue>)> = Vec::new();
        for (column, location, array) in &columns {
            if !location.json {
                // A scalar's owned value has its field's type (see `typed_field_type`).
                if let Some(value) = owned_value(&column.column_type, array, row)? {
                    document.add_field_value(location.field, &value);
                }
                continue;
            }
            let position = match objects.iter().position(|(f, _)| *f == location.field) {
                Some(position) => position,
                None => {
                    objects.push((location.field, BTreeMap::new()));
                    objects.len() - 1
                }
            };
            let object = &mut objects[position].1;
            if is_object_column(&column.column_type) {
                // The object as JSON is what scans read back; its key gets the typed values
                // of its sub-columns, for filters.
                if array.is_valid(row) {
                    let json = creek_common::object::value_to_json(array.as_ref(), row);
                    let text = json.to_string();
                    if text.len() > creek_common::geo::MAX_SHAPE_BYTES {
                        // The coordinator refuses these; a cut JSON must never be stored.
                        return Err(Error::InvalidRequest(format!(
                            "value of column {} too large: {} bytes of JSON",
                            column.name,
                            text.len()
                        )));
                    }
                    object.insert(
                        format!("{EXACT_ARRAY_PREFIX}{}", column.name),
                        OwnedValue::Str(text),
                    );
                }
            } else if let ColumnType::Array(inner) = &column.column_type {
                if let Some(exact) = exact_array(inner, array, row)? {
                    object.insert(
                        format!("{EXACT_ARRAY_PREFIX}{}", column.name),
                        OwnedValue::Str(exact),
                    );
                }
            }
            if let ColumnType::GeoShape = &column.column_type {
                // The GeoJSON itself, read back by scans; the column's key gets its box.
                if let Some(shapes) = array.as_any().downcast_ref::<StringArray>() {
                    if shapes.is_valid(row)
                        && shapes.value(row).len() > creek_common::geo::MAX_SHAPE_BYTES
                    {
                        // The coordinator refuses these; a cut GeoJSON must never be stored.
                        return Err(Error::InvalidRequest(format!(
                            "shape too large: {} bytes of GeoJSON",
                            shapes.value(row).len()
                        )));
                    }
                    if shapes.is_valid(row) {
                        object.insert(
                            format!("{EXACT_ARRAY_PREFIX}{}", column.name),
                            OwnedValue::Str(shapes.value(row).to_string()),
                        );
                    }
                }
            }
            if let Some(value) = owned_value(&column.column_type, array, row)? {
                object.insert(column.name.clone(), value);
            }
        }
        for (field, object) in objects {
            if !object.is_empty() {
                document.add_object(field, object);
            }
        }
        for (field, texts) in &fulltext {
            for text in texts {
                if text.is_valid(row) {
                    document.add_text(*field, text.value(row));
                }
            }
        }
        documents.push((id, document));
    }
    Ok(documents)
}

/// Whether a column holds objects (or arrays of objects, points or shapes), which shards
/// keep as JSON text.
pub fn is_object_column(column_type: &ColumnType) -> bool {
    creek_common::object::is_document_type(column_type)
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
        ColumnType::GeoShape => {
            // A shape's box, four fast numbers: `intersects` and `within` become ranges
            // over them (`scan::query::geo`).
            let text = get!(StringArray);
            // The coordinator only sends shapes it read with the same parser. Should one not
            // read here, its box is the whole globe: every query still finds it (the exact
            // predicate decides), and a write already in the translog never fails the shard.
            let bounds = creek_common::geo::parse_shape(text)
                .ok()
                .and_then(|shape| creek_common::geo::shape_bounds(&shape))
                .unwrap_or(creek_common::geo::GeoBounds {
                    lon: None,
                    lat: (-90.0, 90.0),
                });
            let (min_lon, max_lon) = bounds.lon.unwrap_or((-180.0, 180.0));
            OwnedValue::Object(vec![
                (SHAPE_MIN_LON_KEY.to_string(), OwnedValue::F64(min_lon)),
                (SHAPE_MAX_LON_KEY.to_string(), OwnedValue::F64(max_lon)),
                (SHAPE_MIN_LAT_KEY.to_string(), OwnedValue::F64(bounds.lat.0)),
                (SHAPE_MAX_LAT_KEY.to_string(), OwnedValue::F64(bounds.lat.1)),
            ])
        }
        ColumnType::Object { fields, .. } => {
            // Sub-columns by their types; an IGNORED object's other keys are not indexed.
            let columns = array
                .as_any()
                .downcast_ref::<datafusion::arrow::array::StructArray>()
                .ok_or_else(mismatch)?;
            // The batch's own sub-columns, not this node's definition's: a replica may not
            // have applied the definition that added a key the primary indexed.
            let mut entries = Vec::with_capacity(columns.num_columns());
            for (child_field, child) in columns.fields().iter().zip(columns.columns()) {
                if child_field.name() == creek_common::object::IGNORED_KEYS {
                    continue;
                }
                let declared = fields
                    .iter()
                    .find(|f| f.name == *child_field.name())
                    .map(|f| f.column_type.clone());
                let Some(child_type) =
                    declared.or_else(|| ColumnType::from_arrow(child_field.data_type()))
                else {
                    continue;
                };
                if let Some(value) = owned_value(&child_type, child, row)? {
                    entries.push((child_field.name().clone(), value));
                }
            }
            OwnedValue::Object(entries)
        }
        ColumnType::GeoPoint => {
            let points = array
                .as_any()
                .downcast_ref::<FixedSizeListArray>()
                .filter(|points| points.value_length() == 2)
                .ok_or_else(mismatch)?;
            let values = points.value(row);
            let values = values
                .as_any()
                .downcast_ref::<Float64Array>()
                .ok_or_else(mismatch)?;
            OwnedValue::Object(vec![
                (GEO_LON_KEY.to_string(), OwnedValue::F64(values.value(0))),
                (GEO_LAT_KEY.to_string(), OwnedValue::F64(values.value(1))),
            ])
        }
    }))
}
