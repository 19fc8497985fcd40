//! How an SQL identifier becomes a name: unquoted identifiers fold to lower case, quoted ones
//! keep their case, as in PostgreSQL. The one rule every statement and catalog lookup uses.

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

/// Normalises an identifier: unquoted names are lowercase.
pub fn ident_name(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// The last part of a possibly qualified name, normalised.
pub fn last_name(name: &ObjectName) -> String {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(ident)) => ident_name(ident),
        Some(other) => other.to_string().to_lowercase(),
        None => String::new(),
    }
}
