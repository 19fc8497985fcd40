//! Parameter numbering: the `$n` placeholders of client SQL and the by-position lists of
//! their types. A statement may use `$1..$65535` only (checked once, at tokenizing, in
//! `sql/parse.rs`), and lists are only grown through [`set_parameter_type`], so nothing is
//! ever sized by a number a client merely wrote down.

use creek_common::error::ErrorCode;
use datafusion::arrow::datatypes::DataType;
use sqlparser::ast::{self, Statement};

use crate::error::{Error, Result};

/// Sets the type of parameter `n` (1-based) in a by-position list, growing it as needed; a
/// number beyond [`MAX_PARAMETERS`] (only Creek's own rewritten statements have those) is not
/// recorded, so no list is ever sized by more than the protocol allows.
pub fn set_parameter_type(
    types: &mut Vec<Option<DataType>>,
    n: usize,
    data_type: Option<DataType>,
) {
    if n == 0 || n > MAX_PARAMETERS {
        return;
    }
    if types.len() < n {
        types.resize(n, None);
    }
    types[n - 1] = data_type;
}

/// `n` of a `$n` parameter (1-based), to look its value up. Client text never has one above
/// [`MAX_PARAMETERS`] (refused at parse); Creek's own rewrites may (a `bulk_args`
/// batch numbers all of its values), so nothing may be sized by it: see
/// [`set_parameter_type`].
pub fn placeholder_index(expr: &ast::Expr) -> Option<usize> {
    let ast::Expr::Value(value) = expr else {
        return None;
    };
    let ast::Value::Placeholder(name) = &value.value else {
        return None;
    };
    name.strip_prefix('$')?
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
}

/// Returns the highest `$n` in `statement` (0 if it has none), so Describe reports every
/// parameter a statement takes, also those no planned part of it types (an `ON CONFLICT DO
/// UPDATE SET v = $3`).
pub fn highest_parameter(statement: &Statement) -> usize {
    let mut highest = 0;
    let _ = ast::visit_expressions(statement, |expr| {
        if let Some(index) = placeholder_index(expr) {
            highest = highest.max(index.min(MAX_PARAMETERS));
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    highest
}

/// The highest parameter number a statement may use: the protocol's limit, since a Bind
/// message counts its values in 16 bits. Every place that sizes something by a parameter
/// number relies on this bound, checked at tokenizing for every statement of every protocol.
pub const MAX_PARAMETERS: usize = 65_535;

/// Returns `n` of a `$n` placeholder, or `None` for a placeholder of another form (`:name`).
/// A number outside `1..=MAX_PARAMETERS` is an error: clients could otherwise make the server
/// size parameter lists by a number they merely wrote down.
pub fn parameter_number(placeholder: &str) -> Result<Option<usize>> {
    let Some(digits) = placeholder.strip_prefix('$') else {
        return Ok(None);
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match digits.parse::<usize>() {
        Ok(n) if (1..=MAX_PARAMETERS).contains(&n) => Ok(Some(n)),
        _ => Err(Error::new(
            ErrorCode::UndefinedParameter,
            format!("there is no parameter {placeholder}: parameters are numbered $1 to ${MAX_PARAMETERS}"),
        )),
    }
}
