//! Geo predicates as index queries: `within(point, 'POLYGON(..)')`, `intersects(point,
//! shape)` and `distance(point, ..)` below a radius become ranges over the fast values of the
//! point's `lon` and `lat` keys (its bounding box, `creek_common::geo`); `intersects` and
//! `within` of a `geo_shape` become ranges over the four numbers of each stored shape's box. A box holds more than the area, so these queries
//! match a superset; the exact predicate runs above the scan, as for every pushed filter.

use std::ops::Bound;

use creek_common::geo::{
    area_bounds, distance_bounds, parse_area, parse_point, parse_shape, point_shape,
    points_from_array, shape_bounds, GeoBounds, GeoPoint, DISTANCE_FUNCTION,
};
use creek_common::types::ColumnType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr, Operator};
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery};
use tantivy::Term;

use super::{append_f64, Layout};
use crate::shard::document::{
    GEO_LAT_KEY, GEO_LON_KEY, SHAPE_MAX_LAT_KEY, SHAPE_MAX_LON_KEY, SHAPE_MIN_LAT_KEY,
    SHAPE_MIN_LON_KEY,
};

/// The arguments of `distance(..)`, if `expr` is a call of it.
pub(super) fn distance_call(expr: &Expr) -> Option<&[Expr]> {
    match expr {
        Expr::ScalarFunction(function) if function.func.name() == DISTANCE_FUNCTION => {
            Some(&function.args)
        }
        _ => None,
    }
}

/// `distance(column, point) < radius` (or `<=`, or either side swapped): the box around the
/// point. A lower bound on the distance (`>`) is no box and matches everything.
pub(super) fn distance_query(
    layout: Layout<'_>,
    left: &Expr,
    op: Operator,
    right: &Expr,
) -> Option<Box<dyn Query>> {
    let (args, op, radius) = match (distance_call(left), distance_call(right)) {
        (Some(args), None) => (args, op, right),
        (None, Some(args)) => (args, op.swap()?, left),
        _ => return None,
    };
    if !matches!(op, Operator::Lt | Operator::LtEq) {
        return None;
    }
    let Expr::Literal(radius, _) = radius else {
        return None;
    };
    let ScalarValue::Float64(Some(radius)) = radius.cast_to(&arrow_f64()).ok()? else {
        return None;
    };
    let (column, center) = match args {
        [Expr::Column(column), Expr::Literal(center, _)]
        | [Expr::Literal(center, _), Expr::Column(column)] => (column, center),
        _ => return None,
    };
    let center = literal_point(center)?;
    bounds_query(layout, &column.name, distance_bounds(center, radius)?)
}

/// `within(column, 'POLYGON(..)')`: a point column's points in the polygon's box; a shape
/// column's shapes whose box lies in the area's box.
pub(super) fn within_query(layout: Layout<'_>, args: &[Expr]) -> Option<Box<dyn Query>> {
    let [Expr::Column(column), Expr::Literal(area, _)] = args else {
        return None;
    };
    if let (ColumnType::GeoShape, _) = layout.column(&column.name)? {
        let area = parse_shape(literal_text(area)?).ok()?;
        return shape_box_query(layout, &column.name, shape_bounds(&area)?, Relation::Within);
    }
    let area = parse_area(literal_text(area)?).ok()?;
    bounds_query(layout, &column.name, area_bounds(&area)?)
}

/// `intersects(column, shape)` (either order): a point column's points in the shape's box; a
/// shape column's shapes whose box overlaps it.
pub(super) fn intersects_query(layout: Layout<'_>, args: &[Expr]) -> Option<Box<dyn Query>> {
    let (column, shape) = match args {
        [Expr::Column(column), Expr::Literal(shape, _)]
        | [Expr::Literal(shape, _), Expr::Column(column)] => (column, shape),
        _ => return None,
    };
    let shape = match literal_text(shape) {
        Some(text) => parse_shape(text).ok()?,
        None => point_shape(literal_point(shape)?),
    };
    let bounds = shape_bounds(&shape)?;
    match layout.column(&column.name)? {
        (ColumnType::GeoShape, _) => {
            shape_box_query(layout, &column.name, bounds, Relation::Intersects)
        }
        _ => bounds_query(layout, &column.name, bounds),
    }
}

/// How a stored shape's box must relate to a query's box.
#[derive(Clone, Copy, PartialEq)]
enum Relation {
    /// Overlap it.
    Intersects,
    /// Lie inside it.
    Within,
}

/// The shapes of `column` (a `geo_shape`) whose box relates so to `bounds`: half-bounded or
/// bounded ranges over the four numbers of each stored box.
fn shape_box_query(
    layout: Layout<'_>,
    column: &str,
    bounds: GeoBounds,
    relation: Relation,
) -> Option<Box<dyn Query>> {
    let (ColumnType::GeoShape, location) = layout.column(column)? else {
        return None;
    };
    if !location.json {
        return None;
    }
    let term = |key: &str, value: f64| {
        let mut term =
            Term::from_field_json_path(location.field, &format!("{column}.{key}"), false);
        append_f64(&mut term, value, false)?;
        Some(term)
    };
    let at_least = |key: &str, value: f64| -> Option<Box<dyn Query>> {
        Some(Box::new(RangeQuery::new(
            Bound::Included(term(key, value)?),
            Bound::Included(term(key, f64::MAX)?),
        )))
    };
    let at_most = |key: &str, value: f64| -> Option<Box<dyn Query>> {
        Some(Box::new(RangeQuery::new(
            Bound::Included(term(key, f64::MIN)?),
            Bound::Included(term(key, value)?),
        )))
    };
    let (min_lat, max_lat) = bounds.lat;
    let mut clauses = Vec::new();
    match relation {
        Relation::Intersects => {
            clauses.push(at_most(SHAPE_MIN_LAT_KEY, max_lat)?);
            clauses.push(at_least(SHAPE_MAX_LAT_KEY, min_lat)?);
            if let Some((min_lon, max_lon)) = bounds.lon {
                clauses.push(at_most(SHAPE_MIN_LON_KEY, max_lon)?);
                clauses.push(at_least(SHAPE_MAX_LON_KEY, min_lon)?);
            }
        }
        Relation::Within => {
            clauses.push(at_least(SHAPE_MIN_LAT_KEY, min_lat)?);
            clauses.push(at_most(SHAPE_MAX_LAT_KEY, max_lat)?);
            if let Some((min_lon, max_lon)) = bounds.lon {
                clauses.push(at_least(SHAPE_MIN_LON_KEY, min_lon)?);
                clauses.push(at_most(SHAPE_MAX_LON_KEY, max_lon)?);
            }
        }
    }
    Some(Box::new(BooleanQuery::new(
        clauses.into_iter().map(|q| (Occur::Must, q)).collect(),
    )))
}

/// A point literal: text, or a point or `[lon, lat]` value (a bound parameter).
fn literal_point(value: &ScalarValue) -> Option<GeoPoint> {
    if let Some(text) = literal_text(value) {
        return parse_point(text).ok();
    }
    points_from_array(&value.to_array().ok()?)
        .ok()?
        .pop()
        .flatten()
}

fn arrow_f64() -> datafusion::arrow::datatypes::DataType {
    datafusion::arrow::datatypes::DataType::Float64
}

fn literal_text(value: &ScalarValue) -> Option<&str> {
    match value {
        ScalarValue::Utf8(Some(text))
        | ScalarValue::Utf8View(Some(text))
        | ScalarValue::LargeUtf8(Some(text)) => Some(text),
        _ => None,
    }
}

/// The points of `column` (a `geo_point`) inside `bounds`.
fn bounds_query(layout: Layout<'_>, column: &str, bounds: GeoBounds) -> Option<Box<dyn Query>> {
    let (ColumnType::GeoPoint, location) = layout.column(column)? else {
        return None;
    };
    if !location.json {
        return None;
    }
    let range = |key: &str, (from, to): (f64, f64)| -> Option<Box<dyn Query>> {
        let bound = |value: f64| {
            let mut term =
                Term::from_field_json_path(location.field, &format!("{column}.{key}"), false);
            append_f64(&mut term, value, false)?;
            Some(Bound::Included(term))
        };
        Some(Box::new(RangeQuery::new(bound(from)?, bound(to)?)))
    };
    let mut clauses = vec![(Occur::Must, range(GEO_LAT_KEY, bounds.lat)?)];
    if let Some(lon) = bounds.lon {
        clauses.push((Occur::Must, range(GEO_LON_KEY, lon)?));
    }
    Some(Box::new(BooleanQuery::new(clauses)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use creek_common::geo::{points_from_array, points_to_array, GeoPoint};
    use creek_common::schema::{ColumnDef, ColumnIndex, TableSchema, ID_COLUMN};
    use creek_common::types::ColumnType;
    use creek_common::{ShardId, TableId};
    use creek_proto::v1::WriteMode;
    use datafusion::arrow::array::{ArrayRef, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema as ArrowSchema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::logical_expr::{Expr, ScalarUDF};
    use datafusion::prelude::{col, lit};
    use tantivy::collector::Count;

    use super::super::{query_for_filters, Layout};
    use crate::scan::columns::ColumnSpec;
    use crate::shard::copy::CopyRole;
    use crate::shard::Shard;

    fn table() -> Arc<TableSchema> {
        Arc::new(TableSchema {
            id: TableId(1),
            schema_name: "doc".into(),
            name: "places".into(),
            columns: vec![
                ColumnDef {
                    name: "name".into(),
                    column_type: ColumnType::Text { max_len: None },
                    not_null: false,
                    default_expr: None,
                    generated: None,
                    index: ColumnIndex::Plain,
                },
                ColumnDef {
                    name: "p".into(),
                    column_type: ColumnType::GeoPoint,
                    not_null: false,
                    default_expr: None,
                    generated: None,
                    index: ColumnIndex::Plain,
                },
            ],
            primary_key: vec!["name".into()],
            clustered_by: None,
            num_shards: 1,
            settings: Default::default(),
            indexes: Vec::new(),
            fulltext: Vec::new(),
            partitioned_by: Vec::new(),
            partitions: Vec::new(),
            version: 1,
        })
    }

    const PLACES: [(&str, Option<(f64, f64)>); 7] = [
        ("berlin", Some((13.4, 52.5))),
        ("paris", Some((2.35, 48.86))),
        ("london", Some((-0.13, 51.5))),
        ("east", Some((179.95, 0.0))),
        ("west", Some((-179.95, 0.0))),
        // Integral numbers: a JSON field stores them as integers.
        ("whole", Some((10.0, 10.0))),
        ("nowhere", None),
    ];

    /// A new shard of `table` in `dir`, primary under term 1.
    fn primary_shard(dir: &tempfile::TempDir, table: Arc<TableSchema>) -> Shard {
        let id = ShardId {
            table: TableId(1),
            shard: 0,
        };
        let shard = Shard::open(id, dir.path(), table).unwrap();
        shard.set_role(CopyRole {
            allocation_id: "p".into(),
            primary: true,
            primary_term: 1,
            peers: Vec::new(),
        });
        shard
    }

    fn function(name: &str) -> Arc<ScalarUDF> {
        let function = creek_common::geo::functions()
            .into_iter()
            .find(|f| f.name() == name)
            .unwrap();
        Arc::new(function)
    }

    fn distance_to(point: &str) -> Expr {
        function("distance").call(vec![col("p"), lit(point)])
    }

    #[test]
    fn boxes_of_locations_select_points_from_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let shard = primary_shard(&dir, table());
        let names: Vec<&str> = PLACES.iter().map(|(name, _)| *name).collect();
        let points: Vec<Option<GeoPoint>> = PLACES
            .iter()
            .map(|(_, p)| p.map(|(lon, lat)| GeoPoint::new(lon, lat).unwrap()))
            .collect();
        let point_array: ArrayRef = Arc::new(points_to_array(&points));
        let batch = RecordBatch::try_new(
            Arc::new(ArrowSchema::new(vec![
                Field::new(
                    ID_COLUMN,
                    datafusion::arrow::datatypes::DataType::Utf8,
                    false,
                ),
                Field::new("name", datafusion::arrow::datatypes::DataType::Utf8, true),
                Field::new("p", point_array.data_type().clone(), true),
            ])),
            vec![
                Arc::new(StringArray::from(names.clone())),
                Arc::new(StringArray::from(names.clone())),
                point_array,
            ],
        )
        .unwrap();
        let rows = creek_proto::ipc::batch_to_ipc(&batch).unwrap();
        shard
            .write(WriteMode::Insert, &rows, &[], &[], "op-1")
            .unwrap();
        shard.refresh().unwrap();
        let searcher = shard.searcher();
        let table = table();
        let layout = Layout {
            table: &table,
            schema: shard.schema(),
            fields: shard.fields(),
        };
        let count = |filter: Expr| {
            let query = query_for_filters(layout, &[filter]).expect("translated");
            searcher.search(&*query, &Count).unwrap()
        };
        let within = function("within");
        assert_eq!(
            count(within.call(vec![
                col("p"),
                lit("POLYGON((0 45, 15 45, 15 55, 0 55, 0 45))")
            ])),
            2
        );
        assert_eq!(count(distance_to("POINT(13.4 52.5)").lt(lit(1000.0))), 1);
        assert_eq!(count(lit(1000.0).gt(distance_to("POINT(13.4 52.5)"))), 1);
        assert_eq!(count(distance_to("[10, 10]").lt_eq(lit(0.0))), 1);
        // A bound point parameter arrives as a point value, not text.
        let berlin =
            datafusion::common::ScalarValue::FixedSizeList(Arc::new(points_to_array(&[Some(
                GeoPoint::new(13.4, 52.5).unwrap(),
            )])));
        let by_value = function("distance").call(vec![col("p"), lit(berlin)]);
        assert_eq!(count(by_value.lt(lit(1000.0))), 1);
        // Around the antimeridian the box spans every longitude: both sides are kept.
        assert_eq!(count(distance_to("POINT(180 0)").lt(lit(20_000.0))), 2);
        assert_eq!(count(col("p").is_not_null()), 6);
        assert_eq!(count(col("p").is_null()), 1);
        // A lower bound on the distance is no box: nothing to translate.
        assert!(query_for_filters(layout, &[distance_to("POINT(0 0)").gt(lit(1.0))]).is_none());

        let spec = crate::codec::column_spec(&table, "p").unwrap();
        assert!(matches!(spec, ColumnSpec::Table { .. }));
        let schema = Arc::new(ArrowSchema::new(vec![Field::new(
            "p",
            creek_common::geo::point_type(),
            true,
        )]));
        let ids: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let read = crate::scan::lookup_ids(&shard, &[spec], &ids, schema).unwrap();
        assert_eq!(points_from_array(read.column(0)).unwrap(), points);
    }

    #[test]
    fn boxes_of_shapes_select_shapes_from_the_index() {
        let mut table = table().as_ref().clone();
        table.columns[1].name = "s".into();
        table.columns[1].column_type = ColumnType::GeoShape;
        let table = Arc::new(table);
        let dir = tempfile::tempdir().unwrap();
        let shard = primary_shard(&dir, table.clone());
        let shapes = [
            ("square", Some("POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0))")),
            ("small", Some("POLYGON ((2 2, 4 2, 4 4, 2 4, 2 2))")),
            ("road", Some("LINESTRING (5 -5, 5 15)")),
            ("far", Some("POINT (50 50)")),
            ("none", None),
        ];
        let names: Vec<&str> = shapes.iter().map(|(name, _)| *name).collect();
        let texts: Vec<Option<String>> = shapes
            .iter()
            .map(|(_, s)| s.map(|s| creek_common::geo::canonical_shape(s).unwrap()))
            .collect();
        let utf8 = datafusion::arrow::datatypes::DataType::Utf8;
        let batch = RecordBatch::try_new(
            Arc::new(ArrowSchema::new(vec![
                Field::new(ID_COLUMN, utf8.clone(), false),
                Field::new("name", utf8.clone(), true),
                Field::new("s", utf8.clone(), true),
            ])),
            vec![
                Arc::new(StringArray::from(names.clone())),
                Arc::new(StringArray::from(names.clone())),
                Arc::new(StringArray::from(texts.clone())),
            ],
        )
        .unwrap();
        let rows = creek_proto::ipc::batch_to_ipc(&batch).unwrap();
        shard
            .write(WriteMode::Insert, &rows, &[], &[], "op-1")
            .unwrap();
        shard.refresh().unwrap();
        let searcher = shard.searcher();
        let layout = Layout {
            table: &table,
            schema: shard.schema(),
            fields: shard.fields(),
        };
        let count = |filter: Expr| {
            let query = query_for_filters(layout, &[filter]).expect("translated");
            searcher.search(&*query, &Count).unwrap()
        };
        let intersects = function("intersects");
        let within = function("within");
        // Boxes that overlap the literal's box: the square, the small one and the road.
        let middle = "POLYGON ((3 3, 6 3, 6 6, 3 6, 3 3))";
        assert_eq!(count(intersects.call(vec![col("s"), lit(middle)])), 3);
        assert_eq!(count(intersects.call(vec![lit(middle), col("s")])), 3);
        assert_eq!(
            count(intersects.call(vec![col("s"), lit("POINT (10 5)")])),
            1
        );
        // Boxes inside the literal's box: the square and the small one.
        let square = "POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0))";
        assert_eq!(count(within.call(vec![col("s"), lit(square)])), 2);
        assert_eq!(count(col("s").is_not_null()), 4);
        assert_eq!(count(col("s").is_null()), 1);
        // Equality has no term (shapes are stored as boxes): nothing is translated.
        assert!(query_for_filters(layout, &[col("s").eq(lit(square))]).is_none());

        let spec = crate::codec::column_spec(&table, "s").unwrap();
        let schema = Arc::new(ArrowSchema::new(vec![Field::new("s", utf8, true)]));
        let ids: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let read = crate::scan::lookup_ids(&shard, &[spec], &ids, schema).unwrap();
        let read: Vec<Option<String>> = read
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .iter()
            .map(|v| v.map(String::from))
            .collect();
        assert_eq!(read, texts);
    }
}
