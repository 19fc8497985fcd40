//! Which filters a shard scan sends to the data nodes, and in what form: term filters over
//! one text column, and the parts of a predicate a data node turns into an index query
//! (`scan::query` there), object sub-columns and geo relations included. Planning only: what
//! is sent is applied above the scan too.

use creek_common::schema::{TableSchema, ID_COLUMN};
use creek_common::types::ColumnType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};

/// What of `expr` a data node can use to narrow a shard scan, in the form it is sent there:
/// `expr` itself when it is a term filter, else the part of it the data node turns into an
/// index query (which matches at least the rows `expr` matches). `None`: nothing; the filter
/// is applied above the scan only. Whatever is sent is still applied above the scan too.
///
/// Only this part travels: a data node decodes pushed filters without the coordinator's
/// functions, so `(url = 'a' AND lower(url) = 'b') OR url = 'c'` is sent as
/// `url = 'a' OR url = 'c'`.
pub(super) fn pushed_filter(table: &TableSchema, expr: &Expr) -> Option<Expr> {
    if is_term_filter(table, expr) {
        return Some(expr.clone());
    }
    index_query(table, expr)
}

/// A predicate on one text column and nothing else, built only of operators that evaluate the
/// same everywhere: a data node decides it once per distinct term of a segment's dictionary.
/// Functions are left out: Creek's coordinator-side functions (and its versions of some
/// built-in names) are not what a data node has.
fn is_term_filter(table: &TableSchema, expr: &Expr) -> bool {
    let columns = expr.column_refs();
    let mut columns = columns.iter();
    let (Some(column), None) = (columns.next(), columns.next()) else {
        return false;
    };
    if !matches!(
        table.column(&column.name).map(|c| &c.column_type),
        Some(creek_common::types::ColumnType::Text { .. })
    ) {
        return false;
    }
    let mut plain = true;
    let _ = expr.apply(|e| {
        plain &= matches!(
            e,
            Expr::Column(_)
                | Expr::Literal(..)
                | Expr::BinaryExpr(_)
                | Expr::Like(_)
                | Expr::SimilarTo(_)
                | Expr::Not(_)
                | Expr::IsNull(_)
                | Expr::IsNotNull(_)
                | Expr::IsTrue(_)
                | Expr::IsFalse(_)
                | Expr::IsUnknown(_)
                | Expr::IsNotTrue(_)
                | Expr::IsNotFalse(_)
                | Expr::IsNotUnknown(_)
                | Expr::Between(_)
                | Expr::InList(_)
                | Expr::Case(_)
                | Expr::Cast(_)
                | Expr::TryCast(_)
        );
        Ok(if plain {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    plain
}

/// The part of `expr` the data node turns into a tantivy query (`scan::query` there): a
/// conjunction keeps the conjuncts it can use (dropping one only widens the match), a
/// disjunction needs both sides.
fn index_query(table: &TableSchema, expr: &Expr) -> Option<Expr> {
    let known = |name: &str| name == ID_COLUMN || table.column(name).is_some();
    // An object's scalar sub-column (`o['a']['b']`), indexed like a column.
    let sub_column = |expr: &Expr| is_sub_column(table, expr);
    let usable = match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And => {
                return match (index_query(table, left), index_query(table, right)) {
                    (Some(left), Some(right)) => Some(left.and(right)),
                    (Some(one), None) | (None, Some(one)) => Some(one),
                    (None, None) => None,
                };
            }
            Operator::Or => {
                return Some(index_query(table, left)?.or(index_query(table, right)?));
            }
            Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq
                if is_distance_bound(table, left, right)
                    || is_distance_bound(table, right, left) =>
            {
                true
            }
            Operator::Eq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => {
                matches!((left.as_ref(), right.as_ref()),
                    (Expr::Column(c), Expr::Literal(..)) | (Expr::Literal(..), Expr::Column(c)) if known(&c.name))
                    || matches!((left.as_ref(), right.as_ref()),
                        (field, Expr::Literal(..)) | (Expr::Literal(..), field) if sub_column(field))
            }
            _ => false,
        },
        Expr::Between(b) => {
            !b.negated
                && (matches!(b.expr.as_ref(), Expr::Column(c) if known(&c.name))
                    || sub_column(&b.expr))
                && matches!(
                    (b.low.as_ref(), b.high.as_ref()),
                    (Expr::Literal(..), Expr::Literal(..))
                )
        }
        Expr::InList(l) => {
            !l.negated
                && (matches!(l.expr.as_ref(), Expr::Column(c) if known(&c.name))
                    || sub_column(&l.expr))
                && l.list.iter().all(|item| matches!(item, Expr::Literal(..)))
        }
        Expr::IsNull(e) | Expr::IsNotNull(e) => {
            matches!(e.as_ref(), Expr::Column(c) if table.column(&c.name).is_some())
                || sub_column(e)
        }
        // `within(point, 'POLYGON(..)')` and `distance(point, ..) < r`: a box of locations.
        // `intersects(shape or point, ..)` and `within(shape, ..)`: a box of boxes.
        Expr::ScalarFunction(function) => {
            let name = function.func.name();
            (name == creek_common::geo::WITHIN_FUNCTION
                && (is_geo_call(table, &function.args)
                    || is_shape_call(table, &function.args, false)))
                || (name == creek_common::geo::INTERSECTS_FUNCTION
                    && (is_shape_call(table, &function.args, true)
                        || is_geo_call(table, &function.args)))
        }
        // A prefix LIKE on a text column becomes a term range; the data node decides exactly
        // which patterns qualify and matches everything for the others.
        Expr::Like(like) => {
            !like.negated
                && !like.case_insensitive
                && like.escape_char.is_none()
                && matches!(like.expr.as_ref(), Expr::Column(c) if matches!(
                    table.column(&c.name).map(|c| &c.column_type),
                    Some(creek_common::types::ColumnType::Text { .. })))
                && matches!(like.pattern.as_ref(),
                    Expr::Literal(ScalarValue::Utf8(Some(p)), _) if !p.starts_with(['%', '_']))
        }
        _ => false,
    };
    usable.then(|| expr.clone())
}

/// Whether `expr` is a scalar sub-column of one of `table`'s objects: `get_field` of an
/// object column by literal keys (nested or not), naming a sub-column the table declares.
fn is_sub_column(table: &TableSchema, expr: &Expr) -> bool {
    let mut keys: Vec<String> = Vec::new();
    let mut current = expr;
    loop {
        match current {
            Expr::ScalarFunction(function) if function.func.name() == "get_field" => {
                let Some((base, names)) = function.args.split_first() else {
                    return false;
                };
                let mut these = Vec::new();
                for name in names {
                    let Expr::Literal(ScalarValue::Utf8(Some(name)), _) = name else {
                        return false;
                    };
                    these.push(name.clone());
                }
                these.extend(keys);
                keys = these;
                current = base;
            }
            Expr::Column(column) => {
                let Some(column) = table.column(&column.name) else {
                    return false;
                };
                if !matches!(column.column_type, ColumnType::Object { .. }) || keys.is_empty() {
                    return false;
                }
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                return matches!(
                    creek_common::object::sub_column_type(&column.column_type, &keys),
                    Some(t) if !matches!(t, ColumnType::Object { .. })
                );
            }
            _ => return false,
        }
    }
}

/// A geo function's arguments: a `geo_point` column of `table` and a literal.
fn is_geo_call(table: &TableSchema, args: &[Expr]) -> bool {
    let is_point = |name: &str| {
        matches!(
            table.column(name).map(|c| &c.column_type),
            Some(creek_common::types::ColumnType::GeoPoint)
        )
    };
    matches!(args,
        [Expr::Column(c), Expr::Literal(..)] | [Expr::Literal(..), Expr::Column(c)] if is_point(&c.name))
}

/// A shape relation's arguments: a `geo_shape` column of `table` and a literal (in either
/// order if `symmetric`).
fn is_shape_call(table: &TableSchema, args: &[Expr], symmetric: bool) -> bool {
    let is_shape = |name: &str| {
        matches!(
            table.column(name).map(|c| &c.column_type),
            Some(creek_common::types::ColumnType::GeoShape)
        )
    };
    match args {
        [Expr::Column(c), Expr::Literal(..)] => is_shape(&c.name),
        [Expr::Literal(..), Expr::Column(c)] => symmetric && is_shape(&c.name),
        _ => false,
    }
}

/// `distance(point, literal)` compared with a literal (the data node keeps the bounds that
/// make a box and matches everything for the others).
fn is_distance_bound(table: &TableSchema, call: &Expr, bound: &Expr) -> bool {
    matches!(bound, Expr::Literal(..))
        && matches!(call, Expr::ScalarFunction(function)
            if function.func.name() == creek_common::geo::DISTANCE_FUNCTION
                && is_geo_call(table, &function.args))
}
