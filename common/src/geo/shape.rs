//! `geo_shape` values: any geometry (points, lines, polygons, their multi forms and
//! collections) in longitude/latitude degrees, read from WKT or GeoJSON and kept as canonical
//! GeoJSON text, with the geometry relations (`intersects`, `within`) from the `geo` crate.
//! Edges are straight lines in degrees, as for `within` on points. No I/O, no storage layout.

use std::str::FromStr;

use geo::{
    BoundingRect, Coord, Geometry, GeometryCollection, LineString, MultiLineString, MultiPoint,
    MultiPolygon, Point, Polygon, Relate,
};
use serde_json::{json, Value};

use super::{excerpt, invalid_text, GeoBounds, GeoPoint};
use crate::error::CodedError;

/// The deepest GeometryCollection nesting a shape may have (input must not recurse freely).
const MAX_NESTING: usize = 16;

/// The deepest bracket nesting shape text may have: a multipolygon's coordinates in a
/// collection nested [`MAX_NESTING`] deep, in GeoJSON (an object and an array per level).
const MAX_BRACKET_DEPTH: usize = 2 * MAX_NESTING + 6;

/// Reads a shape from WKT (`POLYGON((..))`, `LINESTRING(..)`, ...) or GeoJSON text
/// (`{"type": "Polygon", "coordinates": ..}`). Coordinates must be valid longitudes and
/// latitudes; polygon rings need four points or more.
pub fn parse_shape(text: &str) -> Result<Geometry<f64>, CodedError> {
    let trimmed = text.trim();
    // Every reader below recurses per level: refuse deep nesting before any of them runs.
    let mut depth = 0usize;
    for byte in trimmed.bytes() {
        match byte {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_BRACKET_DEPTH {
                    return Err(invalid_text(format!(
                        "invalid shape {:?}: nested more than {MAX_BRACKET_DEPTH} levels deep",
                        excerpt(text)
                    )));
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let shape = if trimmed.starts_with('{') {
        let value: Value = serde_json::from_str(trimmed)
            .map_err(|e| invalid_text(format!("invalid shape {:?}: {e}", excerpt(text))))?;
        shape_from_geojson(&value, 0).map_err(|message| {
            invalid_text(format!("invalid shape {:?}: {message}", excerpt(text)))
        })?
    } else {
        let parsed = wkt::Wkt::<f64>::from_str(trimmed)
            .map_err(|e| invalid_text(format!("invalid shape {:?}: {e}", excerpt(text))))?;
        let mut shape = Geometry::<f64>::try_from(parsed)
            .map_err(|e| invalid_text(format!("invalid shape {:?}: {e}", excerpt(text))))?;
        normalize_zeros(&mut shape);
        shape
    };
    check(&shape, text)?;
    super::dateline::wrap_shape(shape)
}

/// The longest GeoJSON a `geo_shape` value may have, in bytes: a shard keeps it as one value
/// of a string column, whose values tantivy caps at its term length (65,530 bytes; longer
/// ones would be cut, not refused).
pub const MAX_SHAPE_BYTES: usize = 65_530;

/// The canonical GeoJSON text of a shape given as WKT or GeoJSON: what a `geo_shape` column
/// stores and returns. Refused if longer than [`MAX_SHAPE_BYTES`].
pub fn canonical_shape(text: &str) -> Result<String, CodedError> {
    let canonical = shape_to_geojson(&parse_shape(text)?).to_string();
    if canonical.len() > MAX_SHAPE_BYTES {
        return Err(CodedError::new(
            crate::error::ErrorCode::ProgramLimitExceeded,
            format!(
                "shape too large: {} bytes of GeoJSON, at most {MAX_SHAPE_BYTES} can be stored",
                canonical.len()
            ),
        ));
    }
    Ok(canonical)
}

/// The box of longitudes and latitudes that holds `shape`.
pub fn shape_bounds(shape: &Geometry<f64>) -> Option<GeoBounds> {
    let rect = shape.bounding_rect()?;
    Some(GeoBounds {
        lon: Some((rect.min().x, rect.max().x)),
        lat: (rect.min().y, rect.max().y),
    })
}

/// Whether `a` and `b` share a point (boundaries included).
pub fn shapes_intersect(a: &Geometry<f64>, b: &Geometry<f64>) -> Result<bool, CodedError> {
    relate(a, b).map(|matrix| matrix.is_intersects())
}

/// Whether every point of `shape` lies in `area` (its boundary included).
pub fn shape_within(shape: &Geometry<f64>, area: &Geometry<f64>) -> Result<bool, CodedError> {
    relate(shape, area).map(|matrix| matrix.is_coveredby())
}

/// The DE-9IM matrix of `a` and `b`. The geo crate asserts on some invalid topologies (a
/// self-crossing polygon); such a shape is an error of this call, never a crashed node.
fn relate(
    a: &Geometry<f64>,
    b: &Geometry<f64>,
) -> Result<geo::relate::IntersectionMatrix, CodedError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.relate(b))).map_err(|_| {
        CodedError::new(
            crate::error::ErrorCode::InvalidParameterValue,
            "the shapes cannot be related: one of them is not a valid geometry",
        )
    })
}

/// A point as a geometry.
pub fn point_shape(point: GeoPoint) -> Geometry<f64> {
    Geometry::Point(point.geo())
}

/// -0 is 0: the index orders -0.0 below 0.0, and a box from 0 must hold every such shape.
fn normalize_zeros(shape: &mut Geometry<f64>) {
    use geo::MapCoordsInPlace;
    shape.map_coords_in_place(|c| Coord {
        x: c.x + 0.0,
        y: c.y + 0.0,
    });
}

fn check(shape: &Geometry<f64>, text: &str) -> Result<(), CodedError> {
    let mut out_of_range: Option<CodedError> = None;
    let mut coords = 0usize;
    visit_coords(shape, &mut |coord| {
        coords += 1;
        if out_of_range.is_none() {
            out_of_range = GeoPoint::new(coord.x, coord.y).err();
        }
    });
    if let Some(error) = out_of_range {
        return Err(error);
    }
    let mut problem: Option<String> = None;
    if problem.is_none() && coords == 0 {
        problem = Some("a shape needs at least one point".into());
    }
    let mut short_ring = false;
    visit_polygons(shape, &mut |polygon| {
        short_ring |= std::iter::once(polygon.exterior())
            .chain(polygon.interiors())
            .any(|ring| ring.0.len() < 4);
    });
    if short_ring {
        problem.get_or_insert_with(|| "a polygon's ring needs at least 4 points".into());
    }
    match problem {
        Some(message) => Err(invalid_text(format!(
            "invalid shape {:?}: {message}",
            excerpt(text)
        ))),
        None => Ok(()),
    }
}

fn visit_coords(shape: &Geometry<f64>, f: &mut dyn FnMut(&Coord<f64>)) {
    use geo::CoordsIter;
    for coord in shape.coords_iter() {
        f(&coord);
    }
}

fn visit_polygons(shape: &Geometry<f64>, f: &mut dyn FnMut(&Polygon<f64>)) {
    match shape {
        Geometry::Polygon(polygon) => f(polygon),
        Geometry::MultiPolygon(polygons) => polygons.0.iter().for_each(&mut *f),
        Geometry::GeometryCollection(collection) => {
            for inner in &collection.0 {
                visit_polygons(inner, f);
            }
        }
        _ => {}
    }
}

fn position(value: &Value) -> Result<Coord<f64>, String> {
    match value.as_array().map(Vec::as_slice) {
        Some([lon, lat, ..]) => match (lon.as_f64(), lat.as_f64()) {
            // -0 is 0 (see `normalize_zeros`).
            (Some(x), Some(y)) => Ok(Coord {
                x: x + 0.0,
                y: y + 0.0,
            }),
            _ => Err("a position's coordinates must be numbers".into()),
        },
        _ => Err("a position is an array [lon, lat]".into()),
    }
}

fn list<'a>(value: &'a Value, what: &str) -> Result<&'a Vec<Value>, String> {
    value
        .as_array()
        .ok_or_else(|| format!("the coordinates of a {what} must be an array"))
}

fn line(value: &Value) -> Result<LineString<f64>, String> {
    Ok(LineString(
        list(value, "line")?
            .iter()
            .map(position)
            .collect::<Result<_, _>>()?,
    ))
}

fn polygon(value: &Value) -> Result<Polygon<f64>, String> {
    let mut rings = list(value, "polygon")?.iter().map(line);
    let exterior = rings.next().ok_or("a polygon needs an exterior ring")??;
    Ok(Polygon::new(exterior, rings.collect::<Result<_, _>>()?))
}

fn shape_from_geojson(value: &Value, depth: usize) -> Result<Geometry<f64>, String> {
    if depth > MAX_NESTING {
        return Err(format!(
            "geometry collections nest more than {MAX_NESTING} deep"
        ));
    }
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .ok_or("a GeoJSON geometry needs a \"type\"")?;
    if kind == "GeometryCollection" {
        let geometries = value
            .get("geometries")
            .and_then(Value::as_array)
            .ok_or("a GeometryCollection needs \"geometries\"")?;
        return Ok(Geometry::GeometryCollection(GeometryCollection(
            geometries
                .iter()
                .map(|g| shape_from_geojson(g, depth + 1))
                .collect::<Result<_, _>>()?,
        )));
    }
    let coordinates = value
        .get("coordinates")
        .ok_or("a GeoJSON geometry needs \"coordinates\"")?;
    Ok(match kind {
        "Point" => Geometry::Point(Point(position(coordinates)?)),
        "MultiPoint" => Geometry::MultiPoint(MultiPoint(
            list(coordinates, "multipoint")?
                .iter()
                .map(|p| position(p).map(Point))
                .collect::<Result<_, _>>()?,
        )),
        "LineString" => Geometry::LineString(line(coordinates)?),
        "MultiLineString" => Geometry::MultiLineString(MultiLineString(
            list(coordinates, "multilinestring")?
                .iter()
                .map(line)
                .collect::<Result<_, _>>()?,
        )),
        "Polygon" => Geometry::Polygon(polygon(coordinates)?),
        "MultiPolygon" => Geometry::MultiPolygon(MultiPolygon(
            list(coordinates, "multipolygon")?
                .iter()
                .map(polygon)
                .collect::<Result<_, _>>()?,
        )),
        other => return Err(format!("unknown GeoJSON geometry type {other:?}")),
    })
}

fn coords(line: &LineString<f64>) -> Value {
    Value::Array(line.0.iter().map(|c| json!([c.x, c.y])).collect())
}

fn polygon_coords(polygon: &Polygon<f64>) -> Value {
    Value::Array(
        std::iter::once(polygon.exterior())
            .chain(polygon.interiors())
            .map(coords)
            .collect(),
    )
}

/// A shape as a GeoJSON geometry object (rectangles, triangles and lines as their polygons
/// and line strings).
pub fn shape_to_geojson(shape: &Geometry<f64>) -> Value {
    match shape {
        Geometry::Point(p) => json!({"type": "Point", "coordinates": [p.x(), p.y()]}),
        Geometry::MultiPoint(points) => json!({
            "type": "MultiPoint",
            "coordinates": points.0.iter().map(|p| json!([p.x(), p.y()])).collect::<Vec<_>>(),
        }),
        Geometry::Line(l) => json!({
            "type": "LineString",
            "coordinates": [[l.start.x, l.start.y], [l.end.x, l.end.y]],
        }),
        Geometry::LineString(l) => json!({"type": "LineString", "coordinates": coords(l)}),
        Geometry::MultiLineString(lines) => json!({
            "type": "MultiLineString",
            "coordinates": lines.0.iter().map(coords).collect::<Vec<_>>(),
        }),
        Geometry::Polygon(p) => json!({"type": "Polygon", "coordinates": polygon_coords(p)}),
        Geometry::MultiPolygon(polygons) => json!({
            "type": "MultiPolygon",
            "coordinates": polygons.0.iter().map(polygon_coords).collect::<Vec<_>>(),
        }),
        Geometry::Rect(r) => shape_to_geojson(&Geometry::Polygon(r.to_polygon())),
        Geometry::Triangle(t) => shape_to_geojson(&Geometry::Polygon(t.to_polygon())),
        Geometry::GeometryCollection(collection) => json!({
            "type": "GeometryCollection",
            "geometries": collection.0.iter().map(shape_to_geojson).collect::<Vec<_>>(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wkt_and_geojson_read_alike() {
        let from_wkt = canonical_shape("POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0))").unwrap();
        let from_json = canonical_shape(
            r#"{"type": "Polygon", "coordinates": [[[0,0],[10,0],[10,10],[0,10],[0,0]]]}"#,
        )
        .unwrap();
        assert_eq!(from_wkt, from_json);
        assert_eq!(
            from_wkt,
            r#"{"coordinates":[[[0.0,0.0],[10.0,0.0],[10.0,10.0],[0.0,10.0],[0.0,0.0]]],"type":"Polygon"}"#
        );
        let line = parse_shape("LINESTRING (5 -5, 5 15)").unwrap();
        let square = parse_shape(&from_wkt).unwrap();
        assert!(shapes_intersect(&line, &square).unwrap());
        assert!(!shape_within(&line, &square).unwrap());
        let inner = parse_shape("LINESTRING (1 1, 9 9)").unwrap();
        assert!(shape_within(&inner, &square).unwrap());
        // On the boundary counts, for intersects and within alike.
        let edge = parse_shape("POINT (10 5)").unwrap();
        assert!(shapes_intersect(&edge, &square).unwrap() && shape_within(&edge, &square).unwrap());
        let far = parse_shape(r#"{"type":"Point","coordinates":[50,50]}"#).unwrap();
        assert!(!shapes_intersect(&far, &square).unwrap());
        let bounds = shape_bounds(&line).unwrap();
        assert_eq!(bounds.lat, (-5.0, 15.0));
    }

    #[test]
    fn bad_shapes_are_errors() {
        for bad in [
            "POLYGON ((0 0, 1 1, 0 0))",
            "POINT (200 0)",
            r#"{"type": "Polygon", "coordinates": [[[0,0],[1,0]]]}"#,
            r#"{"type": "Circle", "coordinates": [0, 0]}"#,
            r#"{"type": "Point"}"#,
            r#"{"type": "Point", "coordinates": ["a", 1]}"#,
            "{",
            "CIRCLE (1 1)",
            "",
        ] {
            assert!(parse_shape(bad).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..20_000)
            .map(|i| format!("{} 1", i as f64 / 1000.0))
            .collect();
        let long = format!("LINESTRING ({})", many.join(", "));
        assert_eq!(
            canonical_shape(&long).err().map(|e| e.code),
            Some(crate::error::ErrorCode::ProgramLimitExceeded)
        );
        let deep = (0..100).fold(
            r#"{"type":"Point","coordinates":[0,0]}"#.to_string(),
            |inner, _| format!(r#"{{"type":"GeometryCollection","geometries":[{inner}]}}"#),
        );
        assert!(parse_shape(&deep).is_err());
    }
}
