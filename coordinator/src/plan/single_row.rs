//! Scalar subqueries that do not aggregate, such as `(SELECT d.adbin FROM pg_attrdef d WHERE
//! d.adrelid = a.attrelid)`.
//!
//! PostgreSQL runs them and fails with 21000 only if one returns more than one row. DataFusion
//! refuses to plan a correlated one unless it aggregates. Before planning, the subquery's one
//! output expression `e` is wrapped in `single_row_value(e)`, an aggregate that returns the only
//! value, NULL for no rows, and the 21000 error for a second row — PostgreSQL's semantics
//! exactly, in a shape DataFusion decorrelates. Subqueries that already aggregate, group,
//! select distinct values or limit their rows are left alone.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};

use creek_common::error::{CodedError, ErrorCode};
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, UInt64Type};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};
use sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments,
    GroupByExpr, Ident, ObjectName, Query, SelectItem, SetExpr, Statement, VisitMut, VisitorMut,
};

/// Name of the aggregate the rewrite inserts.
pub const FUNCTION_NAME: &str = "single_row_value";

/// Wraps the output of every non-aggregating scalar subquery in `statement`.
pub fn wrap_scalar_subqueries(statement: &mut Statement) {
    let _ = statement.visit(&mut Wrapper);
}

struct Wrapper;

impl VisitorMut for Wrapper {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Subquery(query) = expr {
            wrap(query);
        }
        ControlFlow::Continue(())
    }
}

fn wrap(query: &mut Query) {
    if query.limit_clause.is_some() || query.fetch.is_some() || query.order_by.is_some() {
        return;
    }
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    let grouped = match &select.group_by {
        GroupByExpr::All(_) => true,
        GroupByExpr::Expressions(exprs, _) => !exprs.is_empty(),
    };
    if grouped
        || select.having.is_some()
        || select.distinct.is_some()
        || select.from.is_empty()
        || select.projection.len() != 1
        || !select.named_window.is_empty()
    {
        return;
    }
    let item = &mut select.projection[0];
    let expr = match item {
        SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => expr,
        _ => return,
    };
    // An aggregate or window call already decides the row count.
    if contains_aggregate_or_window(expr) {
        return;
    }
    let inner = std::mem::replace(expr, Expr::value(sqlparser::ast::Value::Null));
    *expr = Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(FUNCTION_NAME)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(inner))],
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    });
}

/// Whether `expr` calls an aggregate or window function outside nested subqueries. Names are
/// checked against DataFusion's aggregates, which is where planning would resolve them.
fn contains_aggregate_or_window(expr: &Expr) -> bool {
    use sqlparser::ast::{Visit, Visitor};
    struct Finder(bool, usize);
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.1 += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.1 -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Expr::Function(function) = expr {
                let name = function.name.to_string().to_lowercase();
                let aggregate = aggregate_names().contains(&name);
                if self.1 == 0 && (function.over.is_some() || aggregate) {
                    self.0 = true;
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut finder = Finder(false, 0);
    let _ = expr.visit(&mut finder);
    finder.0
}

/// Names and aliases of DataFusion's aggregate functions.
fn aggregate_names() -> &'static HashSet<String> {
    static NAMES: OnceLock<HashSet<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        datafusion::functions_aggregate::all_default_aggregate_functions()
            .iter()
            .flat_map(|f| std::iter::once(f.name().to_string()).chain(f.aliases().iter().cloned()))
            .collect()
    })
}

/// The `single_row_value` aggregate.
pub fn single_row_value() -> AggregateUDF {
    AggregateUDF::new_from_impl(SingleRowValue {
        signature: Signature::any(1, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SingleRowValue {
    signature: Signature,
}

impl AggregateUDFImpl for SingleRowValue {
    fn name(&self) -> &str {
        FUNCTION_NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Null))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        Ok(Box::new(SingleRowAccumulator {
            value: ScalarValue::try_from(args.return_field.data_type())?,
            rows: 0,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(
                args.return_field
                    .as_ref()
                    .clone()
                    .with_name(format_state_name(args.name, "value"))
                    .with_nullable(true),
            ),
            Arc::new(Field::new(
                format_state_name(args.name, "rows"),
                DataType::UInt64,
                false,
            )),
        ])
    }
}

#[derive(Debug)]
struct SingleRowAccumulator {
    value: ScalarValue,
    rows: u64,
}

fn too_many_rows() -> DataFusionError {
    DataFusionError::External(Box::new(CodedError::new(
        ErrorCode::CardinalityViolation,
        "more than one row returned by a subquery used as an expression",
    )))
}

impl SingleRowAccumulator {
    fn add(&mut self, rows: u64, value: impl FnOnce() -> DfResult<ScalarValue>) -> DfResult<()> {
        if rows == 0 {
            return Ok(());
        }
        self.rows += rows;
        if self.rows > 1 {
            return Err(too_many_rows());
        }
        self.value = value()?;
        Ok(())
    }
}

impl Accumulator for SingleRowAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let Some(array) = values.first() else {
            return Ok(());
        };
        self.add(array.len() as u64, || ScalarValue::try_from_array(array, 0))
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let (Some(values), Some(counts)) = (states.first(), states.get(1)) else {
            return Ok(());
        };
        let counts = counts.as_primitive::<UInt64Type>();
        for index in 0..counts.len() {
            self.add(counts.value(index), || {
                ScalarValue::try_from_array(values, index)
            })?;
        }
        Ok(())
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![
            self.value.clone(),
            ScalarValue::UInt64(Some(self.rows)),
        ])
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        Ok(self.value.clone())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.value.size() - std::mem::size_of_val(&self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("test SQL parses")
            .remove(0);
        wrap_scalar_subqueries(&mut statement);
        statement.to_string()
    }

    #[test]
    fn only_non_aggregating_subqueries_are_wrapped() {
        assert_eq!(
            rewritten("SELECT (SELECT b.x FROM b WHERE b.k = a.k) FROM a"),
            "SELECT (SELECT single_row_value(b.x) FROM b WHERE b.k = a.k) FROM a"
        );
        assert_eq!(
            rewritten("SELECT (SELECT upper(b.x) FROM b WHERE b.k = a.k) FROM a"),
            "SELECT (SELECT single_row_value(upper(b.x)) FROM b WHERE b.k = a.k) FROM a"
        );
        for unchanged in [
            "SELECT (SELECT max(b.x) FROM b WHERE b.k = a.k) FROM a",
            "SELECT (SELECT b.x FROM b WHERE b.k = a.k LIMIT 1) FROM a",
            "SELECT (SELECT b.x FROM b GROUP BY b.x) FROM a",
            "SELECT (SELECT 1) FROM a",
        ] {
            assert_eq!(rewritten(unchanged), unchanged);
        }
    }

    #[test]
    fn a_second_row_is_an_error() {
        let mut accumulator = SingleRowAccumulator {
            value: ScalarValue::Int64(None),
            rows: 0,
        };
        let one: ArrayRef = Arc::new(datafusion::arrow::array::Int64Array::from(vec![7]));
        accumulator
            .update_batch(std::slice::from_ref(&one))
            .expect("one row");
        assert_eq!(
            accumulator.evaluate().expect("value"),
            ScalarValue::Int64(Some(7))
        );
        assert!(accumulator.update_batch(&[one]).is_err());
    }
}
