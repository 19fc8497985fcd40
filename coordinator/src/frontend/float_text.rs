//! PostgreSQL's text form of `real` and `double precision` values (`float4out`/`float8out`),
//! used by every front end that prints floats as text: pgwire's text format and HTTP's JSON.
//!
//! With `extra_float_digits` ≥ 1 (PostgreSQL's default since version 12) a value prints with
//! the fewest digits that read back to the same float, in fixed notation when its decimal
//! exponent is at least -4 and below 15 (6 for `real`) and in exponent notation otherwise,
//! with a sign and at least two exponent digits (`1e+20`, `1.5e-07`). With 0 or less it
//! prints like C's `%.*g` with 15 (6) plus `extra_float_digits` significant digits. `NaN`,
//! `Infinity`, `-Infinity` and `-0` are spelled as PostgreSQL spells them.

/// Significant decimal digits a `double precision` always keeps (C's `DBL_DIG`).
const DOUBLE_DIGITS: i32 = 15;
/// Significant decimal digits a `real` always keeps (C's `FLT_DIG`).
const REAL_DIGITS: i32 = 6;

/// Returns the text PostgreSQL prints for a `double precision` value.
pub fn float8_text(value: f64, extra_float_digits: i32) -> String {
    if let Some(special) = special_text(value.is_nan(), value.is_infinite(), value < 0.0) {
        return special.to_string();
    }
    if extra_float_digits > 0 {
        // `{:e}` prints the shortest digits that round-trip, e.g. `1.2345678901234568e17`.
        shortest_text(&format!("{value:e}"), DOUBLE_DIGITS)
    } else {
        general_text(value, (DOUBLE_DIGITS + extra_float_digits).max(1))
    }
}

/// Returns the text PostgreSQL prints for a `real` value.
pub fn float4_text(value: f32, extra_float_digits: i32) -> String {
    if let Some(special) = special_text(value.is_nan(), value.is_infinite(), value < 0.0) {
        return special.to_string();
    }
    if extra_float_digits > 0 {
        // `{:e}` of an `f32` prints the shortest digits that read back to the same `f32`.
        shortest_text(&format!("{value:e}"), REAL_DIGITS)
    } else {
        general_text(f64::from(value), (REAL_DIGITS + extra_float_digits).max(1))
    }
}

fn special_text(nan: bool, infinite: bool, negative: bool) -> Option<&'static str> {
    match (nan, infinite, negative) {
        (true, _, _) => Some("NaN"),
        (false, true, false) => Some("Infinity"),
        (false, true, true) => Some("-Infinity"),
        _ => None,
    }
}

/// Splits Rust's `{:e}` text (`-1.25e-7`) into sign, digits without the point and exponent.
fn split_exponent_text(text: &str) -> (bool, String, i32) {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = unsigned.split_once('e').unwrap_or((unsigned, "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let exponent = exponent.parse::<i32>().unwrap_or(0);
    (negative, digits, exponent)
}

/// Lays out `digits` (the first one before the decimal point, times 10^`exponent`) the way
/// PostgreSQL's shortest-digits output does: fixed notation for exponents in
/// `-4..fixed_limit`, exponent notation otherwise.
fn shortest_text(exponent_text: &str, fixed_limit: i32) -> String {
    let (negative, digits, exponent) = split_exponent_text(exponent_text);
    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    if (-4..fixed_limit).contains(&exponent) {
        push_fixed(&mut out, &digits, exponent);
    } else {
        push_exponent(&mut out, &digits, exponent);
    }
    out
}

fn push_fixed(out: &mut String, digits: &str, exponent: i32) {
    if exponent < 0 {
        out.push_str("0.");
        for _ in 0..(-exponent - 1) {
            out.push('0');
        }
        out.push_str(digits);
        return;
    }
    let integer_digits = exponent as usize + 1;
    if digits.len() <= integer_digits {
        out.push_str(digits);
        for _ in digits.len()..integer_digits {
            out.push('0');
        }
    } else {
        out.push_str(&digits[..integer_digits]);
        out.push('.');
        out.push_str(&digits[integer_digits..]);
    }
}

fn push_exponent(out: &mut String, digits: &str, exponent: i32) {
    out.push_str(&digits[..1]);
    if digits.len() > 1 {
        out.push('.');
        out.push_str(&digits[1..]);
    }
    out.push('e');
    out.push(if exponent < 0 { '-' } else { '+' });
    let magnitude = exponent.unsigned_abs();
    if magnitude < 10 {
        out.push('0');
    }
    out.push_str(&magnitude.to_string());
}

/// C's `%.{precision}g`: `precision` significant digits, trailing zeros removed, exponent
/// notation when the exponent is below -4 or at least `precision`.
fn general_text(value: f64, precision: i32) -> String {
    let significant = precision as usize;
    // Rounding to `precision` digits first decides the exponent, as `%g` does (9.99999 at 3
    // digits is 1.00e+01).
    let rounded = format!("{:.*e}", significant - 1, value);
    let (negative, digits, exponent) = split_exponent_text(&rounded);
    let trimmed = digits.trim_end_matches('0');
    let digits = if trimmed.is_empty() { "0" } else { trimmed };
    let mut out = String::with_capacity(significant + 8);
    if negative {
        out.push('-');
    }
    if (-4..precision).contains(&exponent) {
        push_fixed(&mut out, digits, exponent);
    } else {
        push_exponent(&mut out, digits, exponent);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_as_postgresql_prints_them() {
        let cases: [(f64, &str); 18] = [
            (10_000_000_000.0, "10000000000"),
            (1e20, "1e+20"),
            (123_456_789_012_345_680.0, "1.2345678901234568e+17"),
            (1e15, "1e+15"),
            (123_456_789_012_345.0, "123456789012345"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1.5, "1.5"),
            (100.0, "100"),
            (0.0, "0"),
            (-0.0, "-0"),
            (-2.5, "-2.5"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (1e308, "1e+308"),
            (0.1 + 0.2, "0.30000000000000004"),
        ];
        for (value, expected) in cases {
            assert_eq!(float8_text(value, 1), expected, "{value:e}");
        }
    }

    #[test]
    fn reals_print_as_postgresql_prints_them() {
        let cases: [(f32, &str); 7] = [
            (1e6, "1e+06"),
            (123_456.0, "123456"),
            (1.1, "1.1"),
            (0.1, "0.1"),
            (-0.0, "-0"),
            (3.4028235e38, "3.4028235e+38"),
            (f32::NAN, "NaN"),
        ];
        for (value, expected) in cases {
            assert_eq!(float4_text(value, 1), expected, "{value:e}");
        }
    }

    #[test]
    fn fewer_float_digits_print_like_printf_g() {
        assert_eq!(float8_text(0.1 + 0.2, 0), "0.3");
        assert_eq!(float8_text(1e20, 0), "1e+20");
        assert_eq!(float8_text(123_456_789.0, -10), "1.2346e+08");
        assert_eq!(float8_text(9.999_999, -12), "10");
        assert_eq!(float4_text(1.1, 0), "1.1");
        assert_eq!(float4_text(1e6, 0), "1e+06");
        assert_eq!(float8_text(-0.0, 0), "-0");
    }
}
