//! OBJECT columns: their sub-columns and policies, and the one conversion between JSON and
//! their Arrow form, a struct of the sub-columns the table knows.
//!
//! Every path that writes an object (INSERT, COPY, HTTP and pgwire parameters) decodes it
//! here, data nodes decode the objects they stored with the same function, and dynamic keys
//! are inferred and merged into the table's definition here, so every node agrees on what a
//! key's type is. An IGNORED object's keys that are not sub-columns travel in one extra
//! struct child, [`IGNORED_KEYS`], as JSON text: they are stored and returned, never indexed.
//! Pure functions only: this module must not know how a shard indexes an object or how a
//! client is sent one.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, Date32Array, Float32Array,
    Float64Array, Int16Array, Int32Array, Int64Array, ListArray, StringArray, StructArray,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, Field, Fields, Float16Type, Float32Type, Float64Type, Int16Type,
    Int32Type, Int64Type, Int8Type, TimeUnit, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{CodedError, ErrorCode};
use crate::types::{
    date_days_from_epoch_millis, timestamp_micros_from_epoch_millis,
    timestamp_micros_from_epoch_seconds, ColumnType,
};

/// Name of the struct child of an IGNORED object holding its other keys as a JSON object.
/// Sub-column names never start with `_`, so it names no sub-column.
pub const IGNORED_KEYS: &str = "_ignored";

/// The most sub-columns (at any depth) one table's objects may have: dynamic keys come from
/// the data, and a stream of distinct keys must not grow a definition without bound
/// (Elasticsearch's and CrateDB's `mapping.total_fields.limit` has the same default).
pub const MAX_OBJECT_COLUMNS: usize = 1000;

/// How deeply objects and arrays may nest in one column (Elasticsearch's
/// `mapping.depth.limit` is 20). Definitions travel through the Raft log and to every node
/// as JSON, which serde reads to 128 levels; each object level takes four.
pub const MAX_OBJECT_DEPTH: usize = 16;

/// The longest sub-column name, in bytes.
const MAX_KEY_BYTES: usize = 255;

/// What an object does with a key it has no sub-column for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectPolicy {
    /// Adds a sub-column, its type inferred from the value (the default).
    #[default]
    Dynamic,
    /// Refuses the row.
    Strict,
    /// Keeps the key in the row, returned on read but not indexed nor typed.
    Ignored,
}

impl fmt::Display for ObjectPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectPolicy::Dynamic => "dynamic",
            ObjectPolicy::Strict => "strict",
            ObjectPolicy::Ignored => "ignored",
        })
    }
}

impl FromStr for ObjectPolicy {
    type Err = CodedError;

    fn from_str(text: &str) -> Result<ObjectPolicy, CodedError> {
        match text.to_ascii_lowercase().as_str() {
            "dynamic" => Ok(ObjectPolicy::Dynamic),
            "strict" => Ok(ObjectPolicy::Strict),
            "ignored" => Ok(ObjectPolicy::Ignored),
            _ => Err(CodedError::new(
                ErrorCode::InvalidParameterValue,
                format!("invalid object policy {text:?}: expected dynamic, strict or ignored"),
            )),
        }
    }
}

/// One sub-column of an object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectField {
    /// The key.
    pub name: String,
    /// Its type.
    pub column_type: ColumnType,
}

/// The Arrow type of an object column.
pub fn struct_type(policy: ObjectPolicy, fields: &[ObjectField]) -> DataType {
    let mut children: Vec<Field> = fields
        .iter()
        .map(|f| crate::types::column_field(&f.name, &f.column_type))
        .collect();
    if policy == ObjectPolicy::Ignored {
        children.push(Field::new(IGNORED_KEYS, DataType::Utf8, true));
    }
    DataType::Struct(children.into())
}

/// Checks a sub-column name (declared or found in data): `path` names it in messages.
pub fn check_key(key: &str, path: &str) -> Result<(), CodedError> {
    let invalid = key.is_empty()
        || key.starts_with('_')
        || key.len() > MAX_KEY_BYTES
        || key.contains(['.', '[', ']', '\'', '"', '\\', '\u{7f}'])
        || key.chars().any(char::is_control);
    if invalid {
        return Err(CodedError::new(
            ErrorCode::InvalidParameterValue,
            format!(
                "invalid object key {:?} in {path}: keys must be 1 to {MAX_KEY_BYTES} bytes, \
                 not start with _ and not contain . [ ] \\ quotes or control characters",
                excerpt(key)
            ),
        ));
    }
    Ok(())
}

/// Checks the sub-columns of a declared object type: valid, distinct keys at every depth.
pub fn check_declared(column_type: &ColumnType, path: &str) -> Result<(), CodedError> {
    if depth(column_type) > MAX_OBJECT_DEPTH {
        return Err(CodedError::new(
            ErrorCode::ProgramLimitExceeded,
            format!(
                "column {path} nests objects and arrays more than {MAX_OBJECT_DEPTH} levels deep"
            ),
        ));
    }
    match column_type {
        ColumnType::Object { fields, .. } => {
            let mut seen = std::collections::HashSet::new();
            for field in fields {
                let child = child_path(path, &field.name);
                check_key(&field.name, path)?;
                if !seen.insert(field.name.as_str()) {
                    return Err(CodedError::new(
                        ErrorCode::DuplicateObject,
                        format!("column {child} specified more than once"),
                    ));
                }
                check_declared(&field.column_type, &child)?;
            }
            Ok(())
        }
        ColumnType::Array(inner) => check_declared(inner, path),
        _ => Ok(()),
    }
}

/// Whether a shard keeps a column of this type as JSON (its exact form) rather than as
/// typed values: objects, and arrays of objects, points or shapes.
pub fn is_document_type(column_type: &ColumnType) -> bool {
    match column_type {
        ColumnType::Object { .. } => true,
        ColumnType::Array(inner) => {
            matches!(inner.as_ref(), ColumnType::GeoPoint | ColumnType::GeoShape)
                || is_document_type(inner)
        }
        _ => false,
    }
}

/// How many object and array levels a type has (a scalar has none).
pub fn depth(column_type: &ColumnType) -> usize {
    match column_type {
        ColumnType::Object { fields, .. } => {
            1 + fields
                .iter()
                .map(|f| depth(&f.column_type))
                .max()
                .unwrap_or(0)
        }
        ColumnType::Array(inner) => 1 + depth(inner),
        _ => 0,
    }
}

/// How a sub-column is named in messages and `information_schema`: `o['a']['b']`.
pub fn child_path(path: &str, key: &str) -> String {
    format!("{path}['{key}']")
}

/// How many sub-columns (at any depth) a type has.
pub fn sub_column_count(column_type: &ColumnType) -> usize {
    match column_type {
        ColumnType::Object { fields, .. } => fields
            .iter()
            .map(|f| 1 + sub_column_count(&f.column_type))
            .sum(),
        ColumnType::Array(inner) => sub_column_count(inner),
        _ => 0,
    }
}

/// Every sub-column of `column_type` with its path below `path`, depth first.
pub fn sub_columns(column_type: &ColumnType, path: &str) -> Vec<(String, ColumnType)> {
    let mut out = Vec::new();
    let element = match column_type {
        ColumnType::Array(inner) => inner.as_ref(),
        other => other,
    };
    if let ColumnType::Object { fields, .. } = element {
        for field in fields {
            let child = child_path(path, &field.name);
            out.push((child.clone(), field.column_type.clone()));
            out.extend(sub_columns(&field.column_type, &child));
        }
    }
    out
}

/// The type of the sub-column at `keys` below an object (or array of objects) type.
pub fn sub_column_type<'a>(column_type: &'a ColumnType, keys: &[&str]) -> Option<&'a ColumnType> {
    let Some((first, rest)) = keys.split_first() else {
        return Some(column_type);
    };
    let element = match column_type {
        ColumnType::Array(inner) => inner.as_ref(),
        other => other,
    };
    let ColumnType::Object { fields, .. } = element else {
        return None;
    };
    let field = fields.iter().find(|f| f.name == *first)?;
    sub_column_type(&field.column_type, rest)
}

// ---------------------------------------------------------------------------------------------
// Dynamic keys

/// The type a new key gets from its value; `None` for a value nothing can be inferred from
/// (NULL, an empty array), which adds no sub-column (its key reads as NULL anyway).
pub fn infer_type(value: &Value, path: &str) -> Result<Option<ColumnType>, CodedError> {
    Ok(Some(match value {
        Value::Null => return Ok(None),
        Value::Bool(_) => ColumnType::Boolean,
        Value::Number(n) if n.is_f64() => ColumnType::Double,
        Value::Number(_) => ColumnType::BigInt,
        Value::String(_) => ColumnType::Text { max_len: None },
        Value::Array(items) => {
            let mut element: Option<ColumnType> = None;
            for item in items {
                let Some(item_type) = infer_type(item, path)? else {
                    continue;
                };
                element = Some(match element {
                    None => item_type,
                    Some(current) => merge_types(&current, &item_type, path)
                        .or_else(|error| numeric_widening(&current, &item_type).ok_or(error))?,
                });
            }
            match element {
                Some(element) => ColumnType::Array(Box::new(element)),
                None => return Ok(None),
            }
        }
        Value::Object(map) => {
            let mut fields = Vec::new();
            for (key, value) in map {
                let child = child_path(path, key);
                if let Some(column_type) = infer_type(value, &child)? {
                    check_key(key, path)?;
                    fields.push(ObjectField {
                        name: key.clone(),
                        column_type,
                    });
                }
            }
            ColumnType::Object {
                policy: ObjectPolicy::Dynamic,
                fields,
            }
        }
    }))
}

/// Integers and fractions in one array are doubles.
fn numeric_widening(a: &ColumnType, b: &ColumnType) -> Option<ColumnType> {
    match (a, b) {
        (ColumnType::BigInt, ColumnType::Double) | (ColumnType::Double, ColumnType::BigInt) => {
            Some(ColumnType::Double)
        }
        _ => None,
    }
}

/// Adds to `column_type` the sub-columns `value` has and it lacks (DYNAMIC objects), or
/// refuses the value (a STRICT object's unknown key). Returns whether anything was added.
pub fn widen(column_type: &mut ColumnType, value: &Value, path: &str) -> Result<bool, CodedError> {
    match (column_type, value) {
        (ColumnType::Object { policy, fields }, Value::Object(map)) => {
            let mut added = false;
            for (key, child_value) in map {
                let child = child_path(path, key);
                if let Some(field) = fields.iter_mut().find(|f| f.name == *key) {
                    added |= widen(&mut field.column_type, child_value, &child)?;
                    continue;
                }
                if child_value.is_null() {
                    continue;
                }
                match policy {
                    ObjectPolicy::Ignored => {}
                    ObjectPolicy::Strict => {
                        return Err(CodedError::new(
                            ErrorCode::UndefinedColumn,
                            format!(
                                "cannot add column {child} to strict object {path}: \
                                 the object allows only its declared keys"
                            ),
                        ))
                    }
                    ObjectPolicy::Dynamic => {
                        if let Some(new_type) = infer_type(child_value, &child)? {
                            check_key(key, path)?;
                            fields.push(ObjectField {
                                name: key.clone(),
                                column_type: new_type,
                            });
                            added = true;
                        }
                    }
                }
            }
            Ok(added)
        }
        (ColumnType::Array(inner), Value::Array(items)) => {
            let mut added = false;
            for item in items {
                added |= widen(inner, item, path)?;
            }
            Ok(added)
        }
        _ => Ok(false),
    }
}

/// Merges a proposed definition of a column into the current one: the current sub-columns
/// keep their types, new ones are added. Two writers that added the same key with different
/// types conflict; the one whose change arrives second gets this error.
pub fn merge_types(
    current: &ColumnType,
    proposed: &ColumnType,
    path: &str,
) -> Result<ColumnType, CodedError> {
    match (current, proposed) {
        (
            ColumnType::Object { policy, fields },
            ColumnType::Object {
                fields: proposed_fields,
                ..
            },
        ) => {
            let mut merged = fields.clone();
            for field in proposed_fields {
                let child = child_path(path, &field.name);
                match merged.iter_mut().find(|f| f.name == field.name) {
                    Some(existing) => {
                        existing.column_type =
                            merge_types(&existing.column_type, &field.column_type, &child)?
                    }
                    None if *policy == ObjectPolicy::Dynamic => merged.push(field.clone()),
                    None => {
                        return Err(CodedError::new(
                            ErrorCode::UndefinedColumn,
                            format!("cannot add column {child} to {policy} object {path}"),
                        ))
                    }
                }
            }
            Ok(ColumnType::Object {
                policy: *policy,
                fields: merged,
            })
        }
        (ColumnType::Array(a), ColumnType::Array(b)) => {
            Ok(ColumnType::Array(Box::new(merge_types(a, b, path)?)))
        }
        (a, b) if a == b => Ok(a.clone()),
        // Another writer made the key a double first: whole numbers are doubles too.
        (ColumnType::Double, ColumnType::BigInt) => Ok(ColumnType::Double),
        (a, b) => Err(CodedError::new(
            ErrorCode::DatatypeMismatch,
            format!("column {path} has type {a}, a value of type {b} cannot be stored in it"),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Arrow to JSON

/// One value of `array` as JSON: objects as JSON objects (an IGNORED object's other keys
/// merged in), lists as arrays, numbers as numbers (NaN and infinities, which JSON lacks, and
/// decimals, which a double would round, as text), dates and timestamps as ISO text.
pub fn value_to_json(array: &dyn Array, row: usize) -> Value {
    if array.is_null(row) || array.data_type() == &DataType::Null {
        return Value::Null;
    }
    macro_rules! int {
        ($t:ty) => {
            Value::from(array.as_primitive::<$t>().value(row))
        };
    }
    match array.data_type() {
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt8 => int!(UInt8Type),
        DataType::UInt16 => int!(UInt16Type),
        DataType::UInt32 => int!(UInt32Type),
        DataType::UInt64 => int!(UInt64Type),
        DataType::Float16 => float_json(f64::from(array.as_primitive::<Float16Type>().value(row))),
        DataType::Float32 => float_json(f64::from(array.as_primitive::<Float32Type>().value(row))),
        DataType::Float64 => float_json(array.as_primitive::<Float64Type>().value(row)),
        DataType::Decimal128(..) => {
            Value::String(array.as_primitive::<Decimal128Type>().value_as_string(row))
        }
        DataType::Utf8 => Value::String(array.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Value::String(array.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => Value::String(array.as_string_view().value(row).to_string()),
        DataType::Struct(fields) => {
            let columns = array.as_struct();
            let mut map = Map::new();
            for (index, field) in fields.iter().enumerate() {
                let child = columns.column(index);
                if field.name() == IGNORED_KEYS && field.data_type() == &DataType::Utf8 {
                    if child.is_valid(row) {
                        if let Ok(Value::Object(other)) =
                            serde_json::from_str::<Value>(child.as_string::<i32>().value(row))
                        {
                            map.extend(other);
                        }
                    }
                    continue;
                }
                // A key without a value is left out, as a document that lacks it: a
                // dynamic object's rows do not list every key any row ever had.
                match value_to_json(child.as_ref(), row) {
                    Value::Null => {}
                    value => {
                        map.insert(field.name().clone(), value);
                    }
                }
            }
            Value::Object(map)
        }
        DataType::List(_) => list_json(array.as_list::<i32>().value(row).as_ref()),
        DataType::LargeList(_) => list_json(array.as_list::<i64>().value(row).as_ref()),
        DataType::FixedSizeList(..) => list_json(array.as_fixed_size_list().value(row).as_ref()),
        _ => {
            let options = FormatOptions::default();
            match ArrayFormatter::try_new(array, &options) {
                Ok(formatter) => Value::String(formatter.value(row).to_string()),
                Err(_) => Value::Null,
            }
        }
    }
}

fn list_json(values: &dyn Array) -> Value {
    Value::Array(
        (0..values.len())
            .map(|i| value_to_json(values, i))
            .collect(),
    )
}

fn float_json(value: f64) -> Value {
    serde_json::Number::from_f64(value)
        .map(Value::Number)
        .unwrap_or_else(|| {
            Value::String(if value.is_nan() {
                "NaN".to_string()
            } else if value > 0.0 {
                "Infinity".to_string()
            } else {
                "-Infinity".to_string()
            })
        })
}

/// The JSON values of an array written to an object column: JSON text parsed (it must be an
/// object), structs (object literals, other tables' objects) as their objects.
pub fn values_from_array(array: &ArrayRef, path: &str) -> Result<Vec<Value>, CodedError> {
    let mut values = Vec::with_capacity(array.len());
    match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            for row in 0..array.len() {
                values.push(match value_to_json(array.as_ref(), row) {
                    Value::String(text) => parse_object_text(&text, path)?,
                    _ => Value::Null,
                });
            }
        }
        DataType::Struct(_) | DataType::Null => {
            for row in 0..array.len() {
                values.push(value_to_json(array.as_ref(), row));
            }
        }
        DataType::List(_) | DataType::LargeList(_) => {
            // An array of objects given as an array of texts or structs.
            for row in 0..array.len() {
                values.push(match value_to_json(array.as_ref(), row) {
                    Value::Array(items) => Value::Array(
                        items
                            .into_iter()
                            .map(|item| match item {
                                // JSON text of an object; other text (a point's WKT) as is.
                                Value::String(text)
                                    if text.trim_start().starts_with(['{', '[']) =>
                                {
                                    parse_object_text(&text, path)
                                }
                                other => Ok(other),
                            })
                            .collect::<Result<_, _>>()?,
                    ),
                    other => other,
                });
            }
        }
        other => {
            return Err(CodedError::new(
                ErrorCode::DatatypeMismatch,
                format!("cannot write a value of type {other} to object column {path}"),
            ))
        }
    }
    Ok(values)
}

/// JSON text given for an object (or an array of objects).
fn parse_object_text(text: &str, path: &str) -> Result<Value, CodedError> {
    // serde_json stops at 128 levels of nesting, so no text can exhaust the stack.
    let value: Value = serde_json::from_str(text).map_err(|error| {
        CodedError::new(
            ErrorCode::InvalidTextRepresentation,
            format!(
                "invalid value for object column {path}: {error} in {:?}",
                excerpt(text)
            ),
        )
    })?;
    if !matches!(value, Value::Object(_) | Value::Array(_) | Value::Null) {
        return Err(CodedError::new(
            ErrorCode::InvalidTextRepresentation,
            format!(
                "invalid value for object column {path}: expected a JSON object, got {:?}",
                excerpt(text)
            ),
        ));
    }
    Ok(value)
}

fn excerpt(text: &str) -> String {
    let mut end = text.len().min(60);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end < text.len() {
        format!("{}...", &text[..end])
    } else {
        text.to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// JSON to Arrow

/// The range of timestamps (microseconds) and dates (days) objects hold: years 1 to 9999,
/// which their ISO text, as shards store it, spells with four digits.
const MIN_OBJECT_MICROS: i64 = -62_135_596_800_000_000;
/// See [`MIN_OBJECT_MICROS`].
const MAX_OBJECT_MICROS: i64 = 253_402_300_799_999_999;
/// See [`MIN_OBJECT_MICROS`].
const MIN_OBJECT_DAYS: i32 = -719_162;
/// See [`MIN_OBJECT_MICROS`].
const MAX_OBJECT_DAYS: i32 = 2_932_896;

/// Casts fail on a value that does not convert instead of making it NULL.
const STRICT_CAST: CastOptions<'static> = CastOptions {
    safe: false,
    format_options: FormatOptions::new(),
};

/// Builds the Arrow array of `column_type` holding `values` (one per row; `None` and JSON
/// null are NULL), by the rules a value written to a column of that type follows: numbers
/// for timestamps are epoch milliseconds, text is parsed, nothing is silently rounded or
/// dropped. `path` names the column in errors.
pub fn json_to_array(
    values: &[Option<&Value>],
    column_type: &ColumnType,
    path: &str,
) -> Result<ArrayRef, CodedError> {
    to_array(values, column_type, path, false)
}

/// [`json_to_array`]; `stored` reads what a shard stored, which may hold keys a node's older
/// definition of the table does not have yet: those are left out instead of refused.
fn to_array(
    values: &[Option<&Value>],
    column_type: &ColumnType,
    path: &str,
    stored: bool,
) -> Result<ArrayRef, CodedError> {
    let values: Vec<Option<&Value>> = values.iter().map(|v| v.filter(|v| !v.is_null())).collect();
    let mismatch = |value: &Value| {
        CodedError::new(
            ErrorCode::DatatypeMismatch,
            format!(
                "invalid value for column {path} of type {column_type}: {}",
                excerpt(&value.to_string())
            ),
        )
    };
    let invalid = |value: &Value, reason: &str| {
        CodedError::new(
            ErrorCode::InvalidTextRepresentation,
            format!(
                "invalid value for column {path} of type {column_type}: {} ({reason})",
                excerpt(&value.to_string())
            ),
        )
    };
    let integer = |value: &Value| -> Result<i64, CodedError> {
        match value {
            Value::Number(n) => n
                .as_i64()
                .ok_or_else(|| invalid(value, "not an integer in range")),
            Value::String(text) => text
                .trim()
                .parse::<i64>()
                .map_err(|_| invalid(value, "not an integer")),
            _ => Err(mismatch(value)),
        }
    };
    let out_of_range = |value: &Value| {
        CodedError::new(
            ErrorCode::NumericOutOfRange,
            format!(
                "value {} out of range for column {path} of type {column_type}",
                excerpt(&value.to_string())
            ),
        )
    };
    macro_rules! ints {
        ($array:ty, $native:ty) => {{
            let mut out: Vec<Option<$native>> = Vec::with_capacity(values.len());
            for value in &values {
                out.push(match value {
                    None => None,
                    Some(value) => Some(
                        <$native>::try_from(integer(value)?).map_err(|_| out_of_range(value))?,
                    ),
                });
            }
            Arc::new(<$array>::from(out)) as ArrayRef
        }};
    }
    let float = |value: &Value| -> Result<f64, CodedError> {
        match value {
            Value::Number(n) => n.as_f64().ok_or_else(|| invalid(value, "not a number")),
            Value::String(text) => parse_float(text).ok_or_else(|| invalid(value, "not a number")),
            _ => Err(mismatch(value)),
        }
    };
    // A scalar as the text Arrow's strict cast reads.
    let text_of = |value: &Value| -> Result<String, CodedError> {
        match value {
            Value::String(text) => Ok(text.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            _ => Err(mismatch(value)),
        }
    };
    let cast_texts = |texts: Vec<Option<String>>, target: &DataType| {
        let strings: ArrayRef = Arc::new(StringArray::from(texts));
        cast_with_options(&strings, target, &STRICT_CAST).map_err(|error| {
            CodedError::new(
                ErrorCode::InvalidTextRepresentation,
                format!(
                    "invalid value for column {path} of type {column_type}: {}",
                    crate::error::strip_prefix(&error.to_string())
                ),
            )
        })
    };
    Ok(match column_type {
        ColumnType::Boolean => {
            let mut out = Vec::with_capacity(values.len());
            for value in &values {
                out.push(match value {
                    None => None,
                    Some(Value::Bool(b)) => Some(*b),
                    Some(Value::String(text)) => match text.trim().to_ascii_lowercase().as_str() {
                        "true" | "t" | "yes" | "on" | "1" => Some(true),
                        "false" | "f" | "no" | "off" | "0" => Some(false),
                        _ => return Err(invalid(value.expect("some"), "not a boolean")),
                    },
                    Some(other) => return Err(mismatch(other)),
                });
            }
            Arc::new(BooleanArray::from(out))
        }
        ColumnType::SmallInt => ints!(Int16Array, i16),
        ColumnType::Integer => ints!(Int32Array, i32),
        ColumnType::BigInt => ints!(Int64Array, i64),
        ColumnType::Real => {
            let mut out = Vec::with_capacity(values.len());
            for value in &values {
                let value = value.map(|v| (v, float(v))).map(|(v, f)| {
                    f.and_then(|f| {
                        let real = f as f32;
                        // A finite double beyond a real's range must not become infinity.
                        if f.is_finite() && !real.is_finite() {
                            Err(out_of_range(v))
                        } else {
                            Ok(real)
                        }
                    })
                });
                out.push(value.transpose()?);
            }
            Arc::new(Float32Array::from(out))
        }
        ColumnType::Double => {
            let mut out = Vec::with_capacity(values.len());
            for value in &values {
                out.push(value.map(float).transpose()?);
            }
            Arc::new(Float64Array::from(out))
        }
        ColumnType::Numeric { .. } => {
            let texts = values
                .iter()
                .map(|v| v.map(text_of).transpose())
                .collect::<Result<Vec<_>, _>>()?;
            cast_texts(texts, &column_type.arrow_type())?
        }
        ColumnType::Text { max_len } => {
            let mut out = Vec::with_capacity(values.len());
            for value in &values {
                // Only strings: a number written to a text sub-column is a value of another
                // type (two writers adding one key as a number and as text must not both
                // succeed, one of them with its value changed).
                let text = match value {
                    None => None,
                    Some(Value::String(text)) => Some(text.clone()),
                    Some(other) => return Err(mismatch(other)),
                };
                if let (Some(text), Some(max)) = (&text, max_len) {
                    if text.chars().count() > *max as usize {
                        return Err(CodedError::new(
                            ErrorCode::InvalidParameterValue,
                            format!(
                                "value too long for type character varying({max}) in column {path}"
                            ),
                        ));
                    }
                }
                out.push(text);
            }
            Arc::new(StringArray::from(out))
        }
        ColumnType::Ip => {
            let mut out = Vec::with_capacity(values.len());
            for value in &values {
                out.push(match value {
                    None => None,
                    Some(Value::String(text)) => Some(
                        std::net::IpAddr::from_str(text.trim())
                            .map_err(|_| invalid(value.expect("some"), "not an IP address"))?
                            .to_string(),
                    ),
                    Some(other) => return Err(mismatch(other)),
                });
            }
            Arc::new(StringArray::from(out))
        }
        ColumnType::Timestamp | ColumnType::TimestampTz => {
            let target = column_type.arrow_type();
            let DataType::Timestamp(_, zone) = &target else {
                unreachable!("timestamps are timestamp arrays")
            };
            let mut out = Vec::with_capacity(values.len());
            for value in &values {
                let micros = match value {
                    None => None,
                    Some(value @ Value::Number(n)) => Some(
                        match n.as_i64() {
                            Some(millis) => timestamp_micros_from_epoch_millis(millis),
                            None => n.as_f64().and_then(timestamp_micros_from_epoch_seconds),
                        }
                        .ok_or_else(|| out_of_range(value))?,
                    ),
                    Some(value @ Value::String(text)) => {
                        let trimmed = text.trim();
                        let digits = trimmed.strip_prefix('-').unwrap_or(trimmed);
                        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                            let millis: i64 = trimmed.parse().map_err(|_| out_of_range(value))?;
                            Some(
                                timestamp_micros_from_epoch_millis(millis)
                                    .ok_or_else(|| out_of_range(value))?,
                            )
                        } else {
                            let one = cast_texts(vec![Some(trimmed.to_string())], &target)?;
                            Some(
                                one.as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>()
                                    .value(0),
                            )
                        }
                    }
                    Some(other) => return Err(mismatch(other)),
                };
                // Stored objects keep timestamps as ISO text, which has four-digit years.
                if let (Some(micros), Some(value)) = (micros, value) {
                    if !(MIN_OBJECT_MICROS..=MAX_OBJECT_MICROS).contains(&micros) {
                        return Err(CodedError::new(
                            ErrorCode::DatetimeOverflow,
                            format!(
                                "timestamp {} out of range for column {path}: objects hold years 1 to 9999",
                                excerpt(&value.to_string())
                            ),
                        ));
                    }
                }
                out.push(micros);
            }
            Arc::new(
                datafusion::arrow::array::TimestampMicrosecondArray::from(out)
                    .with_timezone_opt(zone.clone()),
            )
        }
        ColumnType::Date => {
            let mut out = Vec::with_capacity(values.len());
            for value in &values {
                out.push(match value {
                    None => None,
                    Some(value @ Value::Number(_)) => Some(
                        date_days_from_epoch_millis(integer(value)?)
                            .ok_or_else(|| out_of_range(value))?,
                    ),
                    Some(Value::String(text)) => {
                        let one =
                            cast_texts(vec![Some(text.trim().to_string())], &DataType::Date32)?;
                        Some(
                            one.as_any()
                                .downcast_ref::<Date32Array>()
                                .map_or(0, |d| d.value(0)),
                        )
                    }
                    Some(other) => return Err(mismatch(other)),
                });
            }
            if out
                .iter()
                .flatten()
                .any(|days| !(MIN_OBJECT_DAYS..=MAX_OBJECT_DAYS).contains(days))
            {
                return Err(CodedError::new(
                    ErrorCode::DatetimeOverflow,
                    format!("date out of range for column {path}: objects hold years 1 to 9999"),
                ));
            }
            Arc::new(Date32Array::from(out))
        }
        ColumnType::GeoPoint => {
            let mut points = Vec::with_capacity(values.len());
            for value in &values {
                points.push(match value {
                    None => None,
                    Some(Value::String(text)) => Some(crate::geo::parse_point(text)?),
                    Some(other) => Some(crate::geo::parse_point(&other.to_string())?),
                });
            }
            Arc::new(crate::geo::points_to_array(&points))
        }
        ColumnType::GeoShape => {
            let mut out = Vec::with_capacity(values.len());
            for value in &values {
                out.push(match value {
                    None => None,
                    Some(Value::String(text)) => Some(crate::geo::canonical_shape(text)?),
                    Some(other) => Some(crate::geo::canonical_shape(&other.to_string())?),
                });
            }
            Arc::new(StringArray::from(out))
        }
        ColumnType::Array(inner) => {
            let mut offsets = Vec::with_capacity(values.len() + 1);
            offsets.push(0i32);
            let mut elements: Vec<Option<&Value>> = Vec::new();
            let mut valid = Vec::with_capacity(values.len());
            for value in &values {
                match value {
                    None => valid.push(false),
                    Some(Value::Array(items)) => {
                        elements.extend(items.iter().map(Some));
                        valid.push(true);
                    }
                    Some(other) => return Err(mismatch(other)),
                }
                let end = i32::try_from(elements.len()).map_err(|_| {
                    CodedError::new(
                        ErrorCode::ProgramLimitExceeded,
                        format!("too many array elements in column {path}"),
                    )
                })?;
                offsets.push(end);
            }
            let element_values = to_array(&elements, inner, path, stored)?;
            // As `ColumnType::arrow_type` names it (no shape marker on elements).
            let field = Arc::new(Field::new("item", inner.arrow_type(), true));
            Arc::new(
                ListArray::try_new(
                    field,
                    OffsetBuffer::new(offsets.into()),
                    element_values,
                    Some(NullBuffer::from(valid)),
                )
                .map_err(|e| CodedError::new(ErrorCode::Internal, e.to_string()))?,
            )
        }
        ColumnType::Object { policy, fields } => {
            let mut objects: Vec<Option<&Map<String, Value>>> = Vec::with_capacity(values.len());
            for value in &values {
                objects.push(match value {
                    None => None,
                    Some(Value::Object(map)) => Some(map),
                    Some(other) => return Err(mismatch(other)),
                });
            }
            let mut children: Vec<ArrayRef> = Vec::with_capacity(fields.len() + 1);
            for field in fields {
                let child_values: Vec<Option<&Value>> = objects
                    .iter()
                    .map(|object| object.and_then(|map| map.get(&field.name)))
                    .collect();
                children.push(to_array(
                    &child_values,
                    &field.column_type,
                    &child_path(path, &field.name),
                    stored,
                )?);
            }
            let mut ignored: Vec<Option<String>> = Vec::new();
            for object in &objects {
                let Some(map) = object else {
                    ignored.push(None);
                    continue;
                };
                let other: Map<String, Value> = map
                    .iter()
                    .filter(|(key, value)| {
                        !value.is_null() && !fields.iter().any(|f| &f.name == *key)
                    })
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect();
                if other.is_empty() {
                    ignored.push(None);
                    continue;
                }
                if *policy != ObjectPolicy::Ignored && stored {
                    // Keys this node's definition does not have yet.
                    ignored.push(None);
                    continue;
                }
                if *policy != ObjectPolicy::Ignored {
                    // Keys are added (or refused) before rows are converted; one that is
                    // still unknown would be lost here.
                    let key = other.keys().next().expect("not empty");
                    return Err(CodedError::new(
                        ErrorCode::UndefinedColumn,
                        format!("column {} unknown", child_path(path, key)),
                    ));
                }
                ignored.push(Some(Value::Object(other).to_string()));
            }
            if *policy == ObjectPolicy::Ignored {
                children.push(Arc::new(StringArray::from(ignored)));
            }
            let DataType::Struct(struct_fields) = column_type.arrow_type() else {
                unreachable!("objects are structs")
            };
            let nulls = Some(NullBuffer::from(
                objects.iter().map(Option::is_some).collect::<Vec<_>>(),
            ));
            build_struct(struct_fields, children, nulls, values.len())?
        }
    })
}

fn build_struct(
    fields: Fields,
    children: Vec<ArrayRef>,
    nulls: Option<NullBuffer>,
    len: usize,
) -> Result<ArrayRef, CodedError> {
    if fields.is_empty() {
        return Ok(Arc::new(StructArray::new_empty_fields(len, nulls)));
    }
    Ok(Arc::new(
        StructArray::try_new(fields, children, nulls)
            .map_err(|e| CodedError::new(ErrorCode::Internal, e.to_string()))?,
    ))
}

/// A float's text: numbers, `NaN` and the infinities in the spellings PostgreSQL accepts.
fn parse_float(text: &str) -> Option<f64> {
    let text = text.trim();
    match text.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "infinity" | "+infinity" | "inf" | "+inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        _ => text.parse::<f64>().ok().filter(|v| v.is_finite()),
    }
}

/// An object column of `column_type` from the JSON text each row stored (`None` for NULL).
pub fn objects_from_texts(
    texts: &[Option<&str>],
    column_type: &ColumnType,
    path: &str,
) -> Result<ArrayRef, CodedError> {
    let parsed: Vec<Option<Value>> = texts
        .iter()
        .map(|text| text.and_then(|t| serde_json::from_str(t).ok()))
        .collect();
    let refs: Vec<Option<&Value>> = parsed.iter().map(Option::as_ref).collect();
    to_array(&refs, column_type, path, true)
}

/// A NULL of any column type, for rows that lack an object.
pub fn nulls(column_type: &ColumnType, len: usize) -> ArrayRef {
    new_null_array(&column_type.arrow_type(), len)
}

/// Whether `data_type` has a struct anywhere (an object, or an array of them).
pub fn has_struct(data_type: &DataType) -> bool {
    match data_type {
        DataType::Struct(_) => true,
        DataType::List(f) | DataType::LargeList(f) => has_struct(f.data_type()),
        _ => false,
    }
}

/// The time unit every stored timestamp has.
pub const TIMESTAMP_UNIT: TimeUnit = TimeUnit::Microsecond;

/// Name of the function reading a key of an IGNORED object that has no sub-column:
/// `__creek_ignored_key(o['_ignored'], 'key')`, which `o['key']` is planned as.
pub const IGNORED_KEY_FUNCTION: &str = "__creek_ignored_key";

/// The function behind [`IGNORED_KEY_FUNCTION`]: the key's value as text (a string as it is,
/// anything else as JSON), NULL where the object lacks it. Such keys have no type, as in
/// CrateDB; a cast gives them one.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct IgnoredKey {
    signature: datafusion::logical_expr::Signature,
}

impl IgnoredKey {
    /// The function, for a registry.
    pub fn udf() -> datafusion::logical_expr::ScalarUDF {
        datafusion::logical_expr::ScalarUDF::new_from_impl(IgnoredKey {
            signature: datafusion::logical_expr::Signature::exact(
                vec![DataType::Utf8, DataType::Utf8],
                datafusion::logical_expr::Volatility::Immutable,
            ),
        })
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for IgnoredKey {
    fn name(&self) -> &str {
        IGNORED_KEY_FUNCTION
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        let rows = args.number_rows;
        let arrays = datafusion::logical_expr::ColumnarValue::values_to_arrays(&args.args)?;
        let (objects, keys) = (arrays[0].as_string::<i32>(), arrays[1].as_string::<i32>());
        let values: StringArray = (0..rows)
            .map(|row| {
                if objects.is_null(row) || keys.is_null(row) {
                    return None;
                }
                let Ok(Value::Object(map)) = serde_json::from_str::<Value>(objects.value(row))
                else {
                    return None;
                };
                match map.get(keys.value(row))? {
                    Value::Null => None,
                    Value::String(text) => Some(text.clone()),
                    other => Some(other.to_string()),
                }
            })
            .collect();
        Ok(datafusion::logical_expr::ColumnarValue::Array(Arc::new(
            values,
        )))
    }
}

/// Name of the function giving any value as the JSON text an object column reads: a struct
/// as its object, text as it is. Upserts merge old and new objects through it, since two
/// object literals with different keys have no common struct type.
pub const OBJECT_JSON_FUNCTION: &str = "__creek_object_json";

/// The function behind [`OBJECT_JSON_FUNCTION`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ObjectJson {
    signature: datafusion::logical_expr::Signature,
}

impl ObjectJson {
    /// The function, for a registry.
    pub fn udf() -> datafusion::logical_expr::ScalarUDF {
        datafusion::logical_expr::ScalarUDF::new_from_impl(ObjectJson {
            signature: datafusion::logical_expr::Signature::any(
                1,
                datafusion::logical_expr::Volatility::Immutable,
            ),
        })
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for ObjectJson {
    fn name(&self) -> &str {
        OBJECT_JSON_FUNCTION
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        let arrays = datafusion::logical_expr::ColumnarValue::values_to_arrays(&args.args)?;
        let array = &arrays[0];
        let texts: StringArray = (0..args.number_rows)
            .map(|row| match value_to_json(array.as_ref(), row) {
                Value::Null => None,
                Value::String(text) => Some(text),
                other => Some(other.to_string()),
            })
            .collect();
        Ok(datafusion::logical_expr::ColumnarValue::Array(Arc::new(
            texts,
        )))
    }
}

/// Name of the function behind `UPDATE t SET o['a']['b'] = v`: `__creek_object_set(o, 'a',
/// 'b', v)` is the object (as JSON text) with that key set, the objects on its path made
/// where missing; the column then converts it like any object written to it.
pub const OBJECT_SET_FUNCTION: &str = "__creek_object_set";

/// The function behind [`OBJECT_SET_FUNCTION`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ObjectSet {
    signature: datafusion::logical_expr::Signature,
}

impl ObjectSet {
    /// The function, for a registry.
    pub fn udf() -> datafusion::logical_expr::ScalarUDF {
        datafusion::logical_expr::ScalarUDF::new_from_impl(ObjectSet {
            signature: datafusion::logical_expr::Signature::variadic_any(
                datafusion::logical_expr::Volatility::Immutable,
            ),
        })
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for ObjectSet {
    fn name(&self) -> &str {
        OBJECT_SET_FUNCTION
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> datafusion::common::Result<DataType> {
        if args.len() < 3 {
            return datafusion::common::plan_err!(
                "{OBJECT_SET_FUNCTION} takes an object, keys and a value"
            );
        }
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        let rows = args.number_rows;
        let arrays = datafusion::logical_expr::ColumnarValue::values_to_arrays(&args.args)?;
        let (object, rest) = arrays.split_first().expect("checked by return_type");
        let (value, keys) = rest.split_last().expect("checked by return_type");
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            let mut root = match value_to_json(object.as_ref(), row) {
                Value::Object(map) => map,
                Value::String(text) => match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(map)) => map,
                    _ => Map::new(),
                },
                _ => Map::new(),
            };
            let path: Vec<String> = keys
                .iter()
                .map(|key| match value_to_json(key.as_ref(), row) {
                    Value::String(key) => Ok(key),
                    other => datafusion::common::exec_err!("object keys are text, got {other}"),
                })
                .collect::<datafusion::common::Result<_>>()?;
            let (last, parents) = path.split_last().expect("at least one key");
            let mut current = &mut root;
            for parent in parents {
                let entry = current
                    .entry(parent.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                current = entry.as_object_mut().expect("made an object above");
            }
            current.insert(last.clone(), value_to_json(value.as_ref(), row));
            out.push(Some(Value::Object(root).to_string()));
        }
        Ok(datafusion::logical_expr::ColumnarValue::Array(Arc::new(
            StringArray::from(out),
        )))
    }
}

/// Name of the function reading one sub-column of every object in an array of objects:
/// `o['list']['field']` (or `l['field']`) is an array of the field's values, as in CrateDB.
pub const ARRAY_FIELD_FUNCTION: &str = "__creek_array_field";

/// The function behind [`ARRAY_FIELD_FUNCTION`]: `(list of structs, 'key')`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ArrayField {
    signature: datafusion::logical_expr::Signature,
}

impl ArrayField {
    /// The function, for a registry.
    pub fn udf() -> datafusion::logical_expr::ScalarUDF {
        datafusion::logical_expr::ScalarUDF::new_from_impl(ArrayField {
            signature: datafusion::logical_expr::Signature::any(
                2,
                datafusion::logical_expr::Volatility::Immutable,
            ),
        })
    }

    /// The struct field `key` names in an array of objects of type `list`.
    fn field<'a>(list: &'a DataType, key: &str) -> datafusion::common::Result<&'a Field> {
        let DataType::List(element) = list else {
            return datafusion::common::plan_err!(
                "{ARRAY_FIELD_FUNCTION} needs an array of objects"
            );
        };
        let DataType::Struct(fields) = element.data_type() else {
            return datafusion::common::plan_err!(
                "{ARRAY_FIELD_FUNCTION} needs an array of objects"
            );
        };
        match fields.iter().find(|f| f.name() == key) {
            Some(field) => Ok(field),
            None => datafusion::common::plan_err!("Field {key} not found in struct"),
        }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for ArrayField {
    fn name(&self) -> &str {
        ARRAY_FIELD_FUNCTION
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        datafusion::common::internal_err!("{ARRAY_FIELD_FUNCTION} types by its key argument")
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> datafusion::common::Result<datafusion::arrow::datatypes::FieldRef> {
        let Some(Some(datafusion::common::ScalarValue::Utf8(Some(key)))) =
            args.scalar_arguments.get(1)
        else {
            return datafusion::common::plan_err!("{ARRAY_FIELD_FUNCTION} needs a literal key");
        };
        let child = Self::field(args.arg_fields[0].data_type(), key)?;
        Ok(Arc::new(Field::new(
            self.name(),
            DataType::List(Arc::new(child.clone().with_name("item"))),
            true,
        )))
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        let datafusion::logical_expr::ColumnarValue::Scalar(datafusion::common::ScalarValue::Utf8(
            Some(key),
        )) = &args.args[1]
        else {
            return datafusion::common::exec_err!("{ARRAY_FIELD_FUNCTION} needs a literal key");
        };
        let lists = args.args[0].to_array(args.number_rows)?;
        let child_field = Self::field(lists.data_type(), key)?.clone();
        let lists = lists.as_list::<i32>();
        let structs = lists.values().as_struct();
        let values = structs.column_by_name(key).cloned().ok_or_else(|| {
            datafusion::common::DataFusionError::Execution(format!(
                "Field {key} not found in struct"
            ))
        })?;
        let list = ListArray::try_new(
            Arc::new(child_field.with_name("item").with_nullable(true)),
            lists.offsets().clone(),
            values,
            lists.nulls().cloned(),
        )?;
        Ok(datafusion::logical_expr::ColumnarValue::Array(Arc::new(
            list,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(policy: ObjectPolicy, fields: &[(&str, ColumnType)]) -> ColumnType {
        ColumnType::Object {
            policy,
            fields: fields
                .iter()
                .map(|(name, column_type)| ObjectField {
                    name: name.to_string(),
                    column_type: column_type.clone(),
                })
                .collect(),
        }
    }

    #[test]
    fn dynamic_keys_are_inferred_and_merged() {
        let mut column = object(ObjectPolicy::Dynamic, &[("a", ColumnType::BigInt)]);
        let value: Value =
            serde_json::from_str(r#"{"a": 1, "b": "x", "c": {"d": 1.5}, "e": null, "f": []}"#)
                .unwrap();
        assert!(widen(&mut column, &value, "o").unwrap());
        assert_eq!(sub_column_count(&column), 4);
        assert_eq!(
            sub_column_type(&column, &["c", "d"]),
            Some(&ColumnType::Double)
        );
        // The same key with another type conflicts when merged.
        let other = object(
            ObjectPolicy::Dynamic,
            &[("b", ColumnType::BigInt), ("g", ColumnType::Boolean)],
        );
        assert_eq!(
            merge_types(&column, &other, "o").unwrap_err().code,
            ErrorCode::DatatypeMismatch
        );
        let same = object(ObjectPolicy::Dynamic, &[("g", ColumnType::Boolean)]);
        assert_eq!(
            sub_column_count(&merge_types(&column, &same, "o").unwrap()),
            5
        );
    }

    #[test]
    fn strict_refuses_and_ignored_keeps_unknown_keys() {
        let value: Value = serde_json::from_str(r#"{"a": 1, "z": [1, 2]}"#).unwrap();
        let mut strict = object(ObjectPolicy::Strict, &[("a", ColumnType::Integer)]);
        assert_eq!(
            widen(&mut strict, &value, "o").unwrap_err().code,
            ErrorCode::UndefinedColumn
        );
        let ignored = object(ObjectPolicy::Ignored, &[("a", ColumnType::Integer)]);
        let array = json_to_array(&[Some(&value), None], &ignored, "o").unwrap();
        assert_eq!(value_to_json(array.as_ref(), 0), value);
        assert_eq!(value_to_json(array.as_ref(), 1), Value::Null);
    }

    #[test]
    fn values_convert_strictly_and_round_trip() {
        let column = object(
            ObjectPolicy::Strict,
            &[
                ("n", ColumnType::SmallInt),
                ("ts", ColumnType::TimestampTz),
                (
                    "tags",
                    ColumnType::Array(Box::new(ColumnType::Text { max_len: None })),
                ),
                (
                    "inner",
                    object(ObjectPolicy::Dynamic, &[("x", ColumnType::Double)]),
                ),
                ("empty", object(ObjectPolicy::Dynamic, &[])),
            ],
        );
        let value: Value = serde_json::from_str(
            r#"{"n": 7, "ts": 1704067200000, "tags": ["a", null], "inner": {"x": "NaN"}, "empty": {}}"#,
        )
        .unwrap();
        let array = json_to_array(&[Some(&value)], &column, "o").unwrap();
        let stored = value_to_json(array.as_ref(), 0);
        assert_eq!(stored["n"], Value::from(7));
        assert_eq!(stored["ts"], Value::from("2024-01-01T00:00:00Z"));
        assert_eq!(stored["inner"]["x"], Value::from("NaN"));
        // What is stored reads back to the same value.
        let again = json_to_array(&[Some(&stored)], &column, "o").unwrap();
        assert_eq!(value_to_json(again.as_ref(), 0), stored);
        let too_big: Value = serde_json::from_str(r#"{"n": 70000}"#).unwrap();
        assert_eq!(
            json_to_array(&[Some(&too_big)], &column, "o")
                .unwrap_err()
                .code,
            ErrorCode::NumericOutOfRange
        );
        let fraction: Value = serde_json::from_str(r#"{"n": 1.5}"#).unwrap();
        assert!(json_to_array(&[Some(&fraction)], &column, "o").is_err());
    }

    #[test]
    fn hostile_values_are_refused_and_stored_ones_read_leniently() {
        // Nesting beyond the limit never reaches a definition.
        let deep = format!("{}1{}", "{\"a\":".repeat(20), "}".repeat(20));
        let value: Value = serde_json::from_str(&deep).unwrap();
        let mut column = object(ObjectPolicy::Dynamic, &[]);
        assert!(widen(&mut column, &value, "o").unwrap());
        assert_eq!(
            check_declared(&column, "o").unwrap_err().code,
            ErrorCode::ProgramLimitExceeded
        );
        // Timestamps beyond four-digit years would not read back from their text.
        let ts = object(ObjectPolicy::Strict, &[("t", ColumnType::Timestamp)]);
        let far: Value = serde_json::from_str(r#"{"t": 253402300800000}"#).unwrap();
        assert_eq!(
            json_to_array(&[Some(&far)], &ts, "o").unwrap_err().code,
            ErrorCode::DatetimeOverflow
        );
        let real = object(ObjectPolicy::Strict, &[("r", ColumnType::Real)]);
        let huge: Value = serde_json::from_str(r#"{"r": 1e39}"#).unwrap();
        assert_eq!(
            json_to_array(&[Some(&huge)], &real, "o").unwrap_err().code,
            ErrorCode::NumericOutOfRange
        );
        // A node whose definition lacks a newer key reads the rest of the object.
        let older = object(ObjectPolicy::Dynamic, &[("a", ColumnType::BigInt)]);
        let read = objects_from_texts(&[Some(r#"{"a": 1, "newer": "x"}"#)], &older, "o").unwrap();
        assert_eq!(value_to_json(read.as_ref(), 0), serde_json::json!({"a": 1}));
    }

    #[test]
    fn bad_keys_are_refused() {
        for key in ["", "_id", "a.b", "a[1]", "x'y", "a\\b"] {
            assert!(check_key(key, "o").is_err(), "{key}");
        }
        assert!(check_key("name", "o").is_ok());
    }
}
