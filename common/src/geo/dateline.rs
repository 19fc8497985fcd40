//! Polygons that cross the antimeridian (±180° longitude). An edge spanning more than 180° of
//! longitude (other than one along ±180) is read as crossing it, Elasticsearch's rule: edges
//! go the shorter way round. Such a polygon's longitudes are made continuous and it is split
//! into parts that each lie within [-180, 180] (a ring going round a pole is left as given):
//! relations,
//! bounding boxes and the index's ranges then work on ordinary polygons in degrees. Pure
//! geometry; the parsers in `geo` and `geo::shape` call it.

use geo::{
    BooleanOps, Geometry, GeometryCollection, LineString, MapCoords, MultiPolygon, Polygon, Rect,
};

use crate::error::{CodedError, ErrorCode};

/// Whether an edge runs along the antimeridian itself (both ends at ±180), which is no
/// crossing however its ends are spelled.
fn on_antimeridian(a: geo::Coord<f64>, b: geo::Coord<f64>) -> bool {
    a.x.abs() == 180.0 && b.x.abs() == 180.0
}

/// Whether a ring has an edge spanning more than 180° of longitude (not along ±180).
fn crosses(polygon: &Polygon<f64>) -> bool {
    polygon
        .exterior()
        .0
        .windows(2)
        .any(|edge| (edge[1].x - edge[0].x).abs() > 180.0 && !on_antimeridian(edge[0], edge[1]))
}

/// A ring's longitudes made continuous: each step goes the shorter way (edges along ±180
/// keep their spelling), the first point moved by whole turns to lie within `near` if given.
/// `None` if the ring goes round the globe (it circles a pole): no split makes sense of it.
fn unwrap_ring(ring: &LineString<f64>, near: Option<(f64, f64)>) -> Option<LineString<f64>> {
    let mut coords: Vec<geo::Coord<f64>> = Vec::with_capacity(ring.0.len());
    for (index, coord) in ring.0.iter().enumerate() {
        let x = match coords.last() {
            None => {
                let mut x = coord.x;
                if let Some((low, high)) = near {
                    if x < low {
                        x += 360.0;
                    } else if x > high {
                        x -= 360.0;
                    }
                }
                x
            }
            Some(previous) => {
                let original = ring.0[index - 1];
                let mut step = coord.x - original.x;
                if on_antimeridian(original, *coord) {
                    step = 0.0;
                } else if step > 180.0 {
                    step -= 360.0;
                } else if step < -180.0 {
                    step += 360.0;
                }
                previous.x + step
            }
        };
        coords.push(geo::coord! { x: x, y: coord.y });
    }
    let (first, last) = (coords.first()?, coords.last()?);
    ((first.x - last.x).abs() < 1e-9).then_some(LineString(coords))
}

/// `polygon`, split at the antimeridian if it crosses it.
pub fn wrap_polygon(polygon: Polygon<f64>) -> Result<MultiPolygon<f64>, CodedError> {
    if !crosses(&polygon) {
        return Ok(MultiPolygon(vec![polygon]));
    }
    let Some(exterior) = unwrap_ring(polygon.exterior(), None) else {
        return Ok(MultiPolygon(vec![polygon]));
    };
    let span = exterior
        .0
        .iter()
        .fold((f64::MAX, f64::MIN), |(low, high), c| {
            (low.min(c.x), high.max(c.x))
        });
    let mut interiors = Vec::with_capacity(polygon.interiors().len());
    for ring in polygon.interiors() {
        match unwrap_ring(ring, Some(span)) {
            Some(ring) => interiors.push(ring),
            None => return Ok(MultiPolygon(vec![polygon])),
        }
    }
    let unwrapped = Polygon::new(exterior, interiors);
    let split = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // The parts in each turn of the globe, moved back into [-180, 180].
        let mut parts = Vec::new();
        for turn in [-1.0f64, 0.0, 1.0] {
            let offset = turn * 360.0;
            let window = Rect::new(
                geo::coord! { x: -180.0 + offset, y: -90.0 },
                geo::coord! { x: 180.0 + offset, y: 90.0 },
            )
            .to_polygon();
            parts.extend(
                unwrapped
                    .intersection(&window)
                    .map_coords(|c| geo::coord! { x: c.x - offset, y: c.y })
                    .0,
            );
        }
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
        // A polygon spanning every longitude, its edge along the bottom spelled 180 to -180,
        // is no crossing: it is kept whole.
        let cap: Polygon<f64> = Polygon::new(
            vec![
                (-180.0, -90.0),
                (-180.0, -60.0),
                (-90.0, -65.0),
                (90.0, -65.0),
                (180.0, -60.0),
                (180.0, -90.0),
                (-180.0, -90.0),
            ]
            .into(),
            vec![],
        );
        let kept = wrap_polygon(cap).unwrap();
        assert!(kept.contains(&Point::new(0.0, -80.0)));
        // A band crossing 0 and 180 whose edges are all shorter than 180 degrees.
        let wide: Polygon<f64> = Polygon::new(
            vec![
                (-10.0, 0.0),
                (90.0, 0.0),
                (-170.0, 0.0),
                (-170.0, 5.0),
                (90.0, 5.0),
                (-10.0, 5.0),
                (-10.0, 0.0),
            ]
            .into(),
            vec![],
        );
        let wrapped = wrap_polygon(wide).unwrap();
        assert!(wrapped.contains(&Point::new(0.0, 2.0)));
        assert!(wrapped.contains(&Point::new(179.0, 2.0)));
        assert!(wrapped.contains(&Point::new(-175.0, 2.0)));
        assert!(!wrapped.contains(&Point::new(-100.0, 2.0)));
    }
}
