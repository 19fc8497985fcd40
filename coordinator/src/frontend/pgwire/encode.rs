//! Arrow ↔ PostgreSQL value encoding: type OIDs, text and binary row encoding, and parameter
//! decoding for the extended protocol.

use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike, Utc};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Float32Array, Float64Array, Int16Array,
    Int32Array, Int64Array, TimestampMicrosecondArray, UInt32Array,
};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::ScalarValue;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse};
use pgwire::api::Type;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;

use super::error::to_pg_error;
use crate::frontend::float_text::{float4_text, float8_text};

/// Returns the PostgreSQL type of an Arrow type. `UInt32` is PostgreSQL's `oid`: catalog
/// object ids are its only source (table columns never have unsigned types).
pub fn arrow_to_pg_type(data_type: &DataType) -> Type {
    match data_type {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::UInt32 => Type::OID,
        DataType::Int64 | DataType::UInt64 => Type::INT8,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Decimal128(..) | DataType::Decimal256(..) => Type::NUMERIC,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Type::TEXT,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => Type::BYTEA,
        data_type if creek_common::geo::is_point_type(data_type) => Type::POINT,
        // Objects (and arrays of them) are JSON, as CrateDB gives them to PostgreSQL clients.
        data_type if creek_common::object::has_struct(data_type) => Type::JSON,
        DataType::List(field) | DataType::LargeList(field) => {
            match arrow_to_pg_type(field.data_type()) {
                t if t == Type::BOOL => Type::BOOL_ARRAY,
                t if t == Type::INT2 => Type::INT2_ARRAY,
                t if t == Type::INT4 => Type::INT4_ARRAY,
                t if t == Type::INT8 => Type::INT8_ARRAY,
                t if t == Type::OID => Type::OID_ARRAY,
                t if t == Type::FLOAT4 => Type::FLOAT4_ARRAY,
                t if t == Type::FLOAT8 => Type::FLOAT8_ARRAY,
                t if t == Type::TIMESTAMP => Type::TIMESTAMP_ARRAY,
                t if t == Type::TIMESTAMPTZ => Type::TIMESTAMPTZ_ARRAY,
                t if t == Type::DATE => Type::DATE_ARRAY,
                _ => Type::TEXT_ARRAY,
            }
        }
        _ => Type::TEXT,
    }
}

/// Builds the row description of a result schema.
pub fn fields_for_schema(schema: &Schema, format: &Format) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(index, field)| {
            let pg_type = if creek_common::geo::is_shape_field(field) {
                // GeoJSON, as CrateDB gives shapes to PostgreSQL clients.
                Type::JSON
            } else {
                arrow_to_pg_type(field.data_type())
            };
            let mut field_format = format.format_for(index);
            if field_format == FieldFormat::Binary && !binary_supported(&pg_type) {
                field_format = FieldFormat::Text;
            }
            FieldInfo::new(field.name().clone(), None, None, pg_type, field_format)
        })
        .collect()
}

fn binary_supported(pg_type: &Type) -> bool {
    [
        Type::BOOL,
        Type::INT2,
        Type::INT4,
        Type::INT8,
        Type::OID,
        Type::BOOL_ARRAY,
        Type::INT2_ARRAY,
        Type::INT4_ARRAY,
        Type::INT8_ARRAY,
        Type::OID_ARRAY,
        Type::FLOAT4_ARRAY,
        Type::FLOAT8_ARRAY,
        Type::TEXT_ARRAY,
        Type::FLOAT4,
        Type::FLOAT8,
        Type::TEXT,
        Type::DATE,
        Type::TIMESTAMP,
        Type::TIMESTAMPTZ,
        Type::POINT,
    ]
    .contains(pg_type)
}

/// Encodes a batch stream into pgwire data rows; floats in text format print with
/// `extra_float_digits` as PostgreSQL's session setting of that name says.
pub fn encode_stream(
    fields: Arc<Vec<FieldInfo>>,
    stream: SendableRecordBatchStream,
    extra_float_digits: i32,
) -> QueryResponse {
    let row_fields = fields.clone();
    let rows = stream
        .map(move |batch| -> Vec<PgWireResult<DataRow>> {
            match batch {
                Ok(batch) => encode_batch(&row_fields, &batch, extra_float_digits),
                Err(error) => vec![Err(to_pg_error(&crate::error::Error::DataFusion(error)))],
            }
        })
        .flat_map(futures::stream::iter);
    QueryResponse::new(fields, rows)
}

fn encode_batch(
    fields: &Arc<Vec<FieldInfo>>,
    batch: &RecordBatch,
    extra_float_digits: i32,
) -> Vec<PgWireResult<DataRow>> {
    let options = FormatOptions::default().with_null("");
    let formatters: Vec<Option<ArrayFormatter>> = batch
        .columns()
        .iter()
        .map(|column| ArrayFormatter::try_new(column.as_ref(), &options).ok())
        .collect();
    let mut rows = Vec::with_capacity(batch.num_rows());
    let mut encoder = DataRowEncoder::new(fields.clone());
    for row in 0..batch.num_rows() {
        let mut result = Ok(());
        for (index, column) in batch.columns().iter().enumerate() {
            let field = &fields[index];
            result = encode_value(
                &mut encoder,
                column,
                row,
                field,
                formatters[index].as_ref(),
                extra_float_digits,
            );
            if result.is_err() {
                break;
            }
        }
        let failed = result.is_err();
        rows.push(result.map(|_| encoder.take_row()));
        // The row stream ends at its first error; the rows after it are not encoded.
        if failed {
            break;
        }
    }
    rows
}

/// The error of a date or timestamp a PostgreSQL client cannot be sent (chrono, and with it
/// the wire encoding, covers years -262143 to 262142; PostgreSQL itself stops earlier).
fn datetime_out_of_range(what: &str) -> PgWireError {
    to_pg_error(&crate::error::Error::new(
        creek_common::ErrorCode::DatetimeOverflow,
        format!("{what} out of range"),
    ))
}

/// Returns the date `days` after 1970-01-01, if chrono can represent it.
fn date_from_epoch_days(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(1970, 1, 1)?
        .checked_add_signed(chrono::Duration::try_days(i64::from(days))?)
}

/// PostgreSQL's text form of a date (`DateStyle` ISO): years before 1 as `0044-03-15 BC`.
fn pg_date_text(date: NaiveDate) -> String {
    let year = date.year();
    let (shown, era) = if year <= 0 {
        (1 - year, " BC")
    } else {
        (year, "")
    };
    format!("{shown:04}-{:02}-{:02}{era}", date.month(), date.day())
}

/// PostgreSQL's text form of a timestamp (`DateStyle` ISO, time zone UTC): fractional seconds
/// only as far as they are non-zero, `+00` for `with time zone`, `BC` last.
fn pg_timestamp_text(timestamp: NaiveDateTime, with_zone: bool) -> String {
    let year = timestamp.year();
    let (shown, era) = if year <= 0 {
        (1 - year, " BC")
    } else {
        (year, "")
    };
    let mut text = format!(
        "{shown:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        timestamp.month(),
        timestamp.day(),
        timestamp.hour(),
        timestamp.minute(),
        timestamp.second()
    );
    let micros = timestamp.nanosecond() / 1000;
    if micros > 0 {
        let fraction = format!("{micros:06}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    if with_zone {
        text.push_str("+00");
    }
    text.push_str(era);
    text
}

/// PostgreSQL's text form of a float array: `{1.5,NaN,NULL}`.
fn float_array_text(values: &ArrayRef, extra_float_digits: i32) -> String {
    let mut text = String::from("{");
    for index in 0..values.len() {
        if index > 0 {
            text.push(',');
        }
        if values.is_null(index) {
            text.push_str("NULL");
        } else if let Some(floats) = values.as_any().downcast_ref::<Float64Array>() {
            text.push_str(&float8_text(floats.value(index), extra_float_digits));
        } else if let Some(floats) = values.as_any().downcast_ref::<Float32Array>() {
            text.push_str(&float4_text(floats.value(index), extra_float_digits));
        }
    }
    text.push('}');
    text
}

fn encode_value(
    encoder: &mut DataRowEncoder,
    column: &ArrayRef,
    row: usize,
    field: &FieldInfo,
    formatter: Option<&ArrayFormatter>,
    extra_float_digits: i32,
) -> PgWireResult<()> {
    let pg_type = field.datatype().clone();
    let format = field.format();
    let format_options = field.format_options().clone();
    // A NullArray has no validity buffer, so `is_null` alone says its rows are values.
    if column.is_null(row) || column.data_type() == &DataType::Null {
        return encoder.encode_field_with_type_and_format(
            &None::<i32>,
            &pg_type,
            format,
            &format_options,
        );
    }
    macro_rules! enc {
        ($value:expr) => {
            encoder.encode_field_with_type_and_format(&$value, &pg_type, format, &format_options)
        };
    }
    // Text-format values Creek spells itself (floats, dates, timestamps) go out as TEXT
    // bytes; the row description still names their own type.
    macro_rules! enc_text {
        ($text:expr) => {
            encoder.encode_field_with_type_and_format(
                &Some($text),
                &Type::TEXT,
                FieldFormat::Text,
                &format_options,
            )
        };
    }
    let text_format = format == FieldFormat::Text;
    match column.data_type() {
        DataType::Float32 if text_format => {
            let value = column.as_primitive::<Float32Type>().value(row);
            enc_text!(float4_text(value, extra_float_digits))
        }
        DataType::Float64 if text_format => {
            let value = column.as_primitive::<Float64Type>().value(row);
            enc_text!(float8_text(value, extra_float_digits))
        }
        // A geo_point as PostgreSQL's `point`: `(lon,lat)` as text, two float8 in binary.
        data_type if creek_common::geo::is_point_type(data_type) => {
            let values = column.as_fixed_size_list().value(row);
            let values = values.as_primitive::<Float64Type>();
            let (lon, lat) = (values.value(0), values.value(1));
            if text_format {
                enc_text!(format!(
                    "({},{})",
                    float8_text(lon, extra_float_digits),
                    float8_text(lat, extra_float_digits)
                ))
            } else {
                // Raw bytes: a byte vector's binary encoding writes them as they are.
                let mut bytes = Vec::with_capacity(16);
                bytes.extend_from_slice(&lon.to_be_bytes());
                bytes.extend_from_slice(&lat.to_be_bytes());
                enc!(bytes)
            }
        }
        data_type if creek_common::object::has_struct(data_type) => {
            enc_text!(creek_common::object::value_to_json(column.as_ref(), row).to_string())
        }
        DataType::List(element)
            if text_format
                && matches!(element.data_type(), DataType::Float32 | DataType::Float64) =>
        {
            let values = column.as_list::<i32>().value(row);
            enc_text!(float_array_text(&values, extra_float_digits))
        }
        DataType::Boolean => enc!(column
            .as_any()
            .downcast_ref::<BooleanArray>()
            .map(|a| a.value(row))),
        DataType::Int16 => enc!(column
            .as_any()
            .downcast_ref::<Int16Array>()
            .map(|a| a.value(row))),
        DataType::Int32 => enc!(column
            .as_any()
            .downcast_ref::<Int32Array>()
            .map(|a| a.value(row))),
        DataType::Int64 => enc!(column
            .as_any()
            .downcast_ref::<Int64Array>()
            .map(|a| a.value(row))),
        DataType::UInt32 => enc!(column
            .as_any()
            .downcast_ref::<UInt32Array>()
            .map(|a| a.value(row))),
        DataType::Float32 => enc!(column
            .as_any()
            .downcast_ref::<Float32Array>()
            .map(|a| a.value(row))),
        DataType::Float64 => enc!(column
            .as_any()
            .downcast_ref::<Float64Array>()
            .map(|a| a.value(row))),
        DataType::Utf8 => enc!(Some(column.as_string::<i32>().value(row))),
        DataType::Date32 => {
            let days = column
                .as_any()
                .downcast_ref::<Date32Array>()
                .map(|a| a.value(row))
                .unwrap_or(0);
            let date = date_from_epoch_days(days).ok_or_else(|| datetime_out_of_range("date"))?;
            if text_format {
                enc_text!(pg_date_text(date))
            } else {
                enc!(Some(date))
            }
        }
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            let micros = column
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .map(|a| a.value(row))
                .unwrap_or(0);
            let utc = Some(
                DateTime::<Utc>::from_timestamp_micros(micros)
                    .ok_or_else(|| datetime_out_of_range("timestamp"))?,
            );
            if text_format {
                let naive = utc.map(|t| t.naive_utc()).expect("set above");
                return enc_text!(pg_timestamp_text(naive, tz.is_some()));
            }
            if tz.is_some() {
                enc!(utc)
            } else {
                enc!(utc.map(|t| t.naive_utc()))
            }
        }
        DataType::List(element) => {
            let list = column.as_list::<i32>();
            let values = list.value(row);
            macro_rules! typed_vec {
                ($array:ty) => {{
                    let typed = values.as_any().downcast_ref::<$array>();
                    let items: Vec<_> = typed.map(|a| a.iter().collect()).unwrap_or_default();
                    enc!(items)
                }};
            }
            match element.data_type() {
                DataType::Boolean => typed_vec!(BooleanArray),
                DataType::Int16 => typed_vec!(Int16Array),
                DataType::Int32 => typed_vec!(Int32Array),
                DataType::Int64 => typed_vec!(Int64Array),
                DataType::UInt32 => typed_vec!(UInt32Array),
                DataType::Float32 => typed_vec!(Float32Array),
                DataType::Float64 => typed_vec!(Float64Array),
                _ => {
                    // Other element types travel as their text form in a text[] value.
                    let options = FormatOptions::default();
                    let items: Vec<Option<String>> =
                        match ArrayFormatter::try_new(values.as_ref(), &options) {
                            Ok(element_formatter) => (0..values.len())
                                .map(|i| {
                                    (!values.is_null(i))
                                        .then(|| element_formatter.value(i).to_string())
                                })
                                .collect(),
                            Err(_) => Vec::new(),
                        };
                    encoder.encode_field_with_type_and_format(
                        &items,
                        &Type::TEXT_ARRAY,
                        format,
                        &format_options,
                    )
                }
            }
        }
        _ => {
            let text = match formatter {
                Some(formatter) => formatter.value(row).to_string(),
                None => String::new(),
            };
            encoder.encode_field_with_type_and_format(
                &Some(text),
                &pg_type,
                FieldFormat::Text,
                &format_options,
            )
        }
    }
}

/// Decodes parameter `index` of a portal as `pg_type`.
pub fn decode_param<S: Clone>(
    portal: &Portal<S>,
    index: usize,
    pg_type: &Type,
) -> PgWireResult<ScalarValue> {
    let bad = |e: PgWireError| {
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".into(),
            "22P02".into(),
            format!("invalid value for parameter ${}: {e}", index + 1),
        )))
    };
    Ok(match pg_type {
        t if *t == Type::BOOL => {
            ScalarValue::Boolean(portal.parameter::<bool>(index, t).map_err(bad)?)
        }
        t if *t == Type::INT2 => {
            ScalarValue::Int16(portal.parameter::<i16>(index, t).map_err(bad)?)
        }
        t if *t == Type::INT4 => {
            ScalarValue::Int32(portal.parameter::<i32>(index, t).map_err(bad)?)
        }
        t if *t == Type::INT8 => {
            ScalarValue::Int64(portal.parameter::<i64>(index, t).map_err(bad)?)
        }
        t if *t == Type::OID => {
            ScalarValue::UInt32(portal.parameter::<u32>(index, t).map_err(bad)?)
        }
        t if *t == Type::FLOAT4 => {
            ScalarValue::Float32(portal.parameter::<f32>(index, t).map_err(bad)?)
        }
        t if *t == Type::FLOAT8 => {
            ScalarValue::Float64(portal.parameter::<f64>(index, t).map_err(bad)?)
        }
        t if *t == Type::TIMESTAMP => ScalarValue::TimestampMicrosecond(
            portal
                .parameter::<NaiveDateTime>(index, t)
                .map_err(bad)?
                .map(|v| v.and_utc().timestamp_micros()),
            None,
        ),
        t if *t == Type::TIMESTAMPTZ => ScalarValue::TimestampMicrosecond(
            portal
                .parameter::<DateTime<chrono::FixedOffset>>(index, t)
                .map_err(bad)?
                .map(|v| v.timestamp_micros()),
            Some("+00:00".into()),
        ),
        t if *t == Type::NUMERIC => match portal
            .parameter::<rust_decimal::Decimal>(index, t)
            .map_err(bad)?
        {
            Some(value) => ScalarValue::Decimal128(Some(value.mantissa()), 38, value.scale() as i8),
            None => ScalarValue::Decimal128(None, 38, 0),
        },
        t if *t == Type::DATE => ScalarValue::Date32(
            portal
                .parameter::<NaiveDate>(index, t)
                .map_err(bad)?
                .map(|d| {
                    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
                }),
        ),
        t if *t == Type::POINT => decode_point_param(portal, index)?,
        t if *t == Type::JSON || *t == Type::JSONB => decode_json_param(portal, index, t)?,
        t if t.name().starts_with('_') => decode_array_param(portal, index, t).map_err(bad)?,
        t => ScalarValue::Utf8(portal.parameter::<String>(index, t).map_err(bad)?),
    })
}

/// A `point` parameter as a `geo_point`: two float8 in binary, `(lon,lat)` (or any text
/// `creek_common::geo::parse_point` reads) in text.
fn decode_point_param<S: Clone>(portal: &Portal<S>, index: usize) -> PgWireResult<ScalarValue> {
    let Some(Some(bytes)) = portal.parameters.get(index) else {
        let null = creek_common::geo::points_to_array(&[None]);
        return Ok(ScalarValue::FixedSizeList(Arc::new(null)));
    };
    let point = if portal.parameter_format.is_binary(index) {
        match <[u8; 16]>::try_from(bytes.as_ref()) {
            Ok(raw) => {
                let half = |from: usize| {
                    let mut part = [0u8; 8];
                    part.copy_from_slice(&raw[from..from + 8]);
                    f64::from_be_bytes(part)
                };
                creek_common::geo::GeoPoint::new(half(0), half(8))
            }
            Err(_) => Err(creek_common::error::CodedError::new(
                creek_common::ErrorCode::InvalidTextRepresentation,
                format!(
                    "invalid value for parameter ${}: a binary point is 16 bytes, not {}",
                    index + 1,
                    bytes.len()
                ),
            )),
        }
    } else {
        std::str::from_utf8(bytes)
            .map_err(|_| {
                creek_common::error::CodedError::new(
                    creek_common::ErrorCode::InvalidTextRepresentation,
                    format!("invalid value for parameter ${}: not UTF-8", index + 1),
                )
            })
            .and_then(creek_common::geo::parse_point)
    }
    .map_err(|error| to_pg_error(&crate::error::Error::from(error)))?;
    let array = creek_common::geo::points_to_array(&[Some(point)]);
    Ok(ScalarValue::FixedSizeList(Arc::new(array)))
}

/// A `json` or `jsonb` parameter as its text, which object columns (and casts) read: text
/// in either format, binary `jsonb` after its version byte (1).
fn decode_json_param<S: Clone>(
    portal: &Portal<S>,
    index: usize,
    pg_type: &Type,
) -> PgWireResult<ScalarValue> {
    let Some(Some(bytes)) = portal.parameters.get(index) else {
        return Ok(ScalarValue::Utf8(None));
    };
    let invalid = |reason: &str| {
        to_pg_error(&crate::error::Error::new(
            creek_common::ErrorCode::InvalidTextRepresentation,
            format!("invalid value for parameter ${}: {reason}", index + 1),
        ))
    };
    let mut text: &[u8] = bytes.as_ref();
    if portal.parameter_format.is_binary(index) && *pg_type == Type::JSONB {
        match text.split_first() {
            Some((1, rest)) => text = rest,
            _ => return Err(invalid("unsupported binary jsonb version")),
        }
    }
    let text = std::str::from_utf8(text).map_err(|_| invalid("not UTF-8"))?;
    Ok(ScalarValue::Utf8(Some(text.to_string())))
}

fn decode_array_param<S: Clone>(
    portal: &Portal<S>,
    index: usize,
    pg_type: &Type,
) -> PgWireResult<ScalarValue> {
    macro_rules! list {
        ($rust:ty, $variant:ident, $arrow:expr) => {{
            match portal.parameter::<Vec<Option<$rust>>>(index, pg_type)? {
                Some(items) => {
                    let values: Vec<ScalarValue> =
                        items.into_iter().map(ScalarValue::$variant).collect();
                    ScalarValue::List(ScalarValue::new_list_nullable(&values, &$arrow))
                }
                None => ScalarValue::try_from(&DataType::new_list($arrow, true))
                    .unwrap_or(ScalarValue::Null),
            }
        }};
    }
    Ok(match pg_type {
        t if *t == Type::BOOL_ARRAY => list!(bool, Boolean, DataType::Boolean),
        t if *t == Type::INT2_ARRAY => list!(i16, Int16, DataType::Int16),
        t if *t == Type::INT4_ARRAY => list!(i32, Int32, DataType::Int32),
        t if *t == Type::INT8_ARRAY => list!(i64, Int64, DataType::Int64),
        t if *t == Type::OID_ARRAY => list!(u32, UInt32, DataType::UInt32),
        t if *t == Type::FLOAT4_ARRAY => list!(f32, Float32, DataType::Float32),
        t if *t == Type::FLOAT8_ARRAY => list!(f64, Float64, DataType::Float64),
        _ => list!(String, Utf8, DataType::Utf8),
    })
}
