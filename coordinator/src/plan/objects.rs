//! Planning `o['key']` where DataFusion's own field access cannot: a key of an IGNORED object
//! that has no sub-column lives in the object's JSON of other keys
//! (`creek_common::object::IGNORED_KEYS`) and is read from there, as text; a key of an array
//! of objects is the array of each object's value. Every other field access is left to
//! DataFusion.

use std::sync::Arc;

use creek_common::object::IGNORED_KEYS;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawFieldAccessExpr};
use datafusion::logical_expr::{lit, Expr, ExprSchemable, GetFieldAccess};

/// The planner; it must come before DataFusion's field access planner.
#[derive(Debug)]
pub struct IgnoredKeyPlanner;

impl ExprPlanner for IgnoredKeyPlanner {
    fn plan_field_access(
        &self,
        expr: RawFieldAccessExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawFieldAccessExpr>> {
        let GetFieldAccess::NamedStructField {
            name: ScalarValue::Utf8(Some(key)),
        } = &expr.field_access
        else {
            return Ok(PlannerResult::Original(expr));
        };
        let fields = match expr.expr.get_type(schema) {
            Ok(DataType::Struct(fields)) => fields,
            Ok(DataType::List(element)) if matches!(element.data_type(), DataType::Struct(_)) => {
                // A key of an array of objects: the array of every object's value.
                let read = Expr::ScalarFunction(ScalarFunction::new_udf(
                    Arc::new(creek_common::object::ArrayField::udf()),
                    vec![expr.expr.clone(), lit(key.clone())],
                ));
                return Ok(PlannerResult::Planned(read));
            }
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let has_ignored_keys = fields
            .iter()
            .any(|f| f.name() == IGNORED_KEYS && f.data_type() == &DataType::Utf8);
        if !has_ignored_keys || fields.iter().any(|f| f.name() == key) {
            return Ok(PlannerResult::Original(expr));
        }
        let others = datafusion::functions::core::get_field()
            .call(vec![expr.expr.clone(), lit(IGNORED_KEYS)]);
        let read = Expr::ScalarFunction(ScalarFunction::new_udf(
            Arc::new(creek_common::object::IgnoredKey::udf()),
            vec![others, lit(key.clone())],
        ));
        Ok(PlannerResult::Planned(read))
    }
}
