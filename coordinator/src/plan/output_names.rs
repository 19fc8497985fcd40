//! The names clients see for result columns. DataFusion names an unaliased select item by its
//! expression (`Int64(1)`, `count(*)`); clients that map rows to dicts by name expect the
//! names of the database they think they talk to. Over pgwire that is PostgreSQL's rule
//! (`FigureColname` in its parser: `?column?` for an operator or constant, the function name
//! for a call, the type name for a bare cast, ...); over HTTP CrateDB's (the function name for
//! a call, otherwise the expression as CrateDB prints it: `(1 + 1)`, `'a'`, `CAST(x AS int)`).
//!
//! The names are computed from the statement as the client wrote it and laid over the planned
//! schema by position, after planning: plans keep DataFusion's unique internal names, so two
//! items named alike (`SELECT 1, 2` is `?column?` twice) never collide inside a plan.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use sqlparser::ast::{
    self, AccessExpr, BinaryOperator, CastKind, DataType, ExactNumberInfo, Expr, FunctionArg,
    FunctionArgExpr, FunctionArguments, Query, SelectItem, SetExpr, Statement, Subscript,
    TimezoneInfo, TrimWhereField, UnaryOperator, Value,
};

use crate::plan::identifiers::{ident_name, last_name};

/// Whose rules name result columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NamingRules {
    /// PostgreSQL's, for pgwire clients.
    #[default]
    Postgres,
    /// CrateDB's, for HTTP clients.
    Crate,
}

/// The name PostgreSQL gives an unnamed column.
const UNNAMED: &str = "?column?";

/// The names `rules` give the result columns of a query, by select item (`None` for a
/// wildcard); `None` if `statement` is not a query with a select list.
#[derive(Debug, Clone)]
pub struct OutputNames(Vec<Option<String>>);

impl OutputNames {
    /// Computes the names of `statement`'s result columns.
    pub fn of(statement: &Statement, rules: NamingRules) -> Option<OutputNames> {
        let Statement::Query(query) = statement else {
            return None;
        };
        select_list_names(query, rules).map(OutputNames)
    }

    /// Returns `schema` (the planned result) with these names laid over it by position, or
    /// `None` if the select list does not map onto it.
    pub fn apply(&self, schema: &SchemaRef) -> Option<SchemaRef> {
        apply_names(&self.0, schema)
    }
}

/// Returns `schema` with its fields named by `rules` for the query `statement`, or `None` when
/// the statement is not a query whose select list maps onto the schema by position.
pub fn rename_schema(
    statement: &Statement,
    schema: &SchemaRef,
    rules: NamingRules,
) -> Option<SchemaRef> {
    OutputNames::of(statement, rules)?.apply(schema)
}

fn apply_names(names: &[Option<String>], schema: &SchemaRef) -> Option<SchemaRef> {
    let names = names.to_vec();
    let fields = schema.fields();
    let wildcards = names.iter().filter(|n| n.is_none()).count();
    let named = names.len() - wildcards;
    let mut renamed: Vec<Option<String>> = vec![None; fields.len()];
    match wildcards {
        0 if names.len() == fields.len() => renamed = names,
        0 => return None,
        _ if named > fields.len() => return None,
        _ => {
            // Items before the first and after the last wildcard map by position from either
            // end; wildcards keep DataFusion's names, which are the columns' own.
            let first = names.iter().position(Option::is_none)?;
            let last = names.iter().rposition(Option::is_none)?;
            for (index, name) in names[..first].iter().enumerate() {
                renamed[index].clone_from(name);
            }
            let tail = &names[last + 1..];
            let offset = fields.len() - tail.len();
            for (index, name) in tail.iter().enumerate() {
                renamed[offset + index].clone_from(name);
            }
        }
    }
    let fields: Vec<Field> = fields
        .iter()
        .zip(renamed)
        .map(|(field, name)| match name {
            Some(name) if &name != field.name() => field.as_ref().clone().with_name(name),
            _ => field.as_ref().clone(),
        })
        .collect();
    Some(Arc::new(Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    )))
}

/// The names of the leftmost select list of `query`; `None` entries are wildcards.
fn select_list_names(query: &Query, rules: NamingRules) -> Option<Vec<Option<String>>> {
    fn of_body(body: &SetExpr, rules: NamingRules) -> Option<Vec<Option<String>>> {
        match body {
            SetExpr::Select(select) => Some(
                select
                    .projection
                    .iter()
                    .map(|item| match item {
                        SelectItem::UnnamedExpr(expr) => Some(item_name(expr, rules)),
                        SelectItem::ExprWithAlias { alias, .. } => Some(ident_name(alias)),
                        SelectItem::ExprWithAliases { aliases, .. } => {
                            aliases.first().map(ident_name)
                        }
                        SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => None,
                    })
                    .collect(),
            ),
            SetExpr::Query(query) => of_body(&query.body, rules),
            SetExpr::SetOperation { left, .. } => of_body(left, rules),
            _ => None,
        }
    }
    of_body(&query.body, rules)
}

fn item_name(expr: &Expr, rules: NamingRules) -> String {
    match rules {
        NamingRules::Postgres => postgres_name(expr).0.unwrap_or_else(|| UNNAMED.to_string()),
        NamingRules::Crate => match expr {
            Expr::Function(function) => last_name(&function.name),
            other => crate_text(other),
        },
    }
}

/// PostgreSQL's `FigureColnameInternal`: a name and its strength (2 for a real name, 1 for a
/// fallback such as a type name or `case`, 0 for none). A cast or CASE takes its operand's
/// name only if that is a real one.
fn postgres_name(expr: &Expr) -> (Option<String>, u8) {
    let strong = |name: &str| (Some(name.to_string()), 2);
    match expr {
        Expr::Identifier(ident) => (Some(ident_name(ident)), 2),
        Expr::CompoundIdentifier(parts) => (parts.last().map(ident_name), 2),
        Expr::Function(function) => (Some(last_name(&function.name)), 2),
        Expr::Cast {
            expr, data_type, ..
        } => {
            let (name, strength) = postgres_name(expr);
            if strength <= 1 {
                (Some(postgres_type_name(data_type)), 1)
            } else {
                (name, strength)
            }
        }
        Expr::TypedString(typed) => (Some(postgres_type_name(&typed.data_type)), 1),
        Expr::Interval(_) => (Some("interval".into()), 1),
        Expr::Nested(inner) | Expr::Collate { expr: inner, .. } => postgres_name(inner),
        Expr::Exists { negated: false, .. } => strong("exists"),
        Expr::Subquery(query) => match select_list_names(query, NamingRules::Postgres) {
            Some(names) => match names.first() {
                Some(Some(name)) if name != UNNAMED => (Some(name.clone()), 2),
                _ => (None, 0),
            },
            None => (None, 0),
        },
        Expr::Array(_) => strong("array"),
        Expr::Tuple(_) => strong("row"),
        Expr::Case { else_result, .. } => {
            let (name, strength) = else_result.as_deref().map_or((None, 0), postgres_name);
            if strength <= 1 {
                (Some("case".into()), 1)
            } else {
                (name, strength)
            }
        }
        Expr::Extract { .. } => strong("extract"),
        Expr::Substring { .. } => strong("substring"),
        Expr::Position { .. } => strong("position"),
        Expr::Overlay { .. } => strong("overlay"),
        Expr::Ceil { .. } => strong("ceil"),
        Expr::Floor { .. } => strong("floor"),
        Expr::AtTimeZone { .. } => strong("timezone"),
        Expr::Trim { trim_where, .. } => match trim_where {
            Some(TrimWhereField::Leading) => strong("ltrim"),
            Some(TrimWhereField::Trailing) => strong("rtrim"),
            _ => strong("btrim"),
        },
        Expr::CompoundFieldAccess { root, access_chain } => {
            // `(row).field` names the field; subscripts alone keep the base's name.
            let field = access_chain.iter().rev().find_map(|access| match access {
                AccessExpr::Dot(Expr::Identifier(ident)) => Some(ident_name(ident)),
                _ => None,
            });
            match field {
                Some(name) => (Some(name), 2),
                None => postgres_name(root),
            }
        }
        Expr::Value(value) if matches!(value.value, Value::Boolean(_)) => {
            // PostgreSQL's grammar reads TRUE and FALSE as a cast of a string to bool.
            (Some("bool".into()), 1)
        }
        _ => (None, 0),
    }
}

/// The name PostgreSQL's catalog gives a type written in a cast (`int` is `int4`).
fn postgres_type_name(data_type: &DataType) -> String {
    use DataType as D;
    match data_type {
        D::Int(_) | D::Integer(_) | D::Int4(_) => "int4".into(),
        D::SmallInt(_) | D::Int2(_) => "int2".into(),
        D::BigInt(_) | D::Int8(_) => "int8".into(),
        D::Real | D::Float4 => "float4".into(),
        D::Double(_) | D::DoublePrecision | D::Float8 => "float8".into(),
        D::Float(ExactNumberInfo::Precision(bits)) if *bits <= 24 => "float4".into(),
        D::Float(_) => "float8".into(),
        D::Numeric(_) | D::Decimal(_) | D::Dec(_) => "numeric".into(),
        D::Text => "text".into(),
        D::Varchar(_) | D::CharacterVarying(_) | D::CharVarying(_) => "varchar".into(),
        D::Char(_) | D::Character(_) => "bpchar".into(),
        D::Boolean | D::Bool => "bool".into(),
        D::Date => "date".into(),
        D::Time(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => "timetz".into(),
        D::Time(..) => "time".into(),
        D::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => "timestamptz".into(),
        D::Timestamp(..) => "timestamp".into(),
        D::Interval { .. } => "interval".into(),
        D::Bytea => "bytea".into(),
        D::JSON => "json".into(),
        D::JSONB => "jsonb".into(),
        D::Uuid => "uuid".into(),
        D::Regclass => "regclass".into(),
        D::Array(
            ast::ArrayElemTypeDef::SquareBracket(inner, _)
            | ast::ArrayElemTypeDef::AngleBracket(inner)
            | ast::ArrayElemTypeDef::Parenthesis(inner),
        ) => postgres_type_name(inner),
        D::Custom(name, _) => last_name(name),
        other => other.to_string().to_lowercase(),
    }
}

/// An expression as CrateDB prints it for an output name (its `ExpressionFormatter`).
fn crate_text(expr: &Expr) -> String {
    match expr {
        Expr::Identifier(ident) => ident_name(ident),
        Expr::CompoundIdentifier(parts) => parts.last().map(ident_name).unwrap_or_default(),
        Expr::Value(value) => crate_value_text(&value.value),
        Expr::Nested(inner) => crate_text(inner),
        Expr::BinaryOp { left, op, right } => {
            format!(
                "({} {} {})",
                crate_text(left),
                crate_operator(op),
                crate_text(right)
            )
        }
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => format!("- {}", crate_text(expr)),
        Expr::UnaryOp {
            op: UnaryOperator::Plus,
            expr,
        } => format!("+ {}", crate_text(expr)),
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => format!("(NOT {})", crate_text(expr)),
        Expr::Cast {
            expr,
            data_type,
            kind,
            ..
        } => {
            let keyword = if *kind == CastKind::TryCast {
                "TRY_CAST"
            } else {
                "CAST"
            };
            format!(
                "{keyword}({} AS {})",
                crate_text(expr),
                data_type.to_string().to_lowercase()
            )
        }
        Expr::Function(function) => {
            let name = last_name(&function.name);
            match &function.args {
                FunctionArguments::None => name,
                FunctionArguments::List(list) => {
                    let args: Vec<String> = list
                        .args
                        .iter()
                        .map(|arg| match arg {
                            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => crate_text(e),
                            other => other.to_string(),
                        })
                        .collect();
                    let distinct = if list.duplicate_treatment.is_some() {
                        "DISTINCT "
                    } else {
                        ""
                    };
                    format!("{name}({distinct}{})", args.join(", "))
                }
                FunctionArguments::Subquery(query) => format!("{name}({query})"),
            }
        }
        Expr::CompoundFieldAccess { root, access_chain } => {
            let mut text = crate_text(root);
            for access in access_chain {
                match access {
                    AccessExpr::Subscript(Subscript::Index { index }) => {
                        text.push('[');
                        text.push_str(&crate_text(index));
                        text.push(']');
                    }
                    other => text.push_str(&other.to_string()),
                }
            }
            text
        }
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            let mut text = String::from("(CASE");
            if let Some(operand) = operand {
                text.push(' ');
                text.push_str(&crate_text(operand));
            }
            for when in conditions {
                text.push_str(&format!(
                    " WHEN {} THEN {}",
                    crate_text(&when.condition),
                    crate_text(&when.result)
                ));
            }
            if let Some(result) = else_result {
                text.push_str(&format!(" ELSE {}", crate_text(result)));
            }
            text.push_str(" END)");
            text
        }
        Expr::InList {
            expr,
            list,
            negated,
        } => format!(
            "({} {}IN ({}))",
            crate_text(expr),
            if *negated { "NOT " } else { "" },
            list.iter().map(crate_text).collect::<Vec<_>>().join(", ")
        ),
        Expr::IsNull(inner) => format!("({} IS NULL)", crate_text(inner)),
        Expr::IsNotNull(inner) => format!("({} IS NOT NULL)", crate_text(inner)),
        Expr::Array(array) => format!(
            "[{}]",
            array
                .elem
                .iter()
                .map(crate_text)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

fn crate_operator(op: &BinaryOperator) -> String {
    match op {
        BinaryOperator::And => "AND".into(),
        BinaryOperator::Or => "OR".into(),
        other => other.to_string(),
    }
}

fn crate_value_text(value: &Value) -> String {
    match value {
        Value::Number(text, _) => match text.parse::<i64>() {
            Ok(integer) => integer.to_string(),
            Err(_) => text
                .parse::<f64>()
                .map(java_double_text)
                .unwrap_or_else(|_| text.clone()),
        },
        Value::SingleQuotedString(text) => format!("'{}'", text.replace('\'', "''")),
        Value::Boolean(b) => b.to_string(),
        Value::Null => "NULL".into(),
        other => other.to_string(),
    }
}

/// Java's `Double.toString`, which CrateDB prints double literals with: plain decimal with at
/// least one fraction digit for magnitudes in [1e-3, 1e7), else `d.dddE±n`.
fn java_double_text(value: f64) -> String {
    if !value.is_finite() {
        return if value.is_nan() {
            "NaN".into()
        } else if value > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let magnitude = value.abs();
    if magnitude == 0.0 || (1e-3..1e7).contains(&magnitude) {
        let text = value.to_string();
        if text.contains('.') {
            text
        } else {
            format!("{text}.0")
        }
    } else {
        let text = format!("{value:e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        let mantissa = if mantissa.contains('.') {
            mantissa.to_string()
        } else {
            format!("{mantissa}.0")
        };
        format!("{mantissa}E{exponent}")
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::DataType as ArrowType;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    use super::*;

    fn names(sql: &str, rules: NamingRules) -> Vec<String> {
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        let Statement::Query(query) = &statement else {
            panic!("not a query")
        };
        let count = select_list_names(query, rules).unwrap().len();
        let planned: Vec<Field> = (0..count)
            .map(|i| Field::new(format!("planned{i}"), ArrowType::Int64, true))
            .collect();
        let schema = Arc::new(Schema::new(planned));
        rename_schema(&statement, &schema, rules)
            .unwrap()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    #[test]
    fn postgresql_names() {
        let cases = [
            ("SELECT 1", "?column?"),
            ("SELECT $1::int + 1", "?column?"),
            ("SELECT count(*) FROM t", "count"),
            ("SELECT SUM(x) FROM t", "sum"),
            ("SELECT max(x) FROM t", "max"),
            ("SELECT abs(x) FROM t", "abs"),
            ("SELECT '1'::int", "int4"),
            ("SELECT CAST('1' AS bigint)", "int8"),
            ("SELECT x::text FROM t", "x"),
            ("SELECT 1.5::double precision", "float8"),
            ("SELECT '{a}'::text[]", "text"),
            ("SELECT t.a FROM t", "a"),
            ("SELECT \"Mixed\" FROM t", "Mixed"),
            ("SELECT a + 1 FROM t", "?column?"),
            ("SELECT CASE WHEN a THEN 1 END FROM t", "case"),
            ("SELECT CASE WHEN a THEN 1 ELSE b END FROM t", "b"),
            ("SELECT EXISTS (SELECT 1)", "exists"),
            ("SELECT (SELECT count(*) FROM t)", "count"),
            ("SELECT ARRAY[1, 2]", "array"),
            ("SELECT coalesce(a, 1) FROM t", "coalesce"),
            ("SELECT a IS NULL FROM t", "?column?"),
            ("SELECT 1 IN (SELECT a FROM t)", "?column?"),
            ("SELECT current_timestamp", "current_timestamp"),
            ("SELECT DATE '2024-01-01'", "date"),
            ("SELECT trim(a) FROM t", "btrim"),
            ("SELECT arr[1] FROM t", "arr"),
            ("SELECT a AS b FROM t", "b"),
            ("SELECT 1 UNION SELECT 2", "?column?"),
        ];
        for (sql, expected) in cases {
            assert_eq!(names(sql, NamingRules::Postgres), vec![expected], "{sql}");
        }
        assert_eq!(
            names("SELECT 1, 2", NamingRules::Postgres),
            vec!["?column?", "?column?"]
        );
    }

    #[test]
    fn cratedb_names() {
        let cases = [
            ("SELECT 1", "1"),
            ("SELECT 1 + 1", "(1 + 1)"),
            ("SELECT 'a'", "'a'"),
            ("SELECT -1", "- 1"),
            ("SELECT count(*) FROM t", "count"),
            ("SELECT max(x) FROM t", "max"),
            ("SELECT x::int FROM t", "CAST(x AS int)"),
            ("SELECT x + 1 FROM t", "(x + 1)"),
            ("SELECT o['a'] FROM t", "o['a']"),
            ("SELECT true", "true"),
            ("SELECT NULL", "NULL"),
            ("SELECT $1", "$1"),
            ("SELECT 1.5", "1.5"),
            ("SELECT 1e20", "1.0E20"),
            ("SELECT a = 1 AND b FROM t", "((a = 1) AND b)"),
            ("SELECT abs(x) + 1 FROM t", "(abs(x) + 1)"),
        ];
        for (sql, expected) in cases {
            assert_eq!(names(sql, NamingRules::Crate), vec![expected], "{sql}");
        }
    }

    #[test]
    fn wildcards_keep_planned_names() {
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, "SELECT 1, *, count(*) FROM t")
            .unwrap()
            .remove(0);
        let planned: Vec<Field> = ["Int64(1)", "a", "b", "count(*)"]
            .iter()
            .map(|n| Field::new(*n, ArrowType::Int64, true))
            .collect();
        let renamed = rename_schema(
            &statement,
            &Arc::new(Schema::new(planned)),
            NamingRules::Postgres,
        )
        .unwrap();
        let names: Vec<&str> = renamed.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["?column?", "a", "b", "count"]);
    }
}
