//! Integer literals beyond `bigint`. PostgreSQL reads `92233720368547758071` as an exact
//! numeric; DataFusion reads it as a double and drops digits. Such a literal becomes a numeric
//! of its own precision here: on the syntax tree before planning, and as a value for the
//! statements answered without planning (`INSERT ... VALUES`, key lookups).
//!
//! Only integer-shaped literals are touched: `1.5` stays a double, as CrateDB reads it.

use creek_common::error::ErrorCode;
use datafusion::arrow::datatypes::i256;
use datafusion::common::ScalarValue;
use sqlparser::ast::{CastKind, DataType, ExactNumberInfo, Expr, UnaryOperator, Value};

use crate::error::{Error, Result};

/// The widest numeric Creek computes with (Arrow's 256-bit decimal).
const MAX_DIGITS: usize = 76;

/// Whether `text` is an optionally negative run of decimal digits.
fn is_integer_shaped(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn digit_count(text: &str) -> usize {
    let digits = text.strip_prefix('-').unwrap_or(text);
    digits.trim_start_matches('0').len().max(1)
}

/// The value of an integer literal that does not fit a `bigint`: `Some(None)` when it is too
/// long for any numeric (the planned path reports that), `None` when `text` is not such a
/// literal.
pub fn whole_number(text: &str) -> Option<Option<ScalarValue>> {
    if !is_integer_shaped(text) || text.parse::<i64>().is_ok() {
        return None;
    }
    let digits = digit_count(text);
    if digits <= 38 {
        let value = text.parse::<i128>().ok()?;
        return Some(Some(ScalarValue::Decimal128(Some(value), digits as u8, 0)));
    }
    if digits <= MAX_DIGITS {
        return Some(
            i256::from_string(text).map(|v| ScalarValue::Decimal256(Some(v), digits as u8, 0)),
        );
    }
    Some(None)
}

/// Refuses an integer literal with more digits than any numeric holds, before planning
/// (22003, as PostgreSQL reports a value out of its type's range).
pub fn check_length(text: &str) -> Result<()> {
    if is_integer_shaped(text) && digit_count(text) > MAX_DIGITS {
        return Err(Error::new(
            ErrorCode::NumericOutOfRange,
            format!(
                "integer literal of {} digits is out of range: a numeric holds at most {MAX_DIGITS}",
                digit_count(text)
            ),
        ));
    }
    Ok(())
}

/// The replacement for an integer literal (or a negated one) beyond `bigint`: a cast of its
/// digits to a numeric of their precision, which DataFusion evaluates exactly.
pub fn rewrite(expr: &Expr) -> Option<Expr> {
    let text = match expr {
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr: inner,
        } => match inner.as_ref() {
            Expr::Value(value) => match &value.value {
                Value::Number(text, _)
                    if is_integer_shaped(text) && text.parse::<i64>().is_err() =>
                {
                    format!("-{text}")
                }
                _ => return None,
            },
            _ => return None,
        },
        Expr::Value(value) => match &value.value {
            Value::Number(text, _) if is_integer_shaped(text) => text.clone(),
            _ => return None,
        },
        _ => return None,
    };
    if text.parse::<i64>().is_ok() {
        // `-9223372036854775808` is the smallest bigint; its digits alone are not one.
        return matches!(expr, Expr::UnaryOp { .. })
            .then(|| Expr::value(Value::Number(text, false)));
    }
    let precision = digit_count(&text) as u64;
    Some(Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(Expr::value(Value::SingleQuotedString(text))),
        data_type: DataType::Numeric(ExactNumberInfo::PrecisionAndScale(precision, 0)),
        array: false,
        format: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_integers_beyond_bigint_change() {
        assert_eq!(whole_number("12"), None);
        assert_eq!(whole_number("1.5"), None);
        assert_eq!(whole_number("1e30"), None);
        assert_eq!(
            whole_number("92233720368547758071"),
            Some(Some(ScalarValue::Decimal128(
                Some(92233720368547758071),
                20,
                0
            )))
        );
        assert_eq!(
            whole_number("-9223372036854775809"),
            Some(Some(ScalarValue::Decimal128(
                Some(-9223372036854775809),
                19,
                0
            )))
        );
        let long = "1".repeat(60);
        assert!(matches!(
            whole_number(&long),
            Some(Some(ScalarValue::Decimal256(Some(_), 60, 0)))
        ));
        assert_eq!(whole_number(&"9".repeat(77)), Some(None));
    }

    #[test]
    fn literals_are_rewritten_exactly() {
        let number = |text: &str| Expr::value(Value::Number(text.into(), false));
        let negated = |text: &str| Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr: Box::new(number(text)),
        };
        assert_eq!(rewrite(&number("42")), None);
        assert_eq!(rewrite(&negated("42")), None);
        assert_eq!(
            rewrite(&negated("9223372036854775808")),
            Some(number("-9223372036854775808"))
        );
        assert_eq!(
            rewrite(&number("92233720368547758071")).map(|e| e.to_string()),
            Some("CAST('92233720368547758071' AS NUMERIC(20,0))".into())
        );
        assert_eq!(
            rewrite(&negated("92233720368547758071")).map(|e| e.to_string()),
            Some("CAST('-92233720368547758071' AS NUMERIC(20,0))".into())
        );
    }
}
