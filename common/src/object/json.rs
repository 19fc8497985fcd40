//! Objects between JSON and Arrow: the one conversion every write of an object (JSON text,
//! literals, other structs) and every shard read of a stored object goes through, and the
//! JSON rendering shards store and front ends return. Pure functions.

use std::str::FromStr;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Float32Array, Float64Array, Int16Array,
    Int32Array, Int64Array, ListArray, StringArray, StructArray,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, Field, Fields, Float16Type, Float32Type, Float64Type, Int16Type,
    Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Map, Value};

use super::{child_path, ObjectPolicy, IGNORED_KEYS};
use crate::error::{CodedError, ErrorCode};
use crate::types::{
    date_days_from_epoch_millis, timestamp_micros_from_epoch_millis,
    timestamp_micros_from_epoch_seconds, ColumnType,
};

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

pub(super) fn excerpt(text: &str) -> String {
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

/// Whether `data_type` has a struct anywhere (an object, or an array of them).
pub fn has_struct(data_type: &DataType) -> bool {
    match data_type {
        DataType::Struct(_) => true,
        DataType::List(f) | DataType::LargeList(f) => has_struct(f.data_type()),
        _ => false,
    }
}
