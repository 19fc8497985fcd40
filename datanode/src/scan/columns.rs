//! Reads a shard segment's fast (columnar) fields straight into Arrow arrays.
//!
//! This is the scan's only data path: no per-row documents are materialised. The value types
//! match what `shard::document` writes for each column type; numerical columns are coerced, so a
//! `double` column whose values happened to all be integral still reads as `f64`.

use std::io;
use std::sync::Arc;

use creek_common::geo::GeoPoint;
use creek_common::schema::{ID_COLUMN, PRIMARY_TERM_COLUMN, SCORE_COLUMN, SEQ_NO_COLUMN};
use creek_common::types::ColumnType;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, Decimal128Array, Float64Builder,
    Int64Builder, ListBuilder, StringArray, StringBuilder, UInt64Array,
};
use datafusion::arrow::array::{ArrowPrimitiveType, PrimitiveArray};
use datafusion::arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::compute::interleave;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Field, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    TimestampMicrosecondType,
};
use tantivy::columnar::{
    Column, ColumnIndex as ColumnValuesIndex, DynamicColumn, NumericalType, StrColumn,
};
use tantivy::{DocId, SegmentReader};

use super::super::shard::document::{locate, EXACT_ARRAY_PREFIX, GEO_LAT_KEY, GEO_LON_KEY};
use creek_common::schema::ColumnIndex;
use datafusion::common::ScalarValue;

/// What a scan reads for one output column.
#[derive(Debug, Clone)]
pub enum ColumnSpec {
    /// The hidden `_id` column.
    Id,
    /// The hidden `_seq_no` column.
    SeqNo,
    /// The hidden `_primary_term` column.
    PrimaryTerm,
    /// Where the row is: its partition, segment and document in the scan's searcher (for a
    /// late fetch of the other columns, `late_fetch`).
    DocAddress,
    /// The hidden `_score` column: the row's relevance to the scan's `MATCH` (1 without one).
    Score,
    /// A table column (where the index keeps it: `shard::document::locate`).
    Table {
        name: String,
        column_type: ColumnType,
        index: ColumnIndex,
    },
}

impl ColumnSpec {
    /// Returns the Arrow type the column reads as.
    pub fn arrow_type(&self) -> DataType {
        match self {
            ColumnSpec::Id => DataType::Utf8,
            ColumnSpec::SeqNo | ColumnSpec::PrimaryTerm => DataType::Int64,
            ColumnSpec::DocAddress => DataType::UInt64,
            ColumnSpec::Score => DataType::Float32,
            ColumnSpec::Table { column_type, .. } => column_type.arrow_type(),
        }
    }

    /// Returns the output column name.
    pub fn name(&self) -> &str {
        match self {
            ColumnSpec::Id => ID_COLUMN,
            ColumnSpec::SeqNo => SEQ_NO_COLUMN,
            ColumnSpec::PrimaryTerm => PRIMARY_TERM_COLUMN,
            ColumnSpec::DocAddress => "_doc_address",
            ColumnSpec::Score => SCORE_COLUMN,
            ColumnSpec::Table { name, .. } => name,
        }
    }
}

/// The opened fast-field columns of one output column in one segment.
pub enum SegmentColumn {
    /// A numerical column read as i64 (ints, timestamps, dates).
    /// The second field is the one column's stored `u64` values, where the column is a
    /// single typed one: its codec unpacks a range of them at once, while the mapped `i64`
    /// view goes through a wrapper value by value.
    I64(Vec<Column<i64>>, Option<Column<u64>>),
    /// A numerical column read as f64.
    /// As for `I64`: the stored `u64` values of a single typed column.
    F64(Vec<Column<f64>>, Option<Column<u64>>),
    /// A boolean column.
    Bool(Vec<Column<bool>>),
    /// A dictionary-encoded string column.
    Str(StrColumns),
    /// Document addresses: this base or-ed with the document id.
    DocAddress(u64),
    /// An array column: its exact JSON form where written, and the element values for
    /// documents written before the exact form existed.
    Array {
        exact: StrColumns,
        elements: Box<SegmentColumn>,
    },
    /// A `geo_point` column: the numbers under its `lon` and `lat` keys.
    GeoPoint {
        lon: Box<SegmentColumn>,
        lat: Box<SegmentColumn>,
    },
}

/// Below this many documents read from a segment, a string column resolves each batch's
/// ordinals alone; from it, the whole dictionary may be decoded once (see [`StrColumns`]).
const PRELOAD_MIN_READS: usize = 16 * 1024;

/// The dictionary-encoded columns of one output column in one segment. When a scan reads at
/// least half as many documents as a dictionary has terms, the dictionary is decoded once, in
/// order, up front: resolving each batch's ordinals separately would walk most dictionary
/// blocks again for every batch of a high-cardinality column (URLs, titles), which dominated
/// full scans of such columns.
pub struct StrColumns {
    columns: Vec<StrColumn>,
    /// Per column, every term in ordinal order, when decoded up front.
    all_terms: Vec<Option<Terms>>,
}

impl StrColumns {
    fn open(columns: Vec<StrColumn>, reads: usize) -> io::Result<StrColumns> {
        let all_terms = columns
            .iter()
            .map(|column| {
                let terms = column.num_terms();
                if reads >= PRELOAD_MIN_READS && terms <= reads.saturating_mul(2) {
                    match Terms::all(column) {
                        Ok(terms) => Ok(Some(terms)),
                        // Too large to hold at once: resolve batch by batch instead.
                        Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(None),
                        Err(e) => Err(e),
                    }
                } else {
                    Ok(None)
                }
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(StrColumns { columns, all_terms })
    }

    /// Reads from dictionaries this scan already decoded whole (`decoded`, one per column, as
    /// [`Terms::all`] gives them) instead of decoding them again.
    pub(super) fn adopt(&mut self, decoded: &[Terms]) {
        if decoded.len() != self.columns.len() {
            return;
        }
        for (slot, terms) in self.all_terms.iter_mut().zip(decoded) {
            if slot.is_none() {
                *slot = Some(terms.clone());
            }
        }
    }

    fn iter(&self) -> std::slice::Iter<'_, StrColumn> {
        self.columns.iter()
    }

    /// The segment's columns of this name, in the order a value is read from them.
    pub(super) fn columns(&self) -> &[StrColumn] {
        &self.columns
    }
}

/// Terms of one dictionary for a sorted set of ordinals, as an Arrow array: batches take
/// their values from it, so each term is decoded and UTF-8-checked once, not once per row.
#[derive(Clone)]
pub(super) struct Terms {
    /// The ordinal of each value; `None`: every ordinal of the dictionary, from 0.
    ords: Option<Vec<u64>>,
    values: StringArray,
}

impl Terms {
    /// Every term of `column`'s dictionary, in ordinal order. Fails with `InvalidInput` if they
    /// do not fit one Arrow string array (2 GiB).
    pub(super) fn all(column: &StrColumn) -> io::Result<Terms> {
        let ords: Vec<u64> = (0..column.num_terms() as u64).collect();
        let values = Terms::resolve(column, ords)?.values;
        Ok(Terms { ords: None, values })
    }

    /// The terms, by position.
    pub(super) fn values(&self) -> &StringArray {
        &self.values
    }

    /// Fails with `InvalidInput` if the terms do not fit one Arrow string array (2 GiB).
    fn resolve(column: &StrColumn, ords: Vec<u64>) -> io::Result<Terms> {
        let mut offsets: Vec<i32> = Vec::with_capacity(ords.len() + 1);
        offsets.push(0);
        let mut bytes = Vec::new();
        let mut overflow = false;
        let complete = column.dictionary().sorted_ords_to_term_cb(&ords, |term| {
            bytes.extend_from_slice(term);
            match i32::try_from(bytes.len()) {
                Ok(end) => offsets.push(end),
                Err(_) => overflow = true,
            }
        })?;
        if overflow {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "string terms exceed one Arrow array",
            ));
        }
        if !complete || offsets.len() != ords.len() + 1 {
            // A dictionary that cannot give back its own ordinals is a damaged segment.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a string column's dictionary is missing ordinals its documents use",
            ));
        }
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        let values = if std::str::from_utf8(&bytes).is_ok() {
            StringArray::try_new(offsets, Buffer::from_vec(bytes), None)
                .map_err(io::Error::other)?
        } else {
            // Terms are written from UTF-8 text; should one not be, read it lossily rather
            // than fail the scan.
            offsets
                .windows(2)
                .map(|w| {
                    Some(String::from_utf8_lossy(
                        &bytes[w[0] as usize..w[1] as usize],
                    ))
                })
                .collect()
        };
        Ok(Terms {
            ords: Some(ords),
            values,
        })
    }

    /// Position of `ord` in `values`.
    fn index(&self, ord: u64) -> Option<usize> {
        match &self.ords {
            None => usize::try_from(ord).ok().filter(|&i| i < self.values.len()),
            Some(ords) => ords.binary_search(&ord).ok(),
        }
    }
}

/// Opens the fast-field columns for `spec` in `segment`.
/// `reads` is how many of the segment's documents the scan will read at most.
pub fn open_segment_column(
    segment: &SegmentReader,
    spec: &ColumnSpec,
    reads: usize,
) -> tantivy::Result<SegmentColumn> {
    let fast_fields = segment.fast_fields();
    let (name, column_type, index) = match spec {
        ColumnSpec::Id => {
            let column = fast_fields.str(ID_COLUMN)?;
            return Ok(SegmentColumn::Str(StrColumns::open(
                column.into_iter().collect(),
                reads,
            )?));
        }
        ColumnSpec::SeqNo => {
            return Ok(SegmentColumn::I64(
                vec![fast_fields.i64(SEQ_NO_COLUMN)?],
                None,
            ));
        }
        ColumnSpec::PrimaryTerm => {
            return Ok(SegmentColumn::I64(
                vec![fast_fields.i64(PRIMARY_TERM_COLUMN)?],
                None,
            ));
        }
        ColumnSpec::DocAddress | ColumnSpec::Score => {
            return Err(tantivy::TantivyError::InvalidArgument(format!(
                "{} is made by the scan, not read from a segment",
                spec.name()
            )));
        }
        ColumnSpec::Table {
            name,
            column_type,
            index,
        } => (name, column_type, *index),
    };
    let location = locate(segment.schema(), name, column_type, index)
        .map_err(|e| tantivy::TantivyError::SchemaError(e.to_string()))?;
    if crate::shard::document::is_object_column(column_type) || *column_type == ColumnType::GeoShape
    {
        // Objects and shapes are read from their JSON (their exact form); the column's key
        // holds what filters use (sub-columns' values, a shape's box).
        let json_name = segment.schema().get_field_name(location.field);
        let exact = fast_fields.str(&format!("{json_name}.{EXACT_ARRAY_PREFIX}{name}"))?;
        return Ok(SegmentColumn::Str(StrColumns::open(
            exact.into_iter().collect(),
            reads,
        )?));
    }
    if let ColumnType::Array(inner) = column_type {
        // Arrays are always keys of a JSON field, with their exact form beside them.
        let json_name = segment.schema().get_field_name(location.field);
        let exact = fast_fields.str(&format!("{json_name}.{EXACT_ARRAY_PREFIX}{name}"))?;
        let element_spec = ColumnSpec::Table {
            name: name.to_string(),
            column_type: inner.as_ref().clone(),
            index,
        };
        return Ok(SegmentColumn::Array {
            exact: StrColumns::open(exact.into_iter().collect(), reads)?,
            elements: Box::new(open_segment_column(segment, &element_spec, reads)?),
        });
    }
    if let ColumnType::GeoPoint = column_type {
        let part = |key: &str| {
            let spec = ColumnSpec::Table {
                name: format!("{name}.{key}"),
                column_type: ColumnType::Double,
                index,
            };
            open_segment_column(segment, &spec, reads).map(Box::new)
        };
        return Ok(SegmentColumn::GeoPoint {
            lon: part(GEO_LON_KEY)?,
            lat: part(GEO_LAT_KEY)?,
        });
    }
    let path = location.fast_name;
    let element_type = match column_type {
        ColumnType::Array(inner) => inner.as_ref(),
        other => other,
    };
    let handles = fast_fields.dynamic_column_handles(&path)?;
    let raw = |stored: tantivy::columnar::ColumnType| match handles.as_slice() {
        [handle] if handle.column_type() == stored => handle.open_u64_lenient(),
        _ => Ok(None),
    };
    let raw_i64 = raw(tantivy::columnar::ColumnType::I64)?;
    let raw_f64 = raw(tantivy::columnar::ColumnType::F64)?;
    let mut opened = Vec::with_capacity(handles.len());
    for handle in handles {
        opened.push(handle.open()?);
    }
    Ok(match element_type {
        ColumnType::Boolean => SegmentColumn::Bool(
            opened
                .into_iter()
                .filter_map(|c| match c {
                    DynamicColumn::Bool(column) => Some(column),
                    _ => None,
                })
                .collect(),
        ),
        ColumnType::Real | ColumnType::Double => SegmentColumn::F64(
            opened
                .into_iter()
                .filter_map(|c| match c.coerce_numerical(NumericalType::F64) {
                    Some(DynamicColumn::F64(column)) => Some(column),
                    _ => None,
                })
                .collect(),
            raw_f64,
        ),
        ColumnType::SmallInt
        | ColumnType::Integer
        | ColumnType::BigInt
        | ColumnType::Timestamp
        | ColumnType::TimestampTz
        | ColumnType::Date => SegmentColumn::I64(
            opened
                .into_iter()
                .filter_map(|c| match c.coerce_numerical(NumericalType::I64) {
                    Some(DynamicColumn::I64(column)) => Some(column),
                    _ => None,
                })
                .collect(),
            raw_i64,
        ),
        ColumnType::Numeric { .. }
        | ColumnType::Text { .. }
        | ColumnType::Ip
        | ColumnType::Array(_)
        | ColumnType::GeoPoint
        | ColumnType::GeoShape
        | ColumnType::Object { .. } => SegmentColumn::Str(StrColumns::open(
            opened
                .into_iter()
                .filter_map(|c| match c {
                    DynamicColumn::Str(column) => Some(column),
                    _ => None,
                })
                .collect(),
            reads,
        )?),
    })
}

/// Reads the values of `docs` (ascending doc ids of one segment) into an Arrow array of the
/// spec's type.
pub fn read_column(
    column: &SegmentColumn,
    spec: &ColumnSpec,
    docs: &[DocId],
) -> io::Result<ArrayRef> {
    let column_type = match spec {
        ColumnSpec::Id => return Ok(Arc::new(read_strings(column, docs)?)),
        ColumnSpec::SeqNo | ColumnSpec::PrimaryTerm => {
            return Ok(Arc::new(read_i64_as::<Int64Type>(column, docs, |v| v)))
        }
        ColumnSpec::DocAddress => {
            let SegmentColumn::DocAddress(base) = column else {
                return Err(io::Error::other(
                    "document addresses without a segment base",
                ));
            };
            return Ok(Arc::new(UInt64Array::from_iter_values(
                docs.iter().map(|doc| base | u64::from(*doc)),
            )));
        }
        ColumnSpec::Score => {
            return Err(io::Error::other("scores are made by the scan"));
        }
        ColumnSpec::Table { column_type, .. } => column_type,
    };
    Ok(match column_type {
        ColumnType::Boolean => Arc::new(BooleanArray::from(read_bool(column, docs))),
        ColumnType::SmallInt => Arc::new(read_i64_as::<Int16Type>(column, docs, |v| v as i16)),
        ColumnType::Integer => Arc::new(read_i64_as::<Int32Type>(column, docs, |v| v as i32)),
        ColumnType::BigInt => Arc::new(read_i64_as::<Int64Type>(column, docs, |v| v)),
        ColumnType::Real => Arc::new(read_f64_as::<Float32Type>(column, docs, |v| v as f32)),
        ColumnType::Double => Arc::new(read_f64_as::<Float64Type>(column, docs, |v| v)),
        ColumnType::Numeric { precision, scale } => {
            let strings = read_strings(column, docs)?;
            let values: Vec<Option<i128>> = strings
                .iter()
                .map(|value| value.and_then(|text| text.parse::<i128>().ok()))
                .collect();
            // A table created before precision and scale were validated may declare a pair
            // Arrow refuses; its scan fails with Arrow's reason instead of panicking.
            Arc::new(
                Decimal128Array::from(values)
                    .with_precision_and_scale(*precision, *scale)
                    .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?,
            )
        }
        ColumnType::Text { .. } | ColumnType::Ip | ColumnType::GeoShape => {
            Arc::new(read_strings(column, docs)?)
        }
        ColumnType::Timestamp => {
            Arc::new(read_i64_as::<TimestampMicrosecondType>(column, docs, |v| v))
        }
        ColumnType::TimestampTz => Arc::new(
            read_i64_as::<TimestampMicrosecondType>(column, docs, |v| v).with_timezone("+00:00"),
        ),
        ColumnType::Date => Arc::new(read_i64_as::<Date32Type>(column, docs, |v| v as i32)),
        ColumnType::Object { .. } => read_objects(column, column_type, spec.name(), docs)?,
        ColumnType::Array(_) if crate::shard::document::is_object_column(column_type) => {
            read_objects(column, column_type, spec.name(), docs)?
        }
        ColumnType::Array(inner) => match column {
            SegmentColumn::Array { exact, elements } => read_array(exact, elements, inner, docs)?,
            other => read_list(other, inner, docs),
        },
        ColumnType::GeoPoint => {
            let SegmentColumn::GeoPoint { lon, lat } = column else {
                return Err(io::Error::other(
                    "a geo_point column opened as another type",
                ));
            };
            let lon = read_f64_as::<Float64Type>(lon, docs, |v| v);
            let lat = read_f64_as::<Float64Type>(lat, docs, |v| v);
            let points: Vec<Option<GeoPoint>> = lon
                .iter()
                .zip(lat.iter())
                .map(|pair| match pair {
                    (Some(lon), Some(lat)) => Some(GeoPoint { lon, lat }),
                    _ => None,
                })
                .collect();
            Arc::new(creek_common::geo::points_to_array(&points))
        }
    })
}

/// Reads objects (or arrays of them) from the JSON each document stored.
fn read_objects(
    column: &SegmentColumn,
    column_type: &ColumnType,
    name: &str,
    docs: &[DocId],
) -> io::Result<ArrayRef> {
    let texts = read_strings(column, docs)?;
    let texts: Vec<Option<&str>> = texts.iter().collect();
    creek_common::object::objects_from_texts(&texts, column_type, name)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

/// Reads an array column: the exact JSON form where a document has it, else the element
/// values (documents written before the exact form existed).
fn read_array(
    exact: &StrColumns,
    elements: &SegmentColumn,
    inner: &ColumnType,
    docs: &[DocId],
) -> io::Result<ArrayRef> {
    let fallback = read_list(elements, inner, docs);
    let element_type = inner.arrow_type();
    let exact_texts = read_str_columns(exact, docs)?;
    let mut values = Vec::with_capacity(docs.len());
    for (index, exact_text) in exact_texts.iter().enumerate() {
        let parsed = exact_text
            .and_then(|json| serde_json::from_str::<Vec<serde_json::Value>>(json).ok())
            .and_then(|items| {
                items
                    .iter()
                    .map(|item| element_scalar(inner, item))
                    .collect::<Option<Vec<_>>>()
            });
        values.push(match parsed {
            Some(items) => ScalarValue::List(ScalarValue::new_list_nullable(&items, &element_type)),
            None => ScalarValue::try_from_array(&fallback, index).unwrap_or_else(|_| {
                ScalarValue::try_from(fallback.data_type()).unwrap_or(ScalarValue::Null)
            }),
        });
    }
    if values.is_empty() {
        return Ok(fallback);
    }
    Ok(ScalarValue::iter_to_array(values).unwrap_or(fallback))
}

/// One element of an exact array as the element type's scalar; `None` if it does not fit.
fn element_scalar(inner: &ColumnType, item: &serde_json::Value) -> Option<ScalarValue> {
    use serde_json::Value;
    let null = item.is_null();
    let int = || item.as_i64();
    Some(match inner {
        ColumnType::Boolean => {
            ScalarValue::Boolean(if null { None } else { Some(item.as_bool()?) })
        }
        ColumnType::SmallInt => ScalarValue::Int16(if null { None } else { Some(int()? as i16) }),
        ColumnType::Integer => ScalarValue::Int32(if null { None } else { Some(int()? as i32) }),
        ColumnType::BigInt => ScalarValue::Int64(if null { None } else { Some(int()?) }),
        ColumnType::Timestamp => {
            ScalarValue::TimestampMicrosecond(if null { None } else { Some(int()?) }, None)
        }
        ColumnType::TimestampTz => ScalarValue::TimestampMicrosecond(
            if null { None } else { Some(int()?) },
            Some("+00:00".into()),
        ),
        ColumnType::Date => ScalarValue::Date32(if null { None } else { Some(int()? as i32) }),
        ColumnType::Real | ColumnType::Double => {
            let value = match item {
                Value::Null => None,
                Value::String(name) => Some(name.parse::<f64>().ok()?),
                other => Some(other.as_f64()?),
            };
            if matches!(inner, ColumnType::Real) {
                ScalarValue::Float32(value.map(|v| v as f32))
            } else {
                ScalarValue::Float64(value)
            }
        }
        ColumnType::Numeric { precision, scale } => ScalarValue::Decimal128(
            if null {
                None
            } else {
                Some(item.as_str()?.parse::<i128>().ok()?)
            },
            *precision,
            *scale,
        ),
        ColumnType::Text { .. } | ColumnType::Ip => ScalarValue::Utf8(if null {
            None
        } else {
            Some(item.as_str()?.to_string())
        }),
        // Tables cannot declare arrays of arrays, points or shapes.
        ColumnType::Array(_)
        | ColumnType::GeoPoint
        | ColumnType::GeoShape
        | ColumnType::Object { .. } => return None,
    })
}

fn read_i64_as<T: ArrowPrimitiveType>(
    column: &SegmentColumn,
    docs: &[DocId],
    convert: impl Fn(i64) -> T::Native,
) -> PrimitiveArray<T> {
    match column {
        SegmentColumn::I64(columns, raw) => {
            read_numbers(columns, raw.as_ref(), stored_to_i64, docs, convert)
        }
        _ => PrimitiveArray::new_null(docs.len()),
    }
}

fn read_f64_as<T: ArrowPrimitiveType>(
    column: &SegmentColumn,
    docs: &[DocId],
    convert: impl Fn(f64) -> T::Native,
) -> PrimitiveArray<T> {
    match column {
        SegmentColumn::F64(columns, raw) => {
            read_numbers(columns, raw.as_ref(), stored_to_f64, docs, convert)
        }
        _ => PrimitiveArray::new_null(docs.len()),
    }
}

/// tantivy's `u64_to_i64`, which tantivy does not inline across crates: called through a
/// function pointer it cost more than unpacking the values (the test pins the two equal).
#[inline(always)]
fn stored_to_i64(value: u64) -> i64 {
    (value ^ (1 << 63)) as i64
}

/// tantivy's `u64_to_f64`, inlined (see [`stored_to_i64`]).
#[inline(always)]
fn stored_to_f64(value: u64) -> f64 {
    f64::from_bits(if value & (1 << 63) != 0 {
        value ^ (1 << 63)
    } else {
        !value
    })
}

/// Reads the first value of each of `docs` from `columns` (the first column holding one wins)
/// into an Arrow array. A single column with a value for every document (every NOT NULL
/// column, and most others) is read in bulk from its stored `u64`s (`raw`, mapped back by
/// `from_raw`) into a buffer without nulls; a contiguous run of documents, as a scan without
/// filters reads, is one range the codec unpacks at once. Only sparse columns go value by
/// value through `Option`s.
fn read_numbers<V, T>(
    columns: &[Column<V>],
    raw: Option<&Column<u64>>,
    from_raw: impl Fn(u64) -> V,
    docs: &[DocId],
    convert: impl Fn(V) -> T::Native,
) -> PrimitiveArray<T>
where
    V: PartialOrd + Copy + Send + Sync + std::fmt::Debug + 'static,
    T: ArrowPrimitiveType,
{
    if let Some(raw) = raw.filter(|raw| matches!(raw.index, ColumnValuesIndex::Full)) {
        let mut values = vec![0u64; docs.len()];
        match (docs.first(), docs.last()) {
            (Some(&first), Some(&last)) if (last - first) as usize + 1 == docs.len() => {
                raw.values.get_range(u64::from(first), &mut values)
            }
            _ => raw.values.get_vals(docs, &mut values),
        }
        return PrimitiveArray::from_iter_values(
            values.into_iter().map(|value| convert(from_raw(value))),
        );
    }
    let mut out = vec![None; docs.len()];
    fill_first(columns, docs, &mut out);
    out.into_iter().map(|value| value.map(&convert)).collect()
}

fn read_bool(column: &SegmentColumn, docs: &[DocId]) -> Vec<Option<bool>> {
    let mut out = vec![None; docs.len()];
    if let SegmentColumn::Bool(columns) = column {
        fill_first(columns, docs, &mut out);
    }
    out
}

fn fill_first<T>(columns: &[Column<T>], docs: &[DocId], out: &mut [Option<T>])
where
    T: PartialOrd + Copy + Send + Sync + std::fmt::Debug + 'static,
{
    let mut scratch = vec![None; docs.len()];
    for column in columns {
        column.first_vals(docs, &mut scratch);
        for (slot, value) in out.iter_mut().zip(scratch.iter()) {
            if slot.is_none() {
                *slot = *value;
            }
        }
    }
}

/// Reads a dictionary-encoded string column. The term ordinals of all `docs` are read first;
/// each segment dictionary is then walked once, in ordinal order, for the distinct ordinals
/// the batch uses. Resolving one ordinal at a time instead re-decodes a dictionary block per
/// row, which made every text column an order of magnitude slower to scan than a number.
fn read_strings(column: &SegmentColumn, docs: &[DocId]) -> io::Result<StringArray> {
    match column {
        SegmentColumn::Str(columns) => read_str_columns(columns, docs),
        _ => Ok(StringArray::new_null(docs.len())),
    }
}

fn read_str_columns(columns: &StrColumns, docs: &[DocId]) -> io::Result<StringArray> {
    // (segment column, ordinal) of the value each document reads: the first column that has
    // one, as for numbers.
    let mut picks: Vec<Option<(usize, u64)>> = vec![None; docs.len()];
    let mut scratch = vec![None; docs.len()];
    for (index, column) in columns.iter().enumerate() {
        column.ords().first_vals(docs, &mut scratch);
        for (pick, ord) in picks.iter_mut().zip(scratch.iter_mut()) {
            if let (None, Some(ord)) = (&pick, ord.take()) {
                *pick = Some((index, ord));
            }
        }
    }
    // Per column without a decoded dictionary: the distinct ordinals this batch uses.
    let mut batch_terms: Vec<Option<Terms>> = Vec::with_capacity(columns.columns.len());
    for (index, column) in columns.iter().enumerate() {
        if columns.all_terms[index].is_some() {
            batch_terms.push(None);
            continue;
        }
        let mut ords: Vec<u64> = picks
            .iter()
            .filter_map(|pick| pick.filter(|(c, _)| *c == index).map(|(_, ord)| ord))
            .collect();
        ords.sort_unstable();
        ords.dedup();
        batch_terms.push(Some(Terms::resolve(column, ords)?));
    }
    let missing = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "a string column's dictionary is missing ordinals its documents use",
        )
    };
    let nulls = StringArray::new_null(1);
    let mut sources: Vec<&dyn Array> = Vec::with_capacity(columns.columns.len() + 1);
    for (all, batch) in columns.all_terms.iter().zip(&batch_terms) {
        let terms = all.as_ref().or(batch.as_ref()).ok_or_else(missing)?;
        sources.push(&terms.values);
    }
    let null_source = sources.len();
    sources.push(&nulls);
    let mut indices = Vec::with_capacity(picks.len());
    for pick in &picks {
        indices.push(match *pick {
            None => (null_source, 0),
            Some((column, ord)) => {
                let terms = columns.all_terms[column]
                    .as_ref()
                    .or(batch_terms[column].as_ref())
                    .ok_or_else(missing)?;
                (column, terms.index(ord).ok_or_else(missing)?)
            }
        });
    }
    let taken = interleave(&sources, &indices).map_err(io::Error::other)?;
    Ok(taken.as_string::<i32>().clone())
}

fn read_list(column: &SegmentColumn, inner: &ColumnType, docs: &[DocId]) -> ArrayRef {
    let field = Field::new("item", inner.arrow_type(), true);
    macro_rules! build_list {
        ($builder:expr, $columns:expr, $convert:expr) => {{
            let mut list = ListBuilder::new($builder);
            for doc in docs {
                let mut any = false;
                for column in $columns {
                    for value in column.values_for_doc(*doc) {
                        list.values().append_value($convert(value));
                        any = true;
                    }
                }
                list.append(any);
            }
            Arc::new(list.finish()) as ArrayRef
        }};
    }
    match (column, inner) {
        (SegmentColumn::I64(columns, _), ColumnType::BigInt) => {
            build_list!(Int64Builder::new(), columns, |v: i64| v)
        }
        (SegmentColumn::F64(columns, _), ColumnType::Double) => {
            build_list!(Float64Builder::new(), columns, |v: f64| v)
        }
        (SegmentColumn::Bool(columns), _) => {
            build_list!(BooleanBuilder::new(), columns, |v: bool| v)
        }
        (SegmentColumn::Str(columns), ColumnType::Text { .. } | ColumnType::Ip) => {
            let mut list = ListBuilder::new(StringBuilder::new()).with_field(Arc::new(field));
            let mut text = String::new();
            for doc in docs {
                let mut any = false;
                for column in columns.iter() {
                    for ord in column.term_ords(*doc) {
                        if column.ord_to_str(ord, &mut text).unwrap_or(false) {
                            list.values().append_value(&text);
                            any = true;
                        }
                    }
                }
                list.append(any);
            }
            Arc::new(list.finish())
        }
        _ => {
            // Element types without a list reader yet come back cast from the widest type.
            let wide = match column {
                SegmentColumn::I64(columns, _) => {
                    build_list!(Int64Builder::new(), columns, |v: i64| v)
                }
                SegmentColumn::F64(columns, _) => {
                    build_list!(Float64Builder::new(), columns, |v: f64| v)
                }
                _ => {
                    let mut list = ListBuilder::new(StringBuilder::new());
                    for _ in docs {
                        list.append(false);
                    }
                    Arc::new(list.finish()) as ArrayRef
                }
            };
            let target = DataType::List(Arc::new(Field::new("item", inner.arrow_type(), true)));
            datafusion::arrow::compute::cast(&wide, &target).unwrap_or(wide)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_map_back_as_tantivy_maps_them() {
        for value in [i64::MIN, -1_000_000, -1, 0, 1, 42, i64::MAX] {
            let stored = tantivy::i64_to_u64(value);
            assert_eq!(stored_to_i64(stored), tantivy::u64_to_i64(stored));
            assert_eq!(stored_to_i64(stored), value);
        }
        for value in [
            f64::MIN,
            -2.5,
            -0.0,
            0.0,
            1e-300,
            3.25,
            f64::MAX,
            f64::INFINITY,
        ] {
            let stored = tantivy::f64_to_u64(value);
            assert_eq!(
                stored_to_f64(stored).to_bits(),
                tantivy::u64_to_f64(stored).to_bits()
            );
            assert_eq!(stored_to_f64(stored).to_bits(), value.to_bits());
        }
    }
}
