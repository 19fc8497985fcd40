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
            _ => {
                settings.other.insert(name, value);
            }
        }
        Ok(())
    }
}
