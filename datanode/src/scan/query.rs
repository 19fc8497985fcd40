//! Translates pushed-down DataFusion filter expressions into tantivy queries over a shard.
//!
//! Every translation must match a superset of the rows the expression accepts: the coordinator
//! marks these filters inexact, so DataFusion re-applies them above the scan. An expression this
//! module cannot translate becomes "match all" rather than an error.

use std::ops::Bound;

use creek_common::schema::{TableSchema, ID_COLUMN, MAX_TERM_BYTES};
use creek_common::types::ColumnType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use tantivy::columnar::NumericalValue;
use tantivy::query::{
    AllQuery, BooleanQuery, ExistsQuery, Occur, Query, RangeQuery, TermQuery, TermSetQuery,
};
use tantivy::schema::IndexRecordOption;
use tantivy::Term;

use tantivy::schema::Schema;

use crate::shard::document::{
    locate_column, ColumnLocation, ShardFields, EXACT_ARRAY_PREFIX, GEO_LON_KEY, SHAPE_MIN_LON_KEY,
};
use creek_common::geo::{INTERSECTS_FUNCTION, WITHIN_FUNCTION};

mod geo;

/// Where the index keeps the columns of one table.
#[derive(Clone, Copy)]
pub struct Layout<'a> {
    pub table: &'a TableSchema,
    pub schema: &'a Schema,
    pub fields: ShardFields,
}

impl Layout<'_> {
    /// A column, or an object's sub-column named by its path (`o.a.b`, see
    /// [`sub_column_paths`]): its type and where its values are.
    pub(super) fn column(&self, name: &str) -> Option<(&ColumnType, ColumnLocation)> {
        let Some((column_name, keys)) = name.split_once('.') else {
            let column = self.table.column(name)?;
            let location = locate_column(self.schema, column).ok()?;
            return Some((&column.column_type, location));
        };
        // Sub-columns are keys of the object's JSON field, typed as columns are.
        let column = self.table.column(column_name)?;
        if !matches!(column.column_type, ColumnType::Object { .. }) {
            return None;
        }
        let keys: Vec<&str> = keys.split('.').collect();
        let column_type = creek_common::object::sub_column_type(&column.column_type, &keys)?;
        if matches!(column_type, ColumnType::Object { .. }) {
            return None;
        }
        let mut location = locate_column(self.schema, column).ok()?;
        if !location.json {
            return None;
        }
        let json_name = self.schema.get_field_name(location.field);
        location.fast_name = format!("{json_name}.{name}");
        Some((column_type, location))
    }
}

/// `get_field(o, 'a', ...)` (an object's sub-column, `o['a']`) as the column `o.a`, the JSON
/// path its values are indexed under; sub-column names never hold a dot, column names never.
fn sub_column_paths(expr: &Expr) -> Expr {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    expr.clone()
        .transform_up(|e| {
            let Expr::ScalarFunction(function) = &e else {
                return Ok(Transformed::no(e));
            };
            if function.func.name() != "get_field" {
                return Ok(Transformed::no(e));
            }
            let Some((Expr::Column(base), keys)) = function.args.split_first() else {
                return Ok(Transformed::no(e));
            };
            let mut path = base.name.clone();
            for key in keys {
                let Expr::Literal(ScalarValue::Utf8(Some(key)), _) = key else {
                    return Ok(Transformed::no(e));
                };
                path.push('.');
                path.push_str(key);
            }
            Ok(Transformed::yes(Expr::Column(
                datafusion::common::Column::from_name(path),
            )))
        })
        .map(|t| t.data)
        .unwrap_or_else(|_| expr.clone())
}

/// Builds one query that is the conjunction of `filters`; `None` means "every document".
pub fn query_for_filters(layout: Layout<'_>, filters: &[Expr]) -> Option<Box<dyn Query>> {
    let clauses: Vec<(Occur, Box<dyn Query>)> = filters
        .iter()
        .filter_map(|filter| translate(layout, &sub_column_paths(filter)))
        .map(|query| (Occur::Must, query))
        .collect();
    match clauses.len() {
        0 => None,
        1 => clauses.into_iter().next().map(|(_, q)| q),
        _ => Some(Box::new(BooleanQuery::new(clauses))),
    }
}

fn translate(layout: Layout<'_>, expr: &Expr) -> Option<Box<dyn Query>> {
    let table = layout.table;
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And => {
                let l = translate(layout, left);
                let r = translate(layout, right);
                match (l, r) {
                    (Some(l), Some(r)) => Some(Box::new(BooleanQuery::new(vec![
                        (Occur::Must, l),
                        (Occur::Must, r),
                    ]))),
                    (Some(q), None) | (None, Some(q)) => Some(q),
                    (None, None) => None,
                }
            }
            Operator::Or => {
                let l = translate(layout, left)?;
                let r = translate(layout, right)?;
                Some(Box::new(BooleanQuery::new(vec![
                    (Occur::Should, l),
                    (Occur::Should, r),
                ])))
            }
            Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq
                if geo::distance_call(left).is_some() || geo::distance_call(right).is_some() =>
            {
                geo::distance_query(layout, left, *op, right)
            }
            Operator::Eq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => {
                let (column, value, op) = match (left.as_ref(), right.as_ref()) {
                    (Expr::Column(c), Expr::Literal(v, _)) => (c.name.as_str(), v, *op),
                    (Expr::Literal(v, _), Expr::Column(c)) => (c.name.as_str(), v, op.swap()?),
                    _ => return None,
                };
                if op == Operator::Eq {
                    if !is_indexed(layout, column) || is_float_zero(layout, column, value) {
                        // Columnar only: the range [v, v] reads the column's values. (Zero
                        // is -0.0 and 0.0, two terms: a range holds both.)
                        if !supports_range(layout, column) {
                            return None;
                        }
                        return Some(Box::new(RangeQuery::new(
                            Bound::Included(term_for(
                                layout,
                                column,
                                value,
                                Bound::Included(Side::Lower),
                            )?),
                            Bound::Included(term_for(
                                layout,
                                column,
                                value,
                                Bound::Included(Side::Upper),
                            )?),
                        )));
                    }
                    let term = term_for(layout, column, value, Bound::Unbounded)?;
                    return Some(Box::new(TermQuery::new(term, IndexRecordOption::Basic)));
                }
                if !supports_range(layout, column) {
                    return None;
                }
                let zero = is_float_zero(layout, column, value);
                let bound = |bound: Bound<Side>| -> Option<Bound<Term>> {
                    Some(match bound {
                        // An excluded zero would exclude the other zero too, which SQL (total
                        // order: -0.0 < 0.0) may keep: include it and let the filter above
                        // decide.
                        Bound::Excluded(side) if zero => {
                            Bound::Included(term_for(layout, column, value, Bound::Included(side))?)
                        }
                        Bound::Included(side) => {
                            Bound::Included(term_for(layout, column, value, Bound::Included(side))?)
                        }
                        Bound::Excluded(side) => {
                            Bound::Excluded(term_for(layout, column, value, Bound::Excluded(side))?)
                        }
                        Bound::Unbounded => Bound::Unbounded,
                    })
                };
                let (lower, upper) = match op {
                    Operator::Lt => (Bound::Unbounded, bound(Bound::Excluded(Side::Upper))?),
                    Operator::LtEq => (Bound::Unbounded, bound(Bound::Included(Side::Upper))?),
                    Operator::Gt => (bound(Bound::Excluded(Side::Lower))?, Bound::Unbounded),
                    _ => (bound(Bound::Included(Side::Lower))?, Bound::Unbounded),
                };
                Some(Box::new(RangeQuery::new(lower, upper)))
            }
            _ => None,
        },
        Expr::Between(between) if !between.negated => {
            let Expr::Column(column) = between.expr.as_ref() else {
                return None;
            };
            let (Expr::Literal(low, _), Expr::Literal(high, _)) =
                (between.low.as_ref(), between.high.as_ref())
            else {
                return None;
            };
            if !supports_range(layout, &column.name) {
                return None;
            }
            let low = term_for(layout, &column.name, low, Bound::Included(Side::Lower))?;
            let high = term_for(layout, &column.name, high, Bound::Included(Side::Upper))?;
            Some(Box::new(RangeQuery::new(
                Bound::Included(low),
                Bound::Included(high),
            )))
        }
        Expr::InList(in_list) if !in_list.negated => {
            let Expr::Column(column) = in_list.expr.as_ref() else {
                return None;
            };
            if !is_indexed(layout, &column.name) {
                return None;
            }
            let mut terms = Vec::with_capacity(in_list.list.len());
            for item in &in_list.list {
                let Expr::Literal(value, _) = item else {
                    return None;
                };
                if value.is_null() {
                    continue;
                }
                terms.push(term_for(layout, &column.name, value, Bound::Unbounded)?);
            }
            Some(Box::new(TermSetQuery::new(terms)))
        }
        Expr::Like(like) => {
            let (column, prefix) = like_prefix(like)?;
            if !matches!(
                table.column(column).map(|c| &c.column_type),
                Some(ColumnType::Text { .. })
            ) {
                return None;
            }
            let text = |value: String| ScalarValue::Utf8(Some(value));
            let lower = term_for(
                layout,
                column,
                &text(prefix.clone()),
                Bound::Included(Side::Lower),
            )?;
            // Every string starting with the prefix sorts below the prefix with its last
            // character incremented (code point order is UTF-8 byte order).
            let mut chars: Vec<char> = prefix.chars().collect();
            let last = chars.pop()?;
            let upper = (u32::from(last) + 1..=0x10FFFF)
                .find_map(char::from_u32)
                .map(|next| {
                    chars.push(next);
                    chars.into_iter().collect::<String>()
                });
            let upper = match upper {
                Some(upper) => Bound::Excluded(term_for(
                    layout,
                    column,
                    &text(upper),
                    Bound::Excluded(Side::Upper),
                )?),
                None => Bound::Unbounded,
            };
            Some(Box::new(RangeQuery::new(Bound::Included(lower), upper)))
        }
        Expr::ScalarFunction(function) if function.func.name() == WITHIN_FUNCTION => {
            geo::within_query(layout, &function.args)
        }
        Expr::ScalarFunction(function) if function.func.name() == INTERSECTS_FUNCTION => {
            geo::intersects_query(layout, &function.args)
        }
        Expr::IsNotNull(inner) => {
            let Expr::Column(column) = inner.as_ref() else {
                return None;
            };
            Some(exists_query(layout, &column.name)?)
        }
        Expr::IsNull(inner) => {
            let Expr::Column(column) = inner.as_ref() else {
                return None;
            };
            let exists = exists_query(layout, &column.name)?;
            Some(Box::new(BooleanQuery::new(vec![
                (Occur::Must, Box::new(AllQuery) as Box<dyn Query>),
                (Occur::MustNot, exists),
            ])))
        }
        _ => None,
    }
}

/// `column LIKE 'prefix%...'` (case-sensitive, not negated, no escapes in the prefix): the
/// column and the literal text before the first wildcard, if not empty.
pub fn like_prefix(like: &datafusion::logical_expr::expr::Like) -> Option<(&str, String)> {
    if like.negated || like.case_insensitive || like.escape_char.is_some() {
        return None;
    }
    let Expr::Column(column) = like.expr.as_ref() else {
        return None;
    };
    let Expr::Literal(ScalarValue::Utf8(Some(pattern)) | ScalarValue::Utf8View(Some(pattern)), _) =
        like.pattern.as_ref()
    else {
        return None;
    };
    let end = pattern.find(['%', '_']).unwrap_or(pattern.len());
    let prefix = &pattern[..end];
    if prefix.is_empty() || prefix.contains('\\') {
        return None;
    }
    Some((column.name.as_str(), prefix.to_string()))
}

/// Documents where `column` is not NULL. An empty array, or one of NULLs only, has no element
/// values, so arrays also count as present when their exact form is.
fn exists_query(layout: Layout<'_>, column: &str) -> Option<Box<dyn Query>> {
    let (column_type, location) = layout.column(column)?;
    if let ColumnType::GeoPoint = column_type {
        // Every stored point has both numbers: its longitude's presence is the point's.
        return Some(Box::new(ExistsQuery::new(
            format!("{}.{GEO_LON_KEY}", location.fast_name),
            false,
        )));
    }
    if let ColumnType::GeoShape = column_type {
        // Likewise every stored shape has its box.
        return Some(Box::new(ExistsQuery::new(
            format!("{}.{SHAPE_MIN_LON_KEY}", location.fast_name),
            false,
        )));
    }
    let values: Box<dyn Query> = Box::new(ExistsQuery::new(location.fast_name.clone(), false));
    if !matches!(column_type, ColumnType::Array(_)) {
        return Some(values);
    }
    if column.contains('.') {
        // An array in an object has no exact form of its own: an empty one has no values.
        return None;
    }
    let json_name = layout.schema.get_field_name(location.field);
    let exact: Box<dyn Query> = Box::new(ExistsQuery::new(
        format!("{json_name}.{EXACT_ARRAY_PREFIX}{column}"),
        false,
    ));
    Some(Box::new(BooleanQuery::new(vec![
        (Occur::Should, values),
        (Occur::Should, exact),
    ])))
}

/// Whether `column`'s values are terms of the inverted index (`_id` always is).
fn is_indexed(layout: Layout<'_>, column: &str) -> bool {
    column == ID_COLUMN || layout.column(column).is_some_and(|(_, l)| l.indexed)
}

fn supports_range(layout: Layout<'_>, column: &str) -> bool {
    matches!(
        layout.column(column).map(|(column_type, _)| column_type),
        Some(
            ColumnType::SmallInt
                | ColumnType::Integer
                | ColumnType::BigInt
                | ColumnType::Real
                | ColumnType::Double
                | ColumnType::Timestamp
                | ColumnType::TimestampTz
                | ColumnType::Date
                | ColumnType::Text { .. }
        )
    )
}

/// Which end of a range a term bounds.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Lower,
    Upper,
}

/// Builds the index term of `value` in `column`, encoded exactly as `shard::document` indexes
/// it: for an equality term (`bound` unbounded) or for the given end of a range.
fn term_for(
    layout: Layout<'_>,
    column: &str,
    value: &ScalarValue,
    bound: Bound<Side>,
) -> Option<Term> {
    // The index holds no longer term (tantivy drops it): such a value is found by the
    // filter above the scan, never by a term that matches nothing.
    if value
        .try_as_str()
        .flatten()
        .is_some_and(|text| text.len() > MAX_TERM_BYTES)
    {
        return None;
    }
    if column == ID_COLUMN {
        return match value {
            ScalarValue::Utf8(Some(text)) => Some(Term::from_field_text(layout.fields.id, text)),
            _ => None,
        };
    }
    let (column_type, location) = layout.column(column)?;
    if matches!(column_type, ColumnType::GeoPoint | ColumnType::GeoShape) {
        // Stored as objects of numbers: no term is the value (the filter runs above).
        return None;
    }
    let target = column_type.arrow_type();
    let value = if value.data_type() == target {
        value.clone()
    } else {
        value.cast_to(&target).ok()?
    };
    let value = signed_zero(value, bound);
    let for_range = !matches!(bound, Bound::Unbounded);
    if !location.json {
        let field = location.field;
        return match value {
            ScalarValue::Boolean(Some(v)) => Some(Term::from_field_bool(field, v)),
            ScalarValue::Int16(Some(v)) => Some(Term::from_field_i64(field, i64::from(v))),
            ScalarValue::Int32(Some(v)) => Some(Term::from_field_i64(field, i64::from(v))),
            ScalarValue::Int64(Some(v)) => Some(Term::from_field_i64(field, v)),
            ScalarValue::Date32(Some(v)) => Some(Term::from_field_i64(field, i64::from(v))),
            ScalarValue::TimestampMicrosecond(Some(v), _) => Some(Term::from_field_i64(field, v)),
            ScalarValue::Float32(Some(v)) if v.is_finite() => {
                Some(Term::from_field_f64(field, f64::from(v)))
            }
            ScalarValue::Float64(Some(v)) if v.is_finite() => Some(Term::from_field_f64(field, v)),
            ScalarValue::Utf8(Some(text)) => Some(Term::from_field_text(field, &text)),
            ScalarValue::Decimal128(Some(v), _, _) => {
                Some(Term::from_field_text(field, &v.to_string()))
            }
            _ => None,
        };
    }
    let mut term = Term::from_field_json_path(location.field, column, false);
    match value {
        ScalarValue::Boolean(Some(v)) => term.append_type_and_fast_value(v),
        ScalarValue::Int16(Some(v)) => term.append_type_and_fast_value(i64::from(v)),
        ScalarValue::Int32(Some(v)) => term.append_type_and_fast_value(i64::from(v)),
        ScalarValue::Int64(Some(v)) => term.append_type_and_fast_value(v),
        ScalarValue::Date32(Some(v)) => term.append_type_and_fast_value(i64::from(v)),
        ScalarValue::TimestampMicrosecond(Some(v), _) => term.append_type_and_fast_value(v),
        ScalarValue::Float32(Some(v)) => append_f64(&mut term, f64::from(v), !for_range)?,
        ScalarValue::Float64(Some(v)) => append_f64(&mut term, v, !for_range)?,
        ScalarValue::Utf8(Some(text)) => term.append_type_and_str(&text),
        ScalarValue::Decimal128(Some(v), _, _) => term.append_type_and_str(&v.to_string()),
        _ => return None,
    }
    Some(term)
}

/// Whether `value`, as `column`'s type, is a floating-point zero (either sign).
fn is_float_zero(layout: Layout<'_>, column: &str, value: &ScalarValue) -> bool {
    let Some((column_type, _)) = layout.column(column) else {
        return false;
    };
    matches!(
        value.cast_to(&column_type.arrow_type()),
        // A float pattern compares with ==: it matches -0.0 too.
        Ok(ScalarValue::Float64(Some(0.0)) | ScalarValue::Float32(Some(0.0)))
    )
}

/// The index orders -0.0 below 0.0 and holds both, so a range's included zero bound takes
/// the sign that keeps both zeros inside (excluded zero bounds are made included first).
fn signed_zero(value: ScalarValue, bound: Bound<Side>) -> ScalarValue {
    let negative = match bound {
        Bound::Included(side) => side == Side::Lower,
        Bound::Excluded(_) | Bound::Unbounded => return value,
    };
    let zero = if negative { -0.0 } else { 0.0 };
    match value {
        ScalarValue::Float64(Some(0.0)) => ScalarValue::Float64(Some(zero)),
        ScalarValue::Float32(Some(0.0)) => ScalarValue::Float32(Some(zero as f32)),
        other => other,
    }
}

pub(super) fn append_f64(term: &mut Term, value: f64, normalize: bool) -> Option<()> {
    if !value.is_finite() {
        return None;
    }
    if !normalize {
        // Range bounds keep one type for both ends; the fast-field range coerces the column.
        term.append_type_and_fast_value(value);
        return Some(());
    }
    // The index stores integral floats as integers; query with the same canonical form.
    match NumericalValue::F64(value).normalize() {
        NumericalValue::I64(v) => term.append_type_and_fast_value(v),
        NumericalValue::U64(v) => term.append_type_and_fast_value(v),
        NumericalValue::F64(v) => term.append_type_and_fast_value(v),
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use creek_common::schema::{ColumnDef, ColumnIndex, TableSchema, ID_COLUMN};
    use creek_common::types::ColumnType;
    use creek_common::{ShardId, TableId};
    use creek_proto::v1::WriteMode;
    use datafusion::arrow::array::{Array, Float64Array, Int32Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema as ArrowSchema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::prelude::{col, lit};
    use tantivy::collector::Count;
    use tantivy::schema::{JsonObjectOptions, Schema, FAST, INDEXED, STRING};

    use super::{query_for_filters, Layout};
    use crate::scan::columns::ColumnSpec;
    use crate::shard::copy::CopyRole;
    use crate::shard::Shard;

    fn column(name: &str, column_type: ColumnType, index: ColumnIndex) -> ColumnDef {
        ColumnDef {
            name: name.into(),
            column_type,
            not_null: false,
            default_expr: None,
            generated: None,
            index,
        }
    }

    fn table() -> Arc<TableSchema> {
        Arc::new(TableSchema {
            id: TableId(1),
            schema_name: "doc".into(),
            name: "t".into(),
            columns: vec![
                column("a", ColumnType::Integer, ColumnIndex::Plain),
                column("b", ColumnType::Text { max_len: None }, ColumnIndex::Off),
                column("c", ColumnType::Double, ColumnIndex::Plain),
            ],
            primary_key: vec!["a".into()],
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

    /// The schema of indexes written before columns had fields of their own.
    fn legacy_schema() -> Schema {
        let mut builder = Schema::builder();
        builder.add_text_field(ID_COLUMN, STRING | FAST);
        builder.add_i64_field("_seq_no", INDEXED | FAST);
        builder.add_i64_field("_primary_term", FAST);
        let json = JsonObjectOptions::default()
            .set_indexing_options(
                tantivy::schema::TextFieldIndexing::default()
                    .set_tokenizer("raw")
                    .set_index_option(tantivy::schema::IndexRecordOption::Basic),
            )
            .set_fast("raw");
        builder.add_json_field("_source", json);
        builder.build()
    }

    fn rows() -> Vec<u8> {
        let schema = Arc::new(ArrowSchema::new(vec![
            Field::new(ID_COLUMN, DataType::Utf8, false),
            Field::new("a", DataType::Int32, true),
            Field::new("b", DataType::Utf8, true),
            Field::new("c", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["1", "2", "3"])),
                Arc::new(Int32Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec![Some("x"), Some("y"), None])),
                Arc::new(Float64Array::from(vec![0.5, 2.0, -0.0])),
            ],
        )
        .unwrap();
        creek_proto::ipc::batch_to_ipc(&batch).unwrap()
    }

    /// Filters answer the same on both layouts, and the columns read back the same.
    fn check_layout(legacy: bool) {
        let dir = tempfile::tempdir().unwrap();
        if legacy {
            let index_dir = dir.path().join("index");
            std::fs::create_dir_all(&index_dir).unwrap();
            tantivy::Index::create_in_dir(&index_dir, legacy_schema()).unwrap();
        }
        let id = ShardId {
            table: TableId(1),
            shard: 0,
        };
        let shard = Shard::open(id, dir.path(), table()).unwrap();
        assert_eq!(shard.schema().get_field("a").is_ok(), !legacy);
        if !legacy {
            let b = shard.schema().get_field("b").unwrap();
            assert!(!shard.schema().get_field_entry(b).is_indexed());
        }
        shard.set_role(CopyRole {
            allocation_id: "p".into(),
            primary: true,
            primary_term: 1,
            peers: Vec::new(),
        });
        shard
            .write(WriteMode::Insert, &rows(), &[], &[], "op-1")
            .unwrap();
        shard.refresh().unwrap();
        let searcher = shard.searcher();
        let layout = Layout {
            table: &table(),
            schema: shard.schema(),
            fields: shard.fields(),
        };
        let count = |filter| {
            let query = query_for_filters(layout, &[filter]).expect("translated");
            searcher.search(&*query, &Count).unwrap()
        };
        assert_eq!(count(col("a").eq(lit(2))), 1);
        assert_eq!(count(col("a").in_list(vec![lit(1), lit(3)], false)), 2);
        assert_eq!(count(col("b").eq(lit("y"))), 1);
        assert_eq!(count(col("b").is_null()), 1);
        assert_eq!(count(col("c").gt_eq(lit(0.0))), 3);
        assert_eq!(count(col("c").eq(lit(0.0))), 1);
        // Not answered by a columnar-only column's index: evaluated above the scan. (The
        // JSON layout has no columnar-only field: it indexes such a column.)
        assert_eq!(
            legacy,
            query_for_filters(layout, &[col("b").in_list(vec![lit("x")], false)]).is_some()
        );

        let specs: Vec<ColumnSpec> = ["b", "c"]
            .iter()
            .map(|name| crate::codec::column_spec(&table(), name).unwrap())
            .collect();
        let schema = Arc::new(ArrowSchema::new(vec![
            Field::new("b", DataType::Utf8, true),
            Field::new("c", DataType::Float64, true),
        ]));
        let batch =
            crate::scan::lookup_ids(&shard, &specs, &["2".into(), "3".into()], schema).unwrap();
        let b = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let c = batch
            .column(1)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!((b.value(0), b.is_null(1)), ("y", true));
        assert_eq!((c.value(0), c.value(1)), (2.0, 0.0));
    }

    #[test]
    fn the_term_limit_is_tantivys() {
        assert_eq!(super::MAX_TERM_BYTES, tantivy::tokenizer::MAX_TOKEN_LEN);
    }

    #[test]
    fn a_new_index_gives_columns_fields_of_their_own() {
        check_layout(false);
    }

    #[test]
    fn an_index_of_the_json_layout_keeps_working() {
        check_layout(true);
    }
}
