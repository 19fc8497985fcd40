//! A session's settings: what `SET` changes, `SHOW` reads and a client's start-up parameters
//! set. Values are validated where Creek acts on them; others are kept and shown as given.

use std::collections::BTreeMap;

use creek_common::error::ErrorCode;

use crate::error::{Error, Result};

/// Per-session settings changed with `SET` and read with `SHOW`.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSettings {
    /// Schema of unqualified names (`search_path`).
    pub schema: String,
    /// Refresh written shards before acknowledging, so the next query sees the writes.
    pub write_refresh: bool,
    /// PostgreSQL's `extra_float_digits` (-15 to 3): 1 or more prints floats with the shortest
    /// digits that read back exactly, fewer prints 15 (6 for `real`) plus this many digits.
    pub extra_float_digits: i32,
    /// PostgreSQL's `statement_timeout`: a query running longer fails with 57014 (writes run
    /// to their end: one stopped halfway cannot be undone).
    pub statement_timeout: Option<std::time::Duration>,
    /// Other settings, kept and shown as given.
    pub other: BTreeMap<String, String>,
}

impl Default for SessionSettings {
    fn default() -> SessionSettings {
        let mut other = BTreeMap::new();
        for (key, value) in [
            ("server_version", crate::frontend::SERVER_VERSION),
            ("client_encoding", "UTF8"),
            ("datestyle", "ISO, MDY"),
            ("timezone", "UTC"),
            ("standard_conforming_strings", "on"),
            ("application_name", ""),
            ("transaction_isolation", "read committed"),
            (
                "default_table_access_method",
                crate::catalog::pg_catalog::ACCESS_METHOD,
            ),
            ("integer_datetimes", "on"),
            ("is_superuser", "on"),
            (
                "session_authorization",
                crate::catalog::pg_catalog::SUPERUSER,
            ),
        ] {
            other.insert(key.to_string(), value.to_string());
        }
        SessionSettings {
            schema: "doc".to_string(),
            write_refresh: false,
            extra_float_digits: 1,
            statement_timeout: None,
            other,
        }
    }
}

impl SessionSettings {
    /// Returns a setting's value, if it exists.
    pub fn get(&self, name: &str) -> Option<String> {
        match name {
            "search_path" | "schema" => Some(self.schema.clone()),
            "write_refresh" => Some(self.write_refresh.to_string()),
            "extra_float_digits" => Some(self.extra_float_digits.to_string()),
            "statement_timeout" => Some(match self.statement_timeout {
                None => "0".into(),
                Some(limit) if limit.subsec_millis() == 0 => format!("{}s", limit.as_secs()),
                Some(limit) => format!("{}ms", limit.as_millis()),
            }),
            other => self.other.get(other).cloned(),
        }
    }

    /// Sets a setting as a client startup parameter would.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let name = name.to_lowercase();
        let value = value.trim().trim_matches('\'').to_string();
        let settings = self;
        match name.as_str() {
            "search_path" | "schema" => {
                settings.schema = value
                    .split(',')
                    .next()
                    .unwrap_or("doc")
                    .trim()
                    .trim_matches('"')
                    .to_string();
                if settings.schema.is_empty()
                    || settings.schema == "public"
                    || settings.schema == "\"$user\""
                {
                    settings.schema = "doc".to_string();
                }
            }
            "write_refresh" => {
                settings.write_refresh = match value.to_lowercase().as_str() {
                    "true" | "on" | "1" | "yes" => true,
                    "false" | "off" | "0" | "no" => false,
                    _ => {
                        return Err(Error::new(
                            ErrorCode::InvalidParameterValue,
                            format!("invalid value for write_refresh: {value}"),
                        ))
                    }
                }
            }
            "extra_float_digits" => {
                settings.extra_float_digits = value
                    .parse::<i32>()
                    .ok()
                    .filter(|digits| (-15..=3).contains(digits))
                    .ok_or_else(|| {
                        Error::new(
                            ErrorCode::InvalidParameterValue,
                            format!(
                                "invalid value for parameter \"extra_float_digits\": \"{value}\" (an integer from -15 to 3)"
                            ),
                        )
                    })?;
            }
            "statement_timeout" => {
                settings.statement_timeout = parse_timeout(&value).ok_or_else(|| {
                    Error::new(
                        ErrorCode::InvalidParameterValue,
                        format!(
                            "invalid value for parameter \"statement_timeout\": \"{value}\" \
                             (milliseconds, or a number with ms, s, min, h or d; 0 turns it off)"
                        ),
                    )
                })?;
            }
            _ => {
                settings.other.insert(name, value);
            }
        }
        Ok(())
    }
}

/// A PostgreSQL time setting: plain milliseconds or a number with a unit; `Some(None)` for 0
/// (off), `None` for anything else.
fn parse_timeout(value: &str) -> Option<Option<std::time::Duration>> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("default") {
        return Some(None);
    }
    let split = value
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let millis_per = match unit.trim().to_lowercase().as_str() {
        "" | "ms" => 1.0,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    let millis = number * millis_per;
    // PostgreSQL's limit (INT_MAX milliseconds, about 24 days).
    if !millis.is_finite() || millis < 0.0 || millis > f64::from(i32::MAX) {
        return None;
    }
    let millis = millis.round() as u64;
    Some((millis > 0).then(|| std::time::Duration::from_millis(millis)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_timeouts_read_as_postgresql_reads_them() {
        let ms = |m| Some(Some(std::time::Duration::from_millis(m)));
        assert_eq!(parse_timeout("1500"), ms(1500));
        assert_eq!(parse_timeout("2s"), ms(2000));
        assert_eq!(parse_timeout("1.5 s"), ms(1500));
        assert_eq!(parse_timeout("1min"), ms(60_000));
        assert_eq!(parse_timeout("0"), Some(None));
        assert_eq!(parse_timeout("DEFAULT"), Some(None));
        for bad in ["", "-1", "x", "1 fortnight", "1e400", "99999999999"] {
            assert_eq!(parse_timeout(bad), None, "{bad}");
        }
    }
}
