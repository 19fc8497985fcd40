//! PostgreSQL syntax that clients' catalog queries use and DataFusion does not plan, rewritten
//! on the SQL syntax tree before planning:
//!
//! - `pg_catalog.`-qualified function and type names, `OPERATOR(pg_catalog.~)`, `COLLATE`;
//! - the `::regclass`, `::regtype`, `::regnamespace` casts (to `plan::pg_functions`), `::oid`;
//! - `ARRAY(subquery)`, `generate_subscripts`, `array_upper`;
//! - `EXISTS (subquery)` and `x [NOT] IN (subquery)` in a select list, which DataFusion only
//!   plans in filters (`plan::projected_subqueries`);
//! - integer literals beyond `bigint`, as exact numerics (`plan::numeric_literals`);
//! - empty relations: a query that inner-joins a catalog Creek never fills (`pg_policy`,
//!   `pg_inherits`, ...) and does not aggregate without grouping returns no rows, so a scalar
//!   subquery of that shape is NULL, `EXISTS` false, `IN` false, and a whole statement of that
//!   shape is answered without planning. That is what PostgreSQL returns for them, and it spares
//!   DataFusion constructs (lateral set-returning functions, array subscripts by subquery) that
//!   only ever appear over those catalogs.
//!
//! One client query is replaced whole: asyncpg's type introspection (run for every type it has
//! no built-in codec for, such as `int8[]`) follows domains with a correlated recursive CTE and
//! composites and ranges with correlated subqueries. Creek has none of those kinds of type, so
//! the query is answered by an equivalent one that only follows array element types.
//!
//! Apart from integer literals beyond `bigint`, which become exact, rewrites never change what
//! a query over user tables means.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, GroupByExpr, Ident, JoinOperator, ObjectName,
    ObjectNamePart, Query, Select, SelectItem, SetExpr, SetOperator, Statement, TableFactor,
    TableWithJoins, Value, Visit, VisitMut, Visitor, VisitorMut,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::catalog::pg_catalog::EMPTY_TABLES;

/// asyncpg's type introspection over Creek's types (see the module documentation): the same
/// columns, parameter and order.
const ASYNCPG_TYPE_INTROSPECTION: &str = "
WITH RECURSIVE ti AS (
    SELECT t.oid AS oid, ns.nspname AS ns, t.typname AS name, t.typtype AS kind,
        CAST(NULL AS oid) AS basetype, t.typelem AS elemtype, elem_t.typdelim AS elemdelim,
        CAST(NULL AS oid) AS range_subtype, CAST(NULL AS oid[]) AS attrtypoids,
        CAST(NULL AS text[]) AS attrnames
    FROM pg_catalog.pg_type AS t
    INNER JOIN pg_catalog.pg_namespace ns ON ns.oid = t.typnamespace
    LEFT JOIN pg_catalog.pg_type elem_t
        ON t.typlen = -1 AND t.typelem != 0 AND t.typelem = elem_t.oid
),
typeinfo_tree(
    oid, ns, name, kind, basetype, elemtype, elemdelim,
    range_subtype, attrtypoids, attrnames, depth) AS (
    SELECT ti.oid, ti.ns, ti.name, ti.kind, ti.basetype, ti.elemtype, ti.elemdelim,
        ti.range_subtype, ti.attrtypoids, ti.attrnames, 0
    FROM ti
    WHERE ti.oid = any($1::oid[])
    UNION ALL
    SELECT ti.oid, ti.ns, ti.name, ti.kind, ti.basetype, ti.elemtype, ti.elemdelim,
        ti.range_subtype, ti.attrtypoids, ti.attrnames, tt.depth + 1
    FROM ti, typeinfo_tree tt
    WHERE tt.elemtype IS NOT NULL AND ti.oid = tt.elemtype
)
SELECT DISTINCT *,
    basetype::regtype::text AS basetype_name,
    elemtype::regtype::text AS elemtype_name,
    range_subtype::regtype::text AS range_subtype_name
FROM typeinfo_tree
ORDER BY depth DESC";

/// Whether `statement` is asyncpg's type introspection query (all its versions share these).
fn is_asyncpg_type_introspection(statement: &Statement) -> bool {
    let Statement::Query(query) = statement else {
        return false;
    };
    let Some(with) = &query.with else {
        return false;
    };
    with.recursive
        && with
            .cte_tables
            .iter()
            .any(|cte| cte.alias.name.value == "typeinfo_tree")
        && statement.to_string().contains("typebases")
}

/// Rewrites PostgreSQL-only syntax in `statement` into what DataFusion plans.
pub fn rewrite(statement: &mut Statement) {
    if is_asyncpg_type_introspection(statement) {
        if let Ok(mut replacement) =
            Parser::parse_sql(&PostgreSqlDialect {}, ASYNCPG_TYPE_INTROSPECTION)
        {
            *statement = replacement.remove(0);
        }
    }
    let _ = statement.visit(&mut Rewriter);
    crate::plan::projected_subqueries::rewrite(statement);
}

/// Every `$n::type` (and `CAST($n AS type)`) in `statement`, by parameter number.
pub fn placeholder_casts(statement: &Statement) -> Vec<(usize, DataType)> {
    let mut casts = Vec::new();
    let _ = sqlparser::ast::visit_expressions(statement, |expr| {
        if let Expr::Cast {
            expr: inner,
            data_type,
            ..
        } = expr
        {
            if let Some(index) = crate::plan::params::placeholder_index(inner) {
                casts.push((index, data_type.clone()));
            }
        }
        ControlFlow::<()>::Continue(())
    });
    casts
}

/// If `statement` is a query that provably returns no rows, its output column names.
pub fn empty_result_columns(statement: &Statement) -> Option<Vec<String>> {
    let Statement::Query(query) = statement else {
        return None;
    };
    if !query_is_empty(query) {
        return None;
    }
    output_names(&query.body)
}

struct Rewriter;

impl VisitorMut for Rewriter {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        // `information_schema.table_partitions` (CrateDB's) is served by the sys schema:
        // DataFusion owns `information_schema` and knows no partitions.
        if let TableFactor::Table {
            name, args: None, ..
        } = factor
        {
            let parts: Vec<String> = name
                .0
                .iter()
                .filter_map(|part| match part {
                    ObjectNamePart::Identifier(ident) => Some(ident.value.to_lowercase()),
                    _ => None,
                })
                .collect();
            if parts == ["information_schema", "table_partitions"] {
                *name = ObjectName::from(vec![Ident::new("sys"), Ident::new("table_partitions")]);
            }
            // Creek's own, with its type names and objects' sub-columns.
            if parts == ["information_schema", "columns"] {
                *name = ObjectName::from(vec![Ident::new("sys"), Ident::new("columns")]);
            }
        }
        // `FROM pg_catalog.unnest(...)`: a table function, named like the scalar ones.
        if let TableFactor::Table {
            name,
            args: Some(_),
            ..
        } = factor
        {
            if is_pg_catalog_qualified(name) {
                *name = ObjectName(vec![name.0[1].clone()]);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let replacement = match expr {
            Expr::Subquery(query) if query_is_empty(query) => Some(Expr::value(Value::Null)),
            Expr::Exists { subquery, negated } if query_is_empty(subquery) => {
                Some(Expr::value(Value::Boolean(*negated)))
            }
            Expr::InSubquery {
                subquery, negated, ..
            } if query_is_empty(subquery) => Some(Expr::value(Value::Boolean(*negated))),
            _ => crate::plan::numeric_literals::rewrite(expr),
        };
        if let Some(replacement) = replacement {
            *expr = replacement;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let replacement = match expr {
            Expr::Collate { expr: inner, .. } => Some((**inner).clone()),
            Expr::BinaryOp { left, op, right } => {
                if let BinaryOperator::PGCustomBinaryOperator(parts) = op {
                    builtin_operator(parts).map(|op| Expr::BinaryOp {
                        left: left.clone(),
                        op,
                        right: right.clone(),
                    })
                } else {
                    None
                }
            }
            Expr::Cast {
                expr: inner,
                data_type,
                kind,
                ..
            } => rewrite_cast(inner, data_type, kind),
            Expr::Function(function) => rewrite_function(function),
            _ => None,
        };
        if let Some(replacement) = replacement {
            *expr = replacement;
        }
        ControlFlow::Continue(())
    }
}

fn last_part(name: &ObjectName) -> Option<String> {
    name.0.last().and_then(|part| match part {
        ObjectNamePart::Identifier(ident) => Some(ident.value.to_lowercase()),
        _ => None,
    })
}

fn is_pg_catalog_qualified(name: &ObjectName) -> bool {
    name.0.len() == 2
        && matches!(&name.0[0], ObjectNamePart::Identifier(i) if i.value.eq_ignore_ascii_case("pg_catalog"))
}

fn builtin_operator(parts: &[String]) -> Option<BinaryOperator> {
    Some(match parts.last()?.as_str() {
        "~" => BinaryOperator::PGRegexMatch,
        "~*" => BinaryOperator::PGRegexIMatch,
        "!~" => BinaryOperator::PGRegexNotMatch,
        "!~*" => BinaryOperator::PGRegexNotIMatch,
        "~~" => BinaryOperator::PGLikeMatch,
        "~~*" => BinaryOperator::PGILikeMatch,
        "!~~" => BinaryOperator::PGNotLikeMatch,
        "!~~*" => BinaryOperator::PGNotILikeMatch,
        "=" => BinaryOperator::Eq,
        "<>" | "!=" => BinaryOperator::NotEq,
        "<" => BinaryOperator::Lt,
        "<=" => BinaryOperator::LtEq,
        ">" => BinaryOperator::Gt,
        ">=" => BinaryOperator::GtEq,
        "||" => BinaryOperator::StringConcat,
        _ => return None,
    })
}

pub(crate) fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|arg| FunctionArg::Unnamed(FunctionArgExpr::Expr(arg)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

pub(crate) fn count_star() -> Expr {
    let mut count = call("count", vec![]);
    if let Expr::Function(Function {
        args: FunctionArguments::List(list),
        ..
    }) = &mut count
    {
        list.args = vec![FunctionArg::Unnamed(FunctionArgExpr::Wildcard)];
    }
    count
}

fn cast(expr: &Expr, data_type: DataType) -> Expr {
    Expr::Cast {
        kind: CastKind::DoubleColon,
        expr: Box::new(expr.clone()),
        data_type,
        array: false,
        format: None,
    }
}

/// A cast of text to an array type reads the text as an array literal, as PostgreSQL does;
/// DataFusion's own cast would make the whole text one element. `ARRAY[...]` and parameters
/// (typed by the cast, see [`placeholder_casts`]) keep the plain cast.
fn text_to_array_cast(expr: &Expr, data_type: &DataType, kind: &CastKind) -> Option<Expr> {
    if !matches!(data_type, DataType::Array(_))
        || matches!(expr, Expr::Array(_))
        || matches!(expr, Expr::Value(value) if value.value == Value::Null)
        || crate::plan::params::placeholder_index(expr).is_some()
    {
        return None;
    }
    let target = catalog_type(data_type).unwrap_or_else(|| data_type.clone());
    // TRY_CAST answers NULL for text that is no array literal.
    let function = match kind {
        CastKind::TryCast | CastKind::SafeCast => {
            crate::plan::array_literal::TRY_TEXT_TO_ARRAY_FUNCTION
        }
        _ => crate::plan::array_literal::TEXT_TO_ARRAY_FUNCTION,
    };
    Some(call(
        function,
        vec![expr.clone(), cast(&Expr::value(Value::Null), target)],
    ))
}

fn rewrite_cast(expr: &Expr, data_type: &DataType, kind: &CastKind) -> Option<Expr> {
    if let Some(parsed) = text_to_array_cast(expr, data_type, kind) {
        return Some(parsed);
    }
    let name = match data_type {
        DataType::Regclass => "regclass".to_string(),
        DataType::Custom(name, _) => last_part(name)?,
        other => return catalog_type(other).map(|mapped| cast(expr, mapped)),
    };
    Some(match name.as_str() {
        "regclass" => call("creek_regclass", vec![expr.clone()]),
        "regtype" => call("creek_regtype", vec![expr.clone()]),
        "regnamespace" => call("creek_regnamespace", vec![expr.clone()]),
        _ => cast(expr, catalog_type(data_type)?),
    })
}

/// The type DataFusion knows for a catalog type name (`oid`, `name`, `pg_catalog.int4`, ...),
/// also as an array element.
fn catalog_type(data_type: &DataType) -> Option<DataType> {
    use sqlparser::ast::ArrayElemTypeDef;
    match data_type {
        DataType::Custom(name, _) => {
            let qualified = is_pg_catalog_qualified(name);
            Some(match last_part(name)?.as_str() {
                "regproc" | "regprocedure" | "regrole" | "regoper" => DataType::Text,
                // `oid` is Arrow's UInt32, which pgwire reports as oid again.
                "oid" | "xid" | "cid" | "regconfig" => DataType::IntUnsigned(None),
                "name" | "char" => DataType::Text,
                "text" | "varchar" | "bpchar" if qualified => DataType::Text,
                "int2" if qualified => DataType::SmallInt(None),
                "int4" if qualified => DataType::Integer(None),
                "int8" if qualified => DataType::BigInt(None),
                "bool" if qualified => DataType::Boolean,
                _ => return None,
            })
        }
        DataType::Array(ArrayElemTypeDef::SquareBracket(inner, size)) => Some(DataType::Array(
            ArrayElemTypeDef::SquareBracket(Box::new(catalog_type(inner)?), *size),
        )),
        _ => None,
    }
}

fn function_args(function: &Function) -> Option<Vec<Expr>> {
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    list.args
        .iter()
        .map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => Some(expr.clone()),
            _ => None,
        })
        .collect()
}

fn rewrite_function(function: &mut Function) -> Option<Expr> {
    if is_pg_catalog_qualified(&function.name) {
        function.name = ObjectName(vec![function.name.0[1].clone()]);
    }
    let name = last_part(&function.name)?;
    match (name.as_str(), &function.args) {
        ("array", FunctionArguments::Subquery(query)) => array_of_subquery(query),
        ("array_upper", _) => {
            let mut renamed = function.clone();
            renamed.name = ObjectName::from(vec![Ident::new("array_length")]);
            Some(Expr::Function(renamed))
        }
        ("generate_subscripts", _) => {
            let args = function_args(function)?;
            let length = call("array_length", args);
            Some(call(
                "unnest",
                vec![call(
                    "generate_series",
                    vec![Expr::value(Value::Number("1".into(), false)), length],
                )],
            ))
        }
        _ => None,
    }
}

/// `ARRAY(SELECT x ...)` as `(SELECT array_agg(x) FROM (SELECT x ...) AS _array(x))`. Built
/// as text and parsed, since the syntax tree round-trips through its SQL form.
fn array_of_subquery(query: &Query) -> Option<Expr> {
    let sql = format!("(SELECT array_agg(_element) FROM ({query}) AS _array(_element))");
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&sql)
        .and_then(|mut parser| parser.parse_expr())
        .ok()
}

fn query_is_empty(query: &Query) -> bool {
    set_expr_is_empty(&query.body)
}

fn set_expr_is_empty(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(select) => select_is_empty(select),
        SetExpr::Query(query) => query_is_empty(query),
        SetExpr::SetOperation {
            op, left, right, ..
        } => match op {
            SetOperator::Union => set_expr_is_empty(left) && set_expr_is_empty(right),
            SetOperator::Intersect => set_expr_is_empty(left) || set_expr_is_empty(right),
            SetOperator::Except | SetOperator::Minus => set_expr_is_empty(left),
        },
        _ => false,
    }
}

fn select_is_empty(select: &Select) -> bool {
    let grouped = match &select.group_by {
        GroupByExpr::All(_) => true,
        GroupByExpr::Expressions(exprs, _) => !exprs.is_empty(),
    };
    // An aggregate without GROUP BY returns one row even over no input.
    if !grouped && (select.having.is_some() || aggregates(select)) {
        return false;
    }
    select.from.iter().any(join_chain_is_empty)
}

fn join_chain_is_empty(chain: &TableWithJoins) -> bool {
    let mut empty = factor_is_empty(&chain.relation);
    for join in &chain.joins {
        let right = factor_is_empty(&join.relation);
        empty = match &join.join_operator {
            JoinOperator::Join(_)
            | JoinOperator::Inner(_)
            | JoinOperator::CrossJoin(_)
            | JoinOperator::Semi(_)
            | JoinOperator::LeftSemi(_)
            | JoinOperator::CrossApply => empty || right,
            JoinOperator::Left(_)
            | JoinOperator::LeftOuter(_)
            | JoinOperator::LeftAnti(_)
            | JoinOperator::Anti(_)
            | JoinOperator::OuterApply => empty,
            JoinOperator::Right(_) | JoinOperator::RightOuter(_) | JoinOperator::RightSemi(_) => {
                right
            }
            JoinOperator::FullOuter(_) => empty && right,
            _ => false,
        };
    }
    empty
}

fn factor_is_empty(factor: &TableFactor) -> bool {
    match factor {
        TableFactor::Table { name, args, .. } => {
            args.is_none()
                && (name.0.len() == 1 || is_pg_catalog_qualified(name))
                && last_part(name).is_some_and(|table| EMPTY_TABLES.contains(&table.as_str()))
        }
        TableFactor::Derived { subquery, .. } => query_is_empty(subquery),
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => join_chain_is_empty(table_with_joins),
        _ => false,
    }
}

const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "stddev",
    "variance",
    "bit_and",
    "bit_or",
];

/// Whether the select list calls an aggregate function outside any subquery.
pub(crate) fn aggregates(select: &Select) -> bool {
    struct Finder {
        depth: usize,
        found: bool,
    }
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Expr::Function(function) = expr {
                if self.depth == 0
                    && function.over.is_none()
                    && last_part(&function.name).is_some_and(|n| AGGREGATES.contains(&n.as_str()))
                {
                    self.found = true;
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut finder = Finder {
        depth: 0,
        found: false,
    };
    for item in &select.projection {
        let _ = item.visit(&mut finder);
    }
    finder.found
}

fn expr_name(expr: &Expr) -> String {
    match expr {
        Expr::Identifier(ident) => ident.value.clone(),
        Expr::CompoundIdentifier(parts) => parts
            .last()
            .map_or_else(|| "?column?".to_string(), |i| i.value.clone()),
        Expr::Function(function) => last_part(&function.name).unwrap_or_default(),
        Expr::Cast { expr, .. } | Expr::Nested(expr) => expr_name(expr),
        _ => "?column?".to_string(),
    }
}

fn output_names(body: &SetExpr) -> Option<Vec<String>> {
    match body {
        SetExpr::Select(select) => select
            .projection
            .iter()
            .map(|item| match item {
                SelectItem::UnnamedExpr(expr) => Some(expr_name(expr)),
                SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
                _ => None,
            })
            .collect(),
        SetExpr::Query(query) => output_names(&query.body),
        SetExpr::SetOperation { left, .. } => output_names(left),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> Statement {
        Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("test SQL parses")
            .remove(0)
    }

    fn rewritten(sql: &str) -> String {
        let mut statement = parse(sql);
        rewrite(&mut statement);
        statement.to_string()
    }

    #[test]
    fn catalog_syntax_is_rewritten() {
        assert_eq!(
            rewritten(
                "SELECT c.oid::pg_catalog.regclass FROM pg_catalog.pg_class c \
                 WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default \
                 AND pg_catalog.pg_table_is_visible(c.oid)"
            ),
            "SELECT creek_regclass(c.oid) FROM pg_catalog.pg_class c \
             WHERE c.relname ~ '^(t)$' AND pg_table_is_visible(c.oid)"
        );
        assert_eq!(
            rewritten("SELECT '16384'::pg_catalog.oid, x::oid, $1::oid[]"),
            "SELECT '16384'::INT UNSIGNED, x::INT UNSIGNED, $1::INT UNSIGNED[]"
        );
    }

    #[test]
    fn exists_in_a_select_list_counts() {
        assert_eq!(
            rewritten("SELECT NOT a.x AND EXISTS (SELECT 1 FROM b WHERE b.k = a.k) AS e FROM a"),
            "SELECT NOT a.x AND (SELECT count(*) > 0 FROM b WHERE b.k = a.k) AS e FROM a"
        );
        assert_eq!(
            rewritten("SELECT a.k FROM a WHERE EXISTS (SELECT 1 FROM b WHERE b.k = a.k)"),
            "SELECT a.k FROM a WHERE EXISTS (SELECT 1 FROM b WHERE b.k = a.k)"
        );
    }

    #[test]
    fn subqueries_over_empty_catalogs_are_null() {
        assert_eq!(
            rewritten(
                "SELECT a, (SELECT c.collname FROM pg_catalog.pg_collation c WHERE c.oid = a.x) \
                 FROM t a WHERE EXISTS (SELECT 1 FROM pg_inherits)"
            ),
            "SELECT a, NULL FROM t a WHERE false"
        );
        // An aggregate without GROUP BY returns a row even over nothing.
        assert_eq!(
            rewritten("SELECT (SELECT count(*) FROM pg_policy)"),
            "SELECT (SELECT count(*) FROM pg_policy)"
        );
    }

    #[test]
    fn empty_statements_are_recognised() {
        let statement = parse(
            "SELECT pubname, NULL AS a FROM pg_catalog.pg_publication p \
             JOIN pg_catalog.pg_class c ON true UNION SELECT pubname, NULL FROM pg_publication",
        );
        assert_eq!(
            empty_result_columns(&statement),
            Some(vec!["pubname".to_string(), "a".to_string()])
        );
        // A LEFT JOIN to an empty catalog keeps the left rows.
        let statement = parse("SELECT c.relname FROM pg_class c LEFT JOIN pg_inherits i ON true");
        assert_eq!(empty_result_columns(&statement), None);
        let statement = parse("SELECT * FROM t");
        assert_eq!(empty_result_columns(&statement), None);
    }
}
