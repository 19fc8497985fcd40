//! Planning `MATCH`: the parser rewrote each predicate into a call of `__creek_match(query,
//! 'options', 'target', boost, ...)` (`sql::parse::fulltext`). Before DataFusion plans the
//! statement, [`resolve_matches`] finds the table each call searches (the one of the
//! statement's tables with a FULLTEXT index of that name) and anchors the call to it by a
//! column of that table, so that DataFusion pushes it into that table's scan; the scan
//! (`ShardTable`) takes it as an exact filter ([`match_spec_of`]) and the data nodes run it.
//!
//! The function itself cannot be evaluated row by row: a `MATCH` that stays above a scan
//! (under OR or NOT, or over a join's output) fails with an error saying so.

use std::sync::Arc;

use creek_common::error::ErrorCode;
use creek_common::fulltext::{MatchField, MatchOptions, MatchSpec, MatchType};
use creek_common::schema::TableSchema;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use sqlparser::ast::{self, VisitMut, VisitorMut};

use crate::catalog::shard_table::ShardTable;
use crate::error::{Error, Result};
use crate::plan::identifiers::ident_name;
use crate::sql::parse::MATCH_FUNCTION;

/// The `MATCH` function: planned, never evaluated.
#[derive(Debug, PartialEq, Eq, Hash)]
struct MatchFunction {
    signature: Signature,
}

impl ScalarUDFImpl for MatchFunction {
    fn name(&self) -> &str {
        MATCH_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Err(Error::new(
            ErrorCode::FeatureNotSupported,
            "MATCH can only filter a table's rows directly: it cannot be used under OR or NOT, \
             in a select list, or on a join's output",
        )
        .into_datafusion())
    }
}

/// The function `MATCH` predicates are rewritten to, for registering with a context.
pub fn match_function() -> ScalarUDF {
    ScalarUDF::new_from_impl(MatchFunction {
        // Stable, not volatile: DataFusion does not push volatile predicates into scans.
        signature: Signature::variadic_any(Volatility::Stable),
    })
}

/// A table of the statement: how queries name it, and its definition.
struct Relation {
    qualifier: String,
    table: Arc<TableSchema>,
}

/// The tables the statement's FROM clauses name (views and system tables have no FULLTEXT
/// indexes and are left out).
async fn relations(state: &SessionState, statement: &ast::Statement) -> Vec<Relation> {
    let mut names = Vec::new();
    struct Collect<'a>(&'a mut Vec<(ast::ObjectName, Option<String>)>);
    impl ast::Visitor for Collect<'_> {
        type Break = ();
        fn pre_visit_table_factor(
            &mut self,
            factor: &ast::TableFactor,
        ) -> std::ops::ControlFlow<()> {
            if let ast::TableFactor::Table { name, alias, .. } = factor {
                self.0
                    .push((name.clone(), alias.as_ref().map(|a| ident_name(&a.name))));
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let _ = ast::Visit::visit(statement, &mut Collect(&mut names));
    let mut out = Vec::new();
    for (name, alias) in names {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident())
            .map(ident_name)
            .collect();
        let reference = match parts.as_slice() {
            [table] => datafusion::common::TableReference::bare(table.as_str()),
            [schema, table] => {
                datafusion::common::TableReference::partial(schema.as_str(), table.as_str())
            }
            _ => continue,
        };
        let Ok(schema) = state.schema_for_ref(reference.clone()) else {
            continue;
        };
        let Ok(Some(provider)) = schema.table(reference.table()).await else {
            continue;
        };
        let Some(shard_table) = provider.downcast_ref::<ShardTable>() else {
            continue;
        };
        out.push(Relation {
            qualifier: alias.unwrap_or_else(|| reference.table().to_string()),
            table: shard_table.table().clone(),
        });
    }
    out
}

/// Anchors every `MATCH` call of `statement` to the table whose FULLTEXT index it searches.
pub async fn resolve_matches(state: &SessionState, statement: &mut ast::Statement) -> Result<()> {
    if !mentions_match(statement) {
        return Ok(());
    }
    let relations = relations(state, statement).await;
    struct Resolve<'a> {
        relations: &'a [Relation],
        error: Option<Error>,
    }
    impl VisitorMut for Resolve<'_> {
        type Break = ();
        fn post_visit_expr(&mut self, expr: &mut ast::Expr) -> std::ops::ControlFlow<()> {
            let ast::Expr::Function(function) = expr else {
                return std::ops::ControlFlow::Continue(());
            };
            if !function
                .name
                .to_string()
                .eq_ignore_ascii_case(MATCH_FUNCTION)
            {
                return std::ops::ControlFlow::Continue(());
            }
            match anchor(self.relations, function) {
                Ok(()) => std::ops::ControlFlow::Continue(()),
                Err(error) => {
                    self.error = Some(error);
                    std::ops::ControlFlow::Break(())
                }
            }
        }
    }
    let mut resolve = Resolve {
        relations: &relations,
        error: None,
    };
    let _ = statement.visit(&mut resolve);
    resolve.error.map_or(Ok(()), Err)
}

fn mentions_match(statement: &ast::Statement) -> bool {
    ast::visit_expressions(statement, |expr| match expr {
        ast::Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case(MATCH_FUNCTION) => {
            std::ops::ControlFlow::Break(())
        }
        _ => std::ops::ControlFlow::Continue(()),
    })
    .is_break()
}

fn function_args(function: &mut ast::Function) -> Option<&mut Vec<ast::FunctionArg>> {
    match &mut function.args {
        ast::FunctionArguments::List(list) => Some(&mut list.args),
        _ => None,
    }
}

fn literal_text(arg: &ast::FunctionArg) -> Option<String> {
    match arg {
        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::Value(value))) => {
            match &value.value {
                ast::Value::SingleQuotedString(text) => Some(text.clone()),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Adds to `function`'s arguments a column of the one table that has the FULLTEXT indexes
/// its targets name, qualified as the statement names the table.
fn anchor(relations: &[Relation], function: &mut ast::Function) -> Result<()> {
    let args = function_args(function).ok_or_else(malformed)?;
    if args.len() < 4 || args.len() % 2 != 0 {
        // Anchored already (an odd count), or not made by the parser.
        return if args.len() % 2 == 1 {
            Ok(())
        } else {
            Err(malformed())
        };
    }
    let mut table: Option<&Relation> = None;
    for pair in args[2..].chunks(2) {
        let target = literal_text(&pair[0]).ok_or_else(malformed)?;
        let (qualifier, name) = match target.rsplit_once('.') {
            Some((qualifier, name)) => (Some(qualifier), name),
            None => (None, target.as_str()),
        };
        let candidates: Vec<&Relation> = relations
            .iter()
            .filter(|r| qualifier.is_none_or(|q| r.qualifier == q || r.table.name == q))
            .filter(|r| r.table.fulltext_index(name).is_some())
            .collect();
        let found = match candidates.as_slice() {
            [one] => *one,
            [] => {
                let column = relations.iter().find(|r| {
                    qualifier.is_none_or(|q| r.qualifier == q) && r.table.column(name).is_some()
                });
                return Err(match column {
                    Some(r) => Error::new(
                        ErrorCode::InvalidParameterValue,
                        format!(
                            "column {name} of {} has no FULLTEXT index: declare it with INDEX \
                             USING FULLTEXT to MATCH it",
                            r.table.name
                        ),
                    ),
                    None => Error::new(
                        ErrorCode::UndefinedColumn,
                        format!("no FULLTEXT index or column {target} in the queried tables"),
                    ),
                });
            }
            _ => {
                return Err(Error::new(
                    ErrorCode::InvalidParameterValue,
                    format!("MATCH target {target} is ambiguous: qualify it with its table"),
                ))
            }
        };
        if table.is_some_and(|t| !std::ptr::eq(t, found)) {
            return Err(Error::new(
                ErrorCode::FeatureNotSupported,
                "one MATCH can only search indexes of one table",
            ));
        }
        table = Some(found);
    }
    let relation = table.ok_or_else(malformed)?;
    // Rewrite the targets to bare index names, then add the anchor column.
    for pair in args[2..].chunks_mut(2) {
        let target = literal_text(&pair[0]).ok_or_else(malformed)?;
        let name = target
            .rsplit_once('.')
            .map_or(target.as_str(), |(_, n)| n)
            .to_string();
        pair[0] = ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::value(
            ast::Value::SingleQuotedString(name),
        )));
    }
    let first_index = literal_text(&args[2]).ok_or_else(malformed)?;
    let column = relation
        .table
        .fulltext_index(&first_index)
        .and_then(|index| index.columns.first())
        .ok_or_else(malformed)?;
    args.push(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(
        ast::Expr::CompoundIdentifier(vec![
            ast::Ident::with_quote('"', &relation.qualifier),
            ast::Ident::with_quote('"', column),
        ]),
    )));
    Ok(())
}

fn malformed() -> Error {
    Error::new(
        ErrorCode::Internal,
        format!("{MATCH_FUNCTION} is only made by MATCH predicates"),
    )
}

/// The `MATCH` `filter` stands for, if it is one: `None` for any other filter, an error for a
/// MATCH whose query is not a constant text.
pub fn match_spec_of(filter: &Expr) -> Option<Result<MatchSpec>> {
    let Expr::ScalarFunction(call) = filter else {
        return None;
    };
    if call.name() != MATCH_FUNCTION {
        return None;
    }
    Some(spec_from_args(&call.args))
}

fn spec_from_args(args: &[Expr]) -> Result<MatchSpec> {
    let text = |expr: &Expr| match expr {
        Expr::Literal(ScalarValue::Utf8(Some(text)), _)
        | Expr::Literal(ScalarValue::LargeUtf8(Some(text)), _)
        | Expr::Literal(ScalarValue::Utf8View(Some(text)), _) => Some(text.clone()),
        _ => None,
    };
    let query = match args.first() {
        Some(Expr::Literal(ScalarValue::Null, _)) => String::new(),
        Some(expr) => text(expr).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidParameterValue,
                "the query of a MATCH must be a text constant or parameter",
            )
        })?,
        None => return Err(malformed()),
    };
    #[derive(serde::Deserialize)]
    struct Options {
        match_type: MatchType,
        options: MatchOptions,
    }
    let options: Options = args
        .get(1)
        .and_then(text)
        .and_then(|json| serde_json::from_str(&json).ok())
        .ok_or_else(malformed)?;
    let mut fields = Vec::new();
    // Pairs of index name and boost, then the anchor column.
    let pairs = args
        .get(2..args.len().saturating_sub(1))
        .ok_or_else(malformed)?;
    for pair in pairs.chunks(2) {
        let [index, boost] = pair else {
            return Err(malformed());
        };
        let boost = match boost {
            Expr::Literal(value, _) => value.to_string().parse::<f32>().ok(),
            _ => None,
        }
        .ok_or_else(malformed)?;
        fields.push(MatchField {
            index: text(index).ok_or_else(malformed)?,
            boost,
        });
    }
    Ok(MatchSpec {
        fields,
        query,
        match_type: options.match_type,
        options: options.options,
        stats: None,
    })
}
