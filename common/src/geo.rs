//! Geographic points and areas: the Arrow form of `geo_point` values, reading points and
//! polygons from text, distance on the sphere, the bounding boxes a data node turns into
//! index ranges, and the SQL functions over them (`distance`, `within`, `latitude`,
//! `longitude`).
//!
//! The functions live here because both roles need the same ones: coordinators plan and run
//! them, data nodes decode them in pushed filters and plan fragments (and must evaluate them
//! exactly as a coordinator would). This module is pure: it must not know where a data node
//! stores a point, and it parses only non-recursive WKT (`POINT`, `POLYGON`, `MULTIPOLYGON`),
//! so no input can nest deeply enough to exhaust the stack.

use std::str::FromStr;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, FixedSizeListArray, Float64Array,
    Float64Builder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use geo::{BoundingRect, Distance, Haversine, Intersects, MultiPolygon, Point, Polygon};

use crate::error::{CodedError, ErrorCode};

mod dateline;
mod shape;
pub use shape::{
    canonical_shape, parse_shape, point_shape, shape_bounds, shape_to_geojson, shape_within,
    shapes_intersect, MAX_SHAPE_BYTES,
};

/// Name of the function giving the distance in metres between two points.
pub const DISTANCE_FUNCTION: &str = "distance";
/// Name of the function telling whether a point lies in an area.
pub const WITHIN_FUNCTION: &str = "within";

/// Radius of the sphere distances are measured on: the mean radius of the GRS80 ellipsoid,
/// in metres (what Elasticsearch and CrateDB use for arc distances too).
pub const EARTH_RADIUS_METRES: f64 = 6_371_008.8;

/// Degrees a bounding box is widened by on every side, far above the rounding error of the
/// trigonometry (about a centimetre on the ground): the box must hold every matching point.
const BOUNDS_PADDING_DEGREES: f64 = 1e-7;

/// The Arrow type of `geo_point` values: `[longitude, latitude]`, both in degrees.
pub fn point_type() -> DataType {
    DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float64, true)), 2)
}

/// Whether `data_type` is the Arrow form of `geo_point` values.
pub fn is_point_type(data_type: &DataType) -> bool {
    matches!(data_type, DataType::FixedSizeList(field, 2) if field.data_type() == &DataType::Float64)
}

/// A valid location: longitude in [-180, 180], latitude in [-90, 90].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoPoint {
    pub lon: f64,
    pub lat: f64,
}

impl GeoPoint {
    /// The point at `lon`, `lat`, or an error naming it if it is no location on Earth.
    pub fn new(lon: f64, lat: f64) -> Result<GeoPoint, CodedError> {
        if !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
            return Err(CodedError::new(
                ErrorCode::InvalidParameterValue,
                format!(
                    "invalid geo point [{lon}, {lat}]: longitude must be in [-180, 180] and \
                     latitude in [-90, 90]"
                ),
            ));
        }
        // -0 is 0: the index orders -0.0 below 0.0, and a box around 0 must hold both.
        Ok(GeoPoint {
            lon: lon + 0.0,
            lat: lat + 0.0,
        })
    }

    fn geo(self) -> Point<f64> {
        Point::new(self.lon, self.lat)
    }
}

fn invalid_text(message: impl Into<String>) -> CodedError {
    CodedError::new(ErrorCode::InvalidTextRepresentation, message)
}

/// Shortens `text` for an error message.
fn excerpt(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

/// Whether `text` starts with `keyword`, ignoring ASCII case.
fn starts_with_keyword(text: &str, keyword: &str) -> bool {
    text.get(..keyword.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(keyword))
}

/// Reads a point from text: WKT (`POINT(lon lat)`), a JSON array `[lon, lat]`, a JSON object
/// `{"lon": .., "lat": ..}`, a GeoJSON point (`{"type": "Point", "coordinates": [..]}`), or
/// PostgreSQL's `point` text `(lon,lat)`.
pub fn parse_point(text: &str) -> Result<GeoPoint, CodedError> {
    let trimmed = text.trim();
    if let Some(pair) = trimmed.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
        // PostgreSQL's `point` text: `(x,y)`.
        let numbers: Vec<&str> = pair.split(',').map(str::trim).collect();
        if let [lon, lat] = numbers.as_slice() {
            if let (Ok(lon), Ok(lat)) = (lon.parse::<f64>(), lat.parse::<f64>()) {
                return GeoPoint::new(lon, lat);
            }
        }
        return Err(invalid_text(format!(
            "invalid geo point {:?}: expected (lon,lat)",
            excerpt(text)
        )));
    }
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(trimmed)
            .map_err(|e| invalid_text(format!("invalid geo point {:?}: {e}", excerpt(text))))?;
        return point_from_json(&value)
            .ok_or_else(|| {
                invalid_text(format!(
                    "invalid geo point {:?}: expected [lon, lat], {{\"lon\": .., \"lat\": ..}} \
                     or a GeoJSON point",
                    excerpt(text)
                ))
            })
            .and_then(|(lon, lat)| GeoPoint::new(lon, lat));
    }
    if !starts_with_keyword(trimmed, "POINT") {
        return Err(invalid_text(format!(
            "invalid geo point {:?}: expected POINT(lon lat), [lon, lat] or {{\"lon\": .., \
             \"lat\": ..}}",
            excerpt(text)
        )));
    }
    let parsed = wkt::Wkt::<f64>::from_str(trimmed)
        .map_err(|e| invalid_text(format!("invalid geo point {:?}: {e}", excerpt(text))))?;
    let point = Point::<f64>::try_from(parsed)
        .map_err(|e| invalid_text(format!("invalid geo point {:?}: {e}", excerpt(text))))?;
    GeoPoint::new(point.x(), point.y())
}

/// `[lon, lat]`, `{"lon", "lat"}` or a GeoJSON point as the two numbers.
fn point_from_json(value: &serde_json::Value) -> Option<(f64, f64)> {
    use serde_json::Value;
    match value {
        Value::Array(items) => match items.as_slice() {
            [lon, lat] => Some((lon.as_f64()?, lat.as_f64()?)),
            _ => None,
        },
        Value::Object(object) => {
            if let (Some(lon), Some(lat), 2) = (object.get("lon"), object.get("lat"), object.len())
            {
                return Some((lon.as_f64()?, lat.as_f64()?));
            }
            let is_point = object
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case("point"));
            if is_point && object.len() == 2 {
                return point_from_json(object.get("coordinates")?);
            }
            None
        }
        _ => None,
    }
}

/// Reads an area from WKT text: `POLYGON((..), (hole) ..)` or `MULTIPOLYGON(..)`, with
/// coordinates as longitude and latitude in degrees. Edges are straight lines in degrees (as
/// in Elasticsearch's and CrateDB's `within` on points).
pub fn parse_area(text: &str) -> Result<MultiPolygon<f64>, CodedError> {
    let trimmed = text.trim();
    let is_multi = starts_with_keyword(trimmed, "MULTIPOLYGON");
    if !is_multi && !starts_with_keyword(trimmed, "POLYGON") {
        return Err(invalid_text(format!(
            "invalid shape {:?}: expected a WKT POLYGON or MULTIPOLYGON",
            excerpt(text)
        )));
    }
    let parsed = wkt::Wkt::<f64>::from_str(trimmed)
        .map_err(|e| invalid_text(format!("invalid shape {:?}: {e}", excerpt(text))))?;
    let area = if is_multi {
        MultiPolygon::<f64>::try_from(parsed)
    } else {
        Polygon::<f64>::try_from(parsed).map(|polygon| MultiPolygon(vec![polygon]))
    }
    .map_err(|e| invalid_text(format!("invalid shape {:?}: {e}", excerpt(text))))?;
    for polygon in &area.0 {
        if polygon.exterior().0.len() < 4 {
            return Err(invalid_text(format!(
                "invalid shape {:?}: a polygon's ring needs at least 4 points",
                excerpt(text)
            )));
        }
        for ring in std::iter::once(polygon.exterior()).chain(polygon.interiors()) {
            for coord in &ring.0 {
                GeoPoint::new(coord.x, coord.y)?;
            }
        }
    }
    dateline::wrap_area(area)
}

/// The great-circle distance between two points, in metres.
pub fn distance(a: GeoPoint, b: GeoPoint) -> f64 {
    Haversine.distance(a.geo(), b.geo())
}

/// Whether `point` lies in `area` or on its boundary.
pub fn within(point: GeoPoint, area: &MultiPolygon<f64>) -> bool {
    area.intersects(&point.geo())
}

/// A box of longitudes and latitudes, in degrees, holding every point of some set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoBounds {
    /// Longitudes from..to; `None` when the set spans every longitude (around a pole, or
    /// across the antimeridian).
    pub lon: Option<(f64, f64)>,
    /// Latitudes from..to.
    pub lat: (f64, f64),
}

/// The box holding every point within `radius` metres of `center`; `None` when that is the
/// whole globe or the radius is no number.
pub fn distance_bounds(center: GeoPoint, radius: f64) -> Option<GeoBounds> {
    if radius.is_nan() {
        return None;
    }
    let angle = radius.max(0.0) / EARTH_RADIUS_METRES;
    if angle >= std::f64::consts::PI {
        return None;
    }
    let angle_degrees = angle.to_degrees() + BOUNDS_PADDING_DEGREES;
    let lat_min = center.lat - angle_degrees;
    let lat_max = center.lat + angle_degrees;
    if lat_min <= -90.0 || lat_max >= 90.0 {
        // The circle holds a pole: every longitude.
        return Some(GeoBounds {
            lon: None,
            lat: (lat_min.max(-90.0), lat_max.min(90.0)),
        });
    }
    // The widest longitude of a spherical cap (its tangent meridians), which holds while
    // the cap excludes both poles, as it does here. Near 1, asin magnifies the rounding of
    // the ratio beyond the padding: a cap that almost reaches a pole spans every longitude.
    let ratio = angle.sin() / center.lat.to_radians().cos();
    if ratio >= 1.0 - 1e-9 {
        return Some(GeoBounds {
            lon: None,
            lat: (lat_min, lat_max),
        });
    }
    let lon_delta = ratio.asin().to_degrees() + BOUNDS_PADDING_DEGREES;
    let (lon_min, lon_max) = (center.lon - lon_delta, center.lon + lon_delta);
    Some(GeoBounds {
        lon: (lon_min >= -180.0 && lon_max <= 180.0).then_some((lon_min, lon_max)),
        lat: (lat_min, lat_max),
    })
}

/// The box holding `area`.
pub fn area_bounds(area: &MultiPolygon<f64>) -> Option<GeoBounds> {
    let rect = area.bounding_rect()?;
    let pad = BOUNDS_PADDING_DEGREES;
    Some(GeoBounds {
        lon: Some((rect.min().x - pad, rect.max().x + pad)),
        lat: (rect.min().y - pad, rect.max().y + pad),
    })
}

/// Reads the points of an array of `geo_point`s, of text (as [`parse_point`] reads it) or of
/// numeric lists `[lon, lat]`.
pub fn points_from_array(array: &ArrayRef) -> Result<Vec<Option<GeoPoint>>, CodedError> {
    let mut points = Vec::with_capacity(array.len());
    match array.data_type() {
        DataType::Null => points.resize(array.len(), None),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text = cast(array, &DataType::Utf8).map_err(arrow_error)?;
            for value in text.as_string::<i32>() {
                points.push(value.map(parse_point).transpose()?);
            }
        }
        DataType::FixedSizeList(..) | DataType::List(_) | DataType::LargeList(_) => {
            for row in 0..array.len() {
                if array.is_null(row) {
                    points.push(None);
                    continue;
                }
                let values = match array.data_type() {
                    DataType::FixedSizeList(..) => array.as_fixed_size_list().value(row),
                    DataType::List(_) => array.as_list::<i32>().value(row),
                    _ => array.as_list::<i64>().value(row),
                };
                if !values.data_type().is_numeric() {
                    return Err(type_error(array.data_type()));
                }
                let numbers = cast(&values, &DataType::Float64).map_err(arrow_error)?;
                let numbers = numbers.as_primitive::<Float64Type>();
                if numbers.len() != 2 || numbers.null_count() > 0 {
                    return Err(CodedError::new(
                        ErrorCode::InvalidParameterValue,
                        format!(
                            "invalid geo point: expected [lon, lat], got {} values",
                            numbers.len()
                        ),
                    ));
                }
                points.push(Some(GeoPoint::new(numbers.value(0), numbers.value(1))?));
            }
        }
        other => return Err(type_error(other)),
    }
    Ok(points)
}

fn type_error(data_type: &DataType) -> CodedError {
    CodedError::new(
        ErrorCode::DatatypeMismatch,
        format!("cannot read a geo point from a value of type {data_type}"),
    )
}

fn arrow_error(error: datafusion::arrow::error::ArrowError) -> CodedError {
    CodedError::new(
        ErrorCode::DatatypeMismatch,
        crate::error::strip_prefix(&error.to_string()),
    )
}

/// Builds the Arrow array of `geo_point` values.
pub fn points_to_array(points: &[Option<GeoPoint>]) -> FixedSizeListArray {
    let mut values = Float64Builder::with_capacity(points.len() * 2);
    for point in points {
        let point = point.unwrap_or(GeoPoint { lon: 0.0, lat: 0.0 });
        values.append_value(point.lon);
        values.append_value(point.lat);
    }
    let nulls = points
        .iter()
        .any(Option::is_none)
        .then(|| points.iter().map(Option::is_some).collect());
    let DataType::FixedSizeList(field, size) = point_type() else {
        unreachable!("point_type is a fixed-size list")
    };
    FixedSizeListArray::new(field, size, Arc::new(values.finish()), nulls)
}

/// The SQL functions over points, for every function registry that plans or decodes them.
pub fn functions() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(GeoFunction::new(GeoKind::Distance)),
        ScalarUDF::new_from_impl(GeoFunction::new(GeoKind::Within)),
        ScalarUDF::new_from_impl(GeoFunction::new(GeoKind::Latitude)),
        ScalarUDF::new_from_impl(GeoFunction::new(GeoKind::Longitude)),
        ScalarUDF::new_from_impl(GeoFunction::new(GeoKind::Intersects)),
    ]
}

/// The Arrow field metadata that marks a `geo_shape` column (its values are GeoJSON text),
/// so the front ends can give clients objects (CrateDB's type 14, PostgreSQL's `json`).
pub const SHAPE_FIELD_METADATA: (&str, &str) = ("creek.type", "geo_shape");

/// Whether `field` holds `geo_shape` values.
pub fn is_shape_field(field: &Field) -> bool {
    // A cast keeps the marker on another type; only GeoJSON text is a shape.
    field.data_type() == &DataType::Utf8
        && field
            .metadata()
            .get(SHAPE_FIELD_METADATA.0)
            .map(String::as_str)
            == Some(SHAPE_FIELD_METADATA.1)
}

/// Name of the shape relation `intersects(a, b)`.
pub const INTERSECTS_FUNCTION: &str = "intersects";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum GeoKind {
    Distance,
    Within,
    Latitude,
    Longitude,
    Intersects,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct GeoFunction {
    kind: GeoKind,
    signature: Signature,
}

impl GeoFunction {
    fn new(kind: GeoKind) -> GeoFunction {
        let arguments = match kind {
            GeoKind::Distance | GeoKind::Within | GeoKind::Intersects => 2,
            GeoKind::Latitude | GeoKind::Longitude => 1,
        };
        GeoFunction {
            kind,
            // Points arrive as geo_point columns, text or numeric arrays: each is read by
            // `points_from_array`, which refuses anything else with a clear error.
            signature: Signature::any(arguments, Volatility::Immutable),
        }
    }
}

fn datafusion_error(error: CodedError) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

/// The points of one argument: read once for a constant, per row for a column.
enum PointsArg {
    One(Option<GeoPoint>),
    Each(Vec<Option<GeoPoint>>),
}

impl PointsArg {
    fn read(value: &ColumnarValue) -> DfResult<PointsArg> {
        Ok(match value {
            ColumnarValue::Scalar(scalar) => {
                let mut points =
                    points_from_array(&scalar.to_array()?).map_err(datafusion_error)?;
                PointsArg::One(points.pop().flatten())
            }
            ColumnarValue::Array(array) => {
                PointsArg::Each(points_from_array(array).map_err(datafusion_error)?)
            }
        })
    }

    fn get(&self, row: usize) -> Option<GeoPoint> {
        match self {
            PointsArg::One(point) => *point,
            PointsArg::Each(points) => points[row],
        }
    }
}

impl ScalarUDFImpl for GeoFunction {
    fn name(&self) -> &str {
        match self.kind {
            GeoKind::Distance => DISTANCE_FUNCTION,
            GeoKind::Within => WITHIN_FUNCTION,
            GeoKind::Latitude => "latitude",
            GeoKind::Longitude => "longitude",
            GeoKind::Intersects => INTERSECTS_FUNCTION,
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(match self.kind {
            GeoKind::Within | GeoKind::Intersects => DataType::Boolean,
            _ => DataType::Float64,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let all_scalar = args
            .args
            .iter()
            .all(|arg| matches!(arg, ColumnarValue::Scalar(_)));
        let result: ArrayRef = match self.kind {
            GeoKind::Distance => {
                let a = PointsArg::read(&args.args[0])?;
                let b = PointsArg::read(&args.args[1])?;
                Arc::new(
                    (0..rows)
                        .map(|row| Some(distance(a.get(row)?, b.get(row)?)))
                        .collect::<Float64Array>(),
                )
            }
            GeoKind::Intersects => {
                let a = shapes_arg(&args.args[0])?;
                let b = shapes_arg(&args.args[1])?;
                let mut intersects = BooleanBuilder::with_capacity(rows);
                for row in 0..rows {
                    intersects.append_option(match (a.get(row), b.get(row)) {
                        (Some(a), Some(b)) => {
                            Some(shapes_intersect(a, b).map_err(datafusion_error)?)
                        }
                        _ => None,
                    });
                }
                Arc::new(intersects.finish())
            }
            GeoKind::Within
                if !is_point_type(&args.args[0].data_type())
                    || area_arg(&args.args[1], rows).is_err() =>
            {
                // A shape (a geo_shape column, WKT or GeoJSON text, a point in any form) in
                // any shape.
                let a = shapes_arg(&args.args[0])?;
                let b = shapes_arg(&args.args[1])?;
                let mut within = BooleanBuilder::with_capacity(rows);
                for row in 0..rows {
                    within.append_option(match (a.get(row), b.get(row)) {
                        (Some(a), Some(b)) => Some(shape_within(a, b).map_err(datafusion_error)?),
                        _ => None,
                    });
                }
                Arc::new(within.finish())
            }
            GeoKind::Within => {
                let points = PointsArg::read(&args.args[0])?;
                let areas = area_arg(&args.args[1], rows)?;
                Arc::new(
                    (0..rows)
                        .map(|row| {
                            let area = match &areas {
                                AreaArg::One(area) => area.as_ref()?,
                                AreaArg::Each(areas) => areas[row].as_ref()?,
                            };
                            Some(within(points.get(row)?, area))
                        })
                        .collect::<BooleanArray>(),
                )
            }
            GeoKind::Latitude | GeoKind::Longitude => {
                let points = PointsArg::read(&args.args[0])?;
                let latitude = self.kind == GeoKind::Latitude;
                Arc::new(
                    (0..rows)
                        .map(|row| {
                            let point = points.get(row)?;
                            Some(if latitude { point.lat } else { point.lon })
                        })
                        .collect::<Float64Array>(),
                )
            }
        };
        if all_scalar {
            // One row of constant arguments: answer with a scalar, as DataFusion expects.
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &result, 0,
            )?));
        }
        Ok(ColumnarValue::Array(result))
    }
}

/// The shapes of one argument: points, or WKT/GeoJSON text (a `geo_shape` column).
enum ShapesArg {
    One(Option<geo::Geometry<f64>>),
    Each(Vec<Option<geo::Geometry<f64>>>),
}

impl ShapesArg {
    fn get(&self, row: usize) -> Option<&geo::Geometry<f64>> {
        match self {
            ShapesArg::One(shape) => shape.as_ref(),
            ShapesArg::Each(shapes) => shapes[row].as_ref(),
        }
    }
}

fn shapes_arg(value: &ColumnarValue) -> DfResult<ShapesArg> {
    let array = match value {
        ColumnarValue::Scalar(scalar) => scalar.to_array()?,
        ColumnarValue::Array(array) => array.clone(),
    };
    let listed = matches!(
        array.data_type(),
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
    );
    let shapes: Vec<Option<geo::Geometry<f64>>> = if listed {
        // Points, as columns or `[lon, lat]` values.
        points_from_array(&array)
            .map_err(datafusion_error)?
            .into_iter()
            .map(|point| point.map(point_shape))
            .collect()
    } else if matches!(
        array.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
    ) {
        let text = cast(&array, &DataType::Utf8)?;
        text.as_string::<i32>()
            .iter()
            .map(|text| text.map(shape_or_point).transpose())
            .collect::<Result<_, _>>()
            .map_err(datafusion_error)?
    } else {
        return Err(datafusion_error(CodedError::new(
            ErrorCode::DatatypeMismatch,
            format!(
                "expected a shape (geo_shape, geo_point, WKT or GeoJSON text), not a value of \
                 type {}",
                array.data_type()
            ),
        )));
    };
    Ok(match value {
        ColumnarValue::Scalar(_) => ShapesArg::One(shapes.into_iter().next().flatten()),
        ColumnarValue::Array(_) => ShapesArg::Each(shapes),
    })
}

/// A shape from WKT or GeoJSON, or a point in any of its text forms (`[lon, lat]`, `(lon,lat)`,
/// `{"lon": .., "lat": ..}`). Text longer than any storable shape is refused unread.
fn shape_or_point(text: &str) -> Result<geo::Geometry<f64>, CodedError> {
    if text.len() > MAX_SHAPE_BYTES {
        return Err(CodedError::new(
            ErrorCode::ProgramLimitExceeded,
            format!(
                "shape too large: {} bytes, at most {MAX_SHAPE_BYTES}",
                text.len()
            ),
        ));
    }
    match parse_shape(text) {
        Ok(shape) => Ok(shape),
        Err(error) => parse_point(text).map(point_shape).map_err(|_| error),
    }
}

enum AreaArg {
    One(Option<MultiPolygon<f64>>),
    Each(Vec<Option<MultiPolygon<f64>>>),
}

fn area_arg(value: &ColumnarValue, rows: usize) -> DfResult<AreaArg> {
    let parse = |text: Option<&str>| -> DfResult<Option<MultiPolygon<f64>>> {
        text.map(parse_area).transpose().map_err(datafusion_error)
    };
    let array = match value {
        ColumnarValue::Scalar(scalar) => scalar.to_array()?,
        ColumnarValue::Array(array) => array.clone(),
    };
    if !matches!(
        array.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
    ) {
        return Err(datafusion_error(CodedError::new(
            ErrorCode::DatatypeMismatch,
            format!(
                "within expects a WKT polygon as text, not a value of type {}",
                array.data_type()
            ),
        )));
    }
    let text = cast(&array, &DataType::Utf8)?;
    let text = text.as_string::<i32>();
    Ok(match value {
        ColumnarValue::Scalar(_) => AreaArg::One(parse(text.iter().next().flatten())?),
        ColumnarValue::Array(_) => {
            debug_assert_eq!(text.len(), rows);
            AreaArg::Each(text.iter().map(parse).collect::<DfResult<_>>()?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(lon: f64, lat: f64) -> GeoPoint {
        GeoPoint::new(lon, lat).unwrap()
    }

    #[test]
    fn points_are_read_from_every_text_form() {
        let expected = point(13.4, 52.5);
        for text in [
            "POINT(13.4 52.5)",
            " point (13.4 52.5) ",
            "(13.4,52.5)",
            "[13.4, 52.5]",
            r#"{"lon": 13.4, "lat": 52.5}"#,
            r#"{"type": "Point", "coordinates": [13.4, 52.5]}"#,
        ] {
            assert_eq!(parse_point(text).unwrap(), expected, "{text}");
        }
        for bad in [
            "POINT(200 10)",
            "[1]",
            "[1, 2, 3]",
            "POINT EMPTY",
            "LINESTRING(1 2, 3 4)",
            "",
            "{\"lon\": 1}",
            "[\"a\", 2]",
            "(1,2,3)",
            "(nan,2)",
        ] {
            assert!(parse_point(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_point("POINT(1 91)").unwrap_err().code,
            ErrorCode::InvalidParameterValue
        );
    }

    #[test]
    fn distance_is_the_great_circle_distance() {
        // One degree of latitude on the sphere.
        let one_degree = EARTH_RADIUS_METRES * std::f64::consts::PI / 180.0;
        let measured = distance(point(0.0, 0.0), point(0.0, 1.0));
        assert!((measured - one_degree).abs() < 1e-6, "{measured}");
        // Berlin to Paris, about 878 km.
        let berlin_paris = distance(point(13.405, 52.52), point(2.3522, 48.8566));
        assert!((berlin_paris - 877_500.0).abs() < 2_000.0, "{berlin_paris}");
    }

    #[test]
    fn within_includes_the_boundary_and_excludes_holes() {
        let area = parse_area("POLYGON((0 0, 10 0, 10 10, 0 10, 0 0), (4 4, 6 4, 6 6, 4 6, 4 4))")
            .unwrap();
        assert!(within(point(1.0, 1.0), &area));
        assert!(within(point(10.0, 5.0), &area));
        assert!(!within(point(5.0, 5.0), &area));
        assert!(!within(point(11.0, 5.0), &area));
        assert!(parse_area("POLYGON((0 0, 1 1, 0 0))").is_err());
        assert!(parse_area("POLYGON((0 0, 200 0, 1 1, 0 0))").is_err());
        assert!(parse_area("GEOMETRYCOLLECTION(POINT(1 1))").is_err());
    }

    /// Every point inside the circle is inside its box, near the poles and the antimeridian
    /// too.
    #[test]
    fn distance_bounds_hold_the_whole_circle() {
        let centers = [
            point(0.0, 0.0),
            point(13.4, 52.5),
            point(179.9, 10.0),
            point(-70.0, -89.0),
            point(45.0, 80.0),
        ];
        for center in centers {
            for radius in [10.0, 5_000.0, 500_000.0, 3_000_000.0] {
                let bounds = distance_bounds(center, radius).unwrap();
                for step in 0..360 {
                    let bearing = f64::from(step).to_radians();
                    // The point at `radius` along `bearing` (the spherical destination formula).
                    let angle = radius / EARTH_RADIUS_METRES * 0.999_999;
                    let (lat1, lon1) = (center.lat.to_radians(), center.lon.to_radians());
                    let lat2 = (lat1.sin() * angle.cos()
                        + lat1.cos() * angle.sin() * bearing.cos())
                    .asin();
                    let lon2 = lon1
                        + (bearing.sin() * angle.sin() * lat1.cos())
                            .atan2(angle.cos() - lat1.sin() * lat2.sin());
                    let (lat2, lon2) = (lat2.to_degrees(), lon2.to_degrees());
                    assert!(
                        bounds.lat.0 <= lat2 && lat2 <= bounds.lat.1,
                        "{center:?} {radius} {lat2}"
                    );
                    if let Some((from, to)) = bounds.lon {
                        assert!(from <= lon2 && lon2 <= to, "{center:?} {radius} {lon2}");
                    }
                }
            }
        }
        assert_eq!(distance_bounds(point(0.0, 0.0), f64::NAN), None);
        // A circle whose edge all but touches the poles: the rounding of asin near 1 must not
        // cut off a point just inside it.
        let (center, radius) = (point(0.0, 0.0), 10_007_557.153_151_054);
        let inside = point(89.999_999_387_226_27, 0.0);
        assert!(distance(center, inside) < radius);
        if let Some((from, to)) = distance_bounds(center, radius).unwrap().lon {
            assert!(from <= inside.lon && inside.lon <= to);
        }
        assert!(distance_bounds(point(179.9, 0.0), 50_000.0)
            .unwrap()
            .lon
            .is_none());
    }

    #[test]
    fn arrays_of_points_round_trip() {
        let points = vec![Some(point(1.0, 2.0)), None, Some(point(-3.5, 4.25))];
        let array: ArrayRef = Arc::new(points_to_array(&points));
        assert!(is_point_type(array.data_type()));
        assert_eq!(points_from_array(&array).unwrap(), points);
    }
}
