//! How values become a column's type on write: every INSERT, UPDATE, COPY and key lookup
//! casts its rows here, so all of them accept and refuse the same values. Beyond Arrow's
//! strict casts it knows Creek's own conversions: a number written to a timestamp column is
//! epoch milliseconds (CrateDB's rule, which its clients rely on), text written to an array
//! column is a PostgreSQL array literal (`'{a,b}'`) or a JSON array, and a `geo_point` is read
//! from WKT, `[lon, lat]` or `{"lon", "lat"}`, a `geo_shape` from WKT or GeoJSON, kept as
//! canonical GeoJSON (`creek_common::geo`).

use std::sync::Arc;

use creek_common::error::ErrorCode;
use creek_common::schema::{TableSchema, MAX_TERM_BYTES};
use creek_common::types::{
    date_days_from_epoch_millis, timestamp_micros_from_epoch_millis,
    timestamp_micros_from_epoch_seconds, ColumnType,
};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{
    DataType, Field, Float64Type, Int64Type, Schema, TimeUnit, TimestampMicrosecondType,
};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;

use crate::error::{Error, Result};
use crate::plan::array_literal::text_to_list_array;

/// Casts fail on unparsable values instead of turning them into NULL (no silent data loss).
const STRICT_CAST: CastOptions<'static> = CastOptions {
    safe: false,
    format_options: datafusion::arrow::util::display::FormatOptions::new(),
};

/// Converts one value to `target` by the same rules as a value written to a column of that
/// type (for `EXECUTE` arguments of a statement prepared with parameter types).
pub(crate) fn convert_value(value: &ScalarValue, target: &DataType) -> Result<ScalarValue> {
    if &value.data_type() == target {
        return Ok(value.clone());
    }
    let converted = convert(&value.to_array()?, target)?;
    Ok(ScalarValue::try_from_array(&converted, 0)?)
}

/// Converts `array` to `target`, a column's type.
fn convert(array: &ArrayRef, target: &DataType) -> Result<ArrayRef> {
    let source = array.data_type();
    if matches!(source, DataType::LargeUtf8 | DataType::Utf8View) {
        return convert(&strict_cast(array, &DataType::Utf8)?, target);
    }
    match target {
        DataType::Timestamp(TimeUnit::Microsecond, zone) if source.is_integer() => {
            let millis = strict_cast(array, &DataType::Int64)?;
            let micros = millis
                .as_primitive::<Int64Type>()
                .iter()
                .map(|value| value.map(millis_to_micros).transpose())
                .collect::<Result<TimestampMicrosecondArray>>()?;
            Ok(Arc::new(micros.with_timezone_opt(zone.clone())))
        }
        DataType::Timestamp(TimeUnit::Microsecond, zone) if source.is_floating() => {
            // CrateDB reads a fractional number as seconds since the epoch.
            let seconds = strict_cast(array, &DataType::Float64)?;
            let micros = seconds
                .as_primitive::<Float64Type>()
                .iter()
                .map(|value| value.map(seconds_to_micros).transpose())
                .collect::<Result<TimestampMicrosecondArray>>()?;
            Ok(Arc::new(micros.with_timezone_opt(zone.clone())))
        }
        DataType::Timestamp(TimeUnit::Microsecond, zone) if source == &DataType::Utf8 => {
            timestamps_from_text(array.as_string::<i32>(), zone.clone())
        }
        DataType::Date32 if source.is_integer() => {
            let millis = strict_cast(array, &DataType::Int64)?;
            let days = millis
                .as_primitive::<Int64Type>()
                .iter()
                .map(|value| {
                    value
                        .map(|ms| {
                            date_days_from_epoch_millis(ms).ok_or_else(|| out_of_range("date"))
                        })
                        .transpose()
                })
                .collect::<Result<Date32Array>>()?;
            Ok(Arc::new(days))
        }
        DataType::List(_) if source == &DataType::Utf8 => {
            text_to_list_array(array.as_string::<i32>(), target)
        }
        target if target.is_integer() && is_fractional_type(source) => {
            strict_cast(&round_to_whole(array)?, target)
        }
        target if creek_common::geo::is_point_type(target) => {
            let points = creek_common::geo::points_from_array(array)?;
            Ok(Arc::new(creek_common::geo::points_to_array(&points)))
        }
        _ => strict_cast(array, target),
    }
}

/// Types whose values can have a fractional part.
fn is_fractional_type(data_type: &DataType) -> bool {
    data_type.is_floating()
        || matches!(
            data_type,
            DataType::Decimal128(..) | DataType::Decimal256(..)
        )
}

/// A fractional number written to an integer column is rounded half away from zero, as
/// PostgreSQL rounds a numeric (`1.7` stores 2, `-2.5` stores -3); Arrow's cast would truncate.
fn round_to_whole(array: &ArrayRef) -> Result<ArrayRef> {
    match array.data_type() {
        DataType::Decimal128(..) => strict_cast(array, &DataType::Decimal128(38, 0)),
        DataType::Decimal256(..) => strict_cast(array, &DataType::Decimal256(76, 0)),
        _ => {
            let doubles = strict_cast(array, &DataType::Float64)?;
            let rounded: datafusion::arrow::array::Float64Array =
                doubles.as_primitive::<Float64Type>().unary(f64::round);
            Ok(Arc::new(rounded))
        }
    }
}

/// Whether `value` is a number with a fractional part, which no integer equals.
pub(crate) fn is_fractional(value: &ScalarValue) -> bool {
    match value {
        ScalarValue::Float16(Some(v)) => f32::from(*v).fract() != 0.0,
        ScalarValue::Float32(Some(v)) => v.fract() != 0.0,
        ScalarValue::Float64(Some(v)) => v.fract() != 0.0,
        ScalarValue::Decimal128(Some(v), _, scale) if *scale > 0 => 10i128
            .checked_pow(*scale as u32)
            .is_none_or(|unit| v % unit != 0),
        ScalarValue::Decimal256(Some(_), _, scale) if *scale > 0 => value
            .to_string()
            .split_once('.')
            .is_some_and(|(_, fraction)| fraction.bytes().any(|b| b != b'0')),
        _ => false,
    }
}

/// Values for a `geo_shape` column: WKT or GeoJSON text, or points, as canonical GeoJSON.
fn canonical_shapes(array: &ArrayRef) -> Result<ArrayRef> {
    use creek_common::geo;
    let listed = matches!(
        array.data_type(),
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
    );
    let shapes: StringArray = if listed {
        // Points: point columns and parameters, or `[lon, lat]` arrays.
        geo::points_from_array(array)?
            .into_iter()
            .map(|point| point.map(|p| geo::shape_to_geojson(&geo::point_shape(p)).to_string()))
            .collect()
    } else {
        let text = convert(array, &DataType::Utf8)?;
        text.as_string::<i32>()
            .iter()
            .map(|text| text.map(geo::canonical_shape).transpose())
            .collect::<std::result::Result<_, _>>()?
    };
    Ok(Arc::new(shapes))
}

fn out_of_range(what: &str) -> Error {
    Error::new(ErrorCode::DatetimeOverflow, format!("{what} out of range"))
}

fn millis_to_micros(millis: i64) -> Result<i64> {
    timestamp_micros_from_epoch_millis(millis).ok_or_else(|| out_of_range("timestamp"))
}

fn seconds_to_micros(seconds: f64) -> Result<i64> {
    timestamp_micros_from_epoch_seconds(seconds).ok_or_else(|| out_of_range("timestamp"))
}

/// Text for a timestamp column: a whole number is epoch milliseconds (as in CrateDB), any
/// other text a date and time Arrow's strict cast parses.
fn timestamps_from_text(strings: &StringArray, zone: Option<Arc<str>>) -> Result<ArrayRef> {
    let is_millis = |text: &str| {
        let digits = text.strip_prefix('-').unwrap_or(text);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    };
    let target = DataType::Timestamp(TimeUnit::Microsecond, zone.clone());
    if !strings.iter().flatten().any(is_millis) {
        return strict_cast(&(Arc::new(strings.clone()) as ArrayRef), &target);
    }
    let mut micros = Vec::with_capacity(strings.len());
    for text in strings.iter() {
        micros.push(match text {
            None => None,
            Some(text) if is_millis(text) => {
                let millis = text.parse::<i64>().map_err(|_| out_of_range("timestamp"))?;
                Some(millis_to_micros(millis)?)
            }
            Some(text) => {
                let one: ArrayRef = Arc::new(StringArray::from(vec![text]));
                let parsed = strict_cast(&one, &target)?;
                Some(parsed.as_primitive::<TimestampMicrosecondType>().value(0))
            }
        });
    }
    Ok(Arc::new(
        TimestampMicrosecondArray::from(micros).with_timezone_opt(zone),
    ))
}

/// Arrow's cast, failing on a value that does not convert instead of making it NULL.
fn strict_cast(array: &ArrayRef, target: &DataType) -> Result<ArrayRef> {
    cast_with_options(array, target, &STRICT_CAST).map_err(|error| {
        let source = array.data_type();
        let code = if source == &DataType::Utf8 {
            ErrorCode::InvalidTextRepresentation
        } else if source.is_numeric() && target.is_numeric() {
            // A number that does not fit the column, as PostgreSQL's 22003.
            ErrorCode::NumericOutOfRange
        } else {
            ErrorCode::DatatypeMismatch
        };
        Error::new(code, creek_common::error::strip_prefix(&error.to_string()))
    })
}

/// Casts a planned batch to the table's exact column types and checks column constraints.
pub(crate) fn conform_batch(table: &TableSchema, batch: &RecordBatch) -> Result<RecordBatch> {
    let mut fields = Vec::with_capacity(table.columns.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(table.columns.len());
    // Per column, the values the writer gave for a generated column.
    let mut given: Vec<Option<ArrayRef>> = Vec::with_capacity(table.columns.len());
    for column in &table.columns {
        let target = column.column_type.arrow_type();
        let array = match batch.column_by_name(&column.name) {
            // Shapes are read from text or points by `canonical_shapes` below.
            Some(array) if column.column_type == ColumnType::GeoShape => array.clone(),
            Some(array) if super::objects::is_object(&column.column_type) => {
                super::objects::conform_objects(array, &column.column_type, &column.name)?
            }
            Some(array) if array.data_type() == &target => array.clone(),
            Some(array) => convert(array, &target).map_err(|error| {
                Error::new(
                    error.code(),
                    format!(
                        "invalid value for column \"{}\": {}",
                        column.name,
                        error.client_message()
                    ),
                )
            })?,
            None => datafusion::arrow::array::new_null_array(&target, batch.num_rows()),
        };
        let array = match (&column.column_type, batch.column_by_name(&column.name)) {
            (ColumnType::GeoShape, Some(given)) => canonical_shapes(given).map_err(|error| {
                Error::new(
                    error.code(),
                    format!(
                        "invalid value for column \"{}\": {}",
                        column.name,
                        error.client_message()
                    ),
                )
            })?,
            _ => array,
        };
        let generated = column.generated.is_some();
        given.push(
            (generated && batch.column_by_name(&column.name).is_some()).then(|| array.clone()),
        );
        // A generated column's NOT NULL is checked once it is computed.
        if column.not_null && !generated && array.null_count() > 0 {
            return Err(Error::new(
                ErrorCode::NotNullViolation,
                format!(
                    "null value in column \"{}\" violates not-null constraint",
                    column.name
                ),
            ));
        }
        if let ColumnType::Text { max_len: Some(max) } = column.column_type {
            let strings = array.as_string::<i32>();
            if strings
                .iter()
                .flatten()
                .any(|s| s.chars().count() > max as usize)
            {
                return Err(Error::new(
                    ErrorCode::InvalidParameterValue,
                    format!(
                        "value too long for type character varying({max}) in column \"{}\"",
                        column.name
                    ),
                ));
            }
        }
        fields.push(Field::new(&column.name, target, true));
        arrays.push(array);
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
    let batch = if given.len() == table.columns.len()
        && table.columns.iter().any(|c| c.generated.is_some())
    {
        super::generated::fill(table, batch, &given, convert)?
    } else {
        batch
    };
    for (field, array) in batch.schema().fields().iter().zip(batch.columns()) {
        check_text_lengths(array, field.name())?;
    }
    Ok(batch)
}

/// Refuses a text value longer than a shard stores: its columns keep text in dictionaries
/// whose entries tantivy cuts at 64 KiB without an error, and its index drops longer terms.
/// Text inside arrays and objects is checked too.
fn check_text_lengths(array: &ArrayRef, column: &str) -> Result<()> {
    let longest = match array.data_type() {
        DataType::Utf8 => array
            .as_string::<i32>()
            .iter()
            .flatten()
            .map(str::len)
            .max(),
        DataType::LargeUtf8 => array
            .as_string::<i64>()
            .iter()
            .flatten()
            .map(str::len)
            .max(),
        DataType::Utf8View => array.as_string_view().iter().flatten().map(str::len).max(),
        DataType::List(_) => return check_text_lengths(array.as_list::<i32>().values(), column),
        DataType::LargeList(_) => {
            return check_text_lengths(array.as_list::<i64>().values(), column)
        }
        DataType::Struct(_) => {
            for child in array.as_struct().columns() {
                check_text_lengths(child, column)?;
            }
            return Ok(());
        }
        _ => None,
    };
    match longest {
        Some(length) if length > MAX_TERM_BYTES => Err(Error::new(
            ErrorCode::ProgramLimitExceeded,
            format!(
                "value of {length} bytes in column \"{column}\" is too long: a text value holds at most {MAX_TERM_BYTES} bytes"
            ),
        )),
        _ => Ok(()),
    }
}
