//! Translates pushed-down DataFusion filter expressions into tantivy queries over a shard.
//!
//! Every translation must match a superset of the rows the expression accepts: the coordinator
//! marks these filters inexact, so DataFusion re-applies them above the scan. An expression this
//! module cannot translate becomes "match all" rather than an error.

use std::ops::Bound;

use creek_common::schema::{TableSchema, ID_COLUMN};
use creek_common::types::ColumnType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use tantivy::columnar::NumericalValue;
use tantivy::query::{
    AllQuery, BooleanQuery, ExistsQuery, Occur, Query, RangeQuery, TermQuery, TermSetQuery,
};
use tantivy::schema::IndexRecordOption;
use tantivy::Term;

use crate::shard::document::{ShardFields, EXACT_ARRAY_PREFIX, SOURCE_FIELD};

/// Builds one query that is the conjunction of `filters`; `None` means "every document".
pub fn query_for_filters(
    table: &TableSchema,
    fields: ShardFields,
    filters: &[Expr],
) -> Option<Box<dyn Query>> {
    let clauses: Vec<(Occur, Box<dyn Query>)> = filters
        .iter()
        .filter_map(|filter| translate(table, fields, filter))
        .map(|query| (Occur::Must, query))
        .collect();
    match clauses.len() {
        0 => None,
        1 => clauses.into_iter().next().map(|(_, q)| q),
        _ => Some(Box::new(BooleanQuery::new(clauses))),
    }
}

/// Returns whether `expr` can be (at least partly) answered by the index.
pub fn is_translatable(table: &TableSchema, expr: &Expr) -> bool {
    let (_, fields) = crate::shard::document::shard_schema();
    translate(table, fields, expr).is_some()
}

fn translate(table: &TableSchema, fields: ShardFields, expr: &Expr) -> Option<Box<dyn Query>> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And => {
                let l = translate(table, fields, left);
                let r = translate(table, fields, right);
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
                let l = translate(table, fields, left)?;
                let r = translate(table, fields, right)?;
                Some(Box::new(BooleanQuery::new(vec![
                    (Occur::Should, l),
                    (Occur::Should, r),
                ])))
            }
            Operator::Eq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => {
                let (column, value, op) = match (left.as_ref(), right.as_ref()) {
                    (Expr::Column(c), Expr::Literal(v, _)) => (c.name.as_str(), v, *op),
                    (Expr::Literal(v, _), Expr::Column(c)) => (c.name.as_str(), v, op.swap()?),
                    _ => return None,
                };
                if op == Operator::Eq {
                    let term = term_for(table, fields, column, value, false)?;
                    return Some(Box::new(TermQuery::new(term, IndexRecordOption::Basic)));
                }
                let term = term_for(table, fields, column, value, true)?;
                if !supports_range(table, column) {
                    return None;
                }
                let (lower, upper) = match op {
                    Operator::Lt => (Bound::Unbounded, Bound::Excluded(term)),
                    Operator::LtEq => (Bound::Unbounded, Bound::Included(term)),
                    Operator::Gt => (Bound::Excluded(term), Bound::Unbounded),
                    _ => (Bound::Included(term), Bound::Unbounded),
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
            if !supports_range(table, &column.name) {
                return None;
            }
            let low = term_for(table, fields, &column.name, low, true)?;
            let high = term_for(table, fields, &column.name, high, true)?;
            Some(Box::new(RangeQuery::new(
                Bound::Included(low),
                Bound::Included(high),
            )))
        }
        Expr::InList(in_list) if !in_list.negated => {
            let Expr::Column(column) = in_list.expr.as_ref() else {
                return None;
            };
            let mut terms = Vec::with_capacity(in_list.list.len());
            for item in &in_list.list {
                let Expr::Literal(value, _) = item else {
                    return None;
                };
                if value.is_null() {
                    continue;
                }
                terms.push(term_for(table, fields, &column.name, value, false)?);
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
            let lower = term_for(table, fields, column, &text(prefix.clone()), true)?;
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
                Some(upper) => {
                    Bound::Excluded(term_for(table, fields, column, &text(upper), true)?)
                }
                None => Bound::Unbounded,
            };
            Some(Box::new(RangeQuery::new(Bound::Included(lower), upper)))
        }
        Expr::IsNotNull(inner) => {
            let Expr::Column(column) = inner.as_ref() else {
                return None;
            };
            Some(exists_query(table, &column.name)?)
        }
        Expr::IsNull(inner) => {
            let Expr::Column(column) = inner.as_ref() else {
                return None;
            };
            let exists = exists_query(table, &column.name)?;
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
fn exists_query(table: &TableSchema, column: &str) -> Option<Box<dyn Query>> {
    let values: Box<dyn Query> =
        Box::new(ExistsQuery::new(format!("{SOURCE_FIELD}.{column}"), false));
    if !matches!(table.column(column)?.column_type, ColumnType::Array(_)) {
        return Some(values);
    }
    let exact: Box<dyn Query> = Box::new(ExistsQuery::new(
        format!("{SOURCE_FIELD}.{EXACT_ARRAY_PREFIX}{column}"),
        false,
    ));
    Some(Box::new(BooleanQuery::new(vec![
        (Occur::Should, values),
        (Occur::Should, exact),
    ])))
}

fn supports_range(table: &TableSchema, column: &str) -> bool {
    matches!(
        table.column(column).map(|c| &c.column_type),
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

/// Builds the index term of `value` in `column`, encoded exactly as `shard::document` indexes it.
fn term_for(
    table: &TableSchema,
    fields: ShardFields,
    column: &str,
    value: &ScalarValue,
    for_range: bool,
) -> Option<Term> {
    if column == ID_COLUMN {
        return match value {
            ScalarValue::Utf8(Some(text)) => Some(Term::from_field_text(fields.id, text)),
            _ => None,
        };
    }
    let column_type = &table.column(column)?.column_type;
    let target = column_type.arrow_type();
    let value = if value.data_type() == target {
        value.clone()
    } else {
        value.cast_to(&target).ok()?
    };
    let mut term = Term::from_field_json_path(fields.source, column, false);
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

fn append_f64(term: &mut Term, value: f64, normalize: bool) -> Option<()> {
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
