//! Polygons that cross the antimeridian (±180° longitude). An edge spanning more than 180° of
//! longitude is read as crossing it, Elasticsearch's rule (the shorter way round the globe),
//! and such a polygon is split there into parts that each lie within [-180, 180]: relations,
//! bounding boxes and the index's ranges then work on ordinary polygons in degrees. Pure
//! geometry; the parsers in `geo` and `geo::shape` call it.

use geo::{BooleanOps, Geometry, GeometryCollection, MapCoords, MultiPolygon, Polygon, Rect};

use crate::error::{CodedError, ErrorCode};

/// Whether a ring has an edge spanning more than 180° of longitude.
fn crosses(polygon: &Polygon<f64>) -> bool {
    polygon
        .exterior()
        .0
        .windows(2)
        .any(|edge| (edge[1].x - edge[0].x).abs() > 180.0)
}

/// `polygon`, split at the antimeridian if it crosses it.
pub fn wrap_polygon(polygon: Polygon<f64>) -> Result<MultiPolygon<f64>, CodedError> {
    if !crosses(&polygon) {
        return Ok(MultiPolygon(vec![polygon]));
    }
    // Continuous longitudes: the western half moves past 180.
    let shifted = polygon
        .map_coords(|c| geo::coord! { x: if c.x < 0.0 { c.x + 360.0 } else { c.x }, y: c.y });
    let split = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let east = Rect::new(
            geo::coord! { x: -180.0, y: -90.0 },
            geo::coord! { x: 180.0, y: 90.0 },
        )
        .to_polygon();
        let west = Rect::new(
            geo::coord! { x: 180.0, y: -90.0 },
            geo::coord! { x: 540.0, y: 90.0 },
        )
        .to_polygon();
        let mut parts = shifted.intersection(&east).0;
        parts.extend(
            shifted
                .intersection(&west)
                .map_coords(|c| geo::coord! { x: c.x - 360.0, y: c.y })
                .0,
        );
        parts
    }))
    .map_err(|_| {
        CodedError::new(
            ErrorCode::InvalidParameterValue,
            "a polygon crossing the antimeridian could not be split: it is not a valid polygon",
        )
    })?;
    if split.is_empty() {
        // Nothing left of it (all its points on the antimeridian): as given.
        return Ok(MultiPolygon(vec![polygon]));
    }
    Ok(MultiPolygon(split))
}

/// Every polygon of `area`, split at the antimeridian where it crosses it.
pub fn wrap_area(area: MultiPolygon<f64>) -> Result<MultiPolygon<f64>, CodedError> {
    let mut parts = Vec::with_capacity(area.0.len());
    for polygon in area.0 {
        parts.extend(wrap_polygon(polygon)?.0);
    }
    Ok(MultiPolygon(parts))
}

/// `shape` with its polygons split at the antimeridian (a polygon that needs it becomes a
/// multipolygon); other geometries as they are.
pub fn wrap_shape(shape: Geometry<f64>) -> Result<Geometry<f64>, CodedError> {
    Ok(match shape {
        Geometry::Polygon(polygon) if crosses(&polygon) => {
            Geometry::MultiPolygon(wrap_polygon(polygon)?)
        }
        Geometry::MultiPolygon(area) if area.0.iter().any(crosses) => {
            Geometry::MultiPolygon(wrap_area(area)?)
        }
        Geometry::GeometryCollection(collection) => {
            Geometry::GeometryCollection(GeometryCollection(
                collection
                    .0
                    .into_iter()
                    .map(wrap_shape)
                    .collect::<Result<_, _>>()?,
            ))
        }
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use geo::{Contains, Point};

    use super::*;

    #[test]
    fn a_polygon_across_the_antimeridian_is_split_there() {
        let band: Polygon<f64> = Polygon::new(
            vec![
                (170.0, -10.0),
                (-170.0, -10.0),
                (-170.0, 10.0),
                (170.0, 10.0),
                (170.0, -10.0),
            ]
            .into(),
            vec![],
        );
        let wrapped = wrap_polygon(band).unwrap();
        assert_eq!(wrapped.0.len(), 2);
        assert!(wrapped.contains(&Point::new(179.0, 0.0)));
        assert!(wrapped.contains(&Point::new(-179.0, 0.0)));
        assert!(!wrapped.contains(&Point::new(0.0, 0.0)));
        assert!(!wrapped.contains(&Point::new(160.0, 0.0)));
        // An ordinary polygon is left alone.
        let square: Polygon<f64> = Polygon::new(
            vec![
                (0.0, 0.0),
                (10.0, 0.0),
                (10.0, 10.0),
                (0.0, 10.0),
                (0.0, 0.0),
            ]
            .into(),
            vec![],
        );
        assert_eq!(
            wrap_polygon(square.clone()).unwrap(),
            MultiPolygon(vec![square])
        );
    }
}
