//! How a parsed statement is shown to operators (`sys.jobs`): sqlparser's rendering for SQL
//! it parsed, a rendering of Creek's own statements, and never a credential (a COPY's S3
//! secret and session token are masked).

use super::ParsedStatement;
use creek_common::fulltext::Param;

/// COPY options whose values `sys.jobs` must not show.
const SECRET_OPTIONS: [&str; 2] = ["secret_access_key", "session_token"];

impl ParsedStatement {
    /// The statement as text.
    pub fn text(&self) -> String {
        match self {
            ParsedStatement::Sql(statement, _) => statement.to_string(),
            ParsedStatement::Refresh(names) => format!(
                "REFRESH TABLE {}",
                names
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ParsedStatement::AlterTableSettings { table, settings } => {
                let settings: Vec<String> = settings
                    .iter()
                    .map(|(key, value)| match value {
                        Some(value) => format!("\"{key}\" = '{value}'"),
                        None => format!("RESET \"{key}\""),
                    })
                    .collect();
                format!("ALTER TABLE {table} SET ({})", settings.join(", "))
            }
            ParsedStatement::SetGlobal(settings) => {
                let settings: Vec<String> = settings
                    .iter()
                    .map(|(key, value)| match value {
                        Some(value) => format!("\"{key}\" = '{value}'"),
                        None => format!("RESET \"{key}\""),
                    })
                    .collect();
                format!("SET GLOBAL {}", settings.join(", "))
            }
            ParsedStatement::Decommission(node) => {
                format!("ALTER CLUSTER DECOMMISSION '{node}'")
            }
            ParsedStatement::CreateAnalyzer { name, .. } => format!("CREATE ANALYZER {name}"),
            ParsedStatement::DropAnalyzer(name) => format!("DROP ANALYZER {name}"),
            ParsedStatement::CopyFromFiles(copy) => {
                let columns = copy
                    .columns
                    .as_ref()
                    .map(|c| format!(" ({})", c.join(", ")))
                    .unwrap_or_default();
                let options: Vec<String> = copy
                    .options
                    .iter()
                    .map(|(key, value)| match value {
                        _ if SECRET_OPTIONS.contains(&key.as_str()) => format!("{key} = '***'"),
                        Param::Text(text) => format!("{key} = '{text}'"),
                        Param::Number(n) => format!("{key} = {n}"),
                        Param::List(items) => format!("{key} = {items:?}"),
                    })
                    .collect();
                let with = if options.is_empty() {
                    String::new()
                } else {
                    format!(" WITH ({})", options.join(", "))
                };
                let summary = if copy.summary { " RETURN SUMMARY" } else { "" };
                format!(
                    "COPY {}{columns} FROM '{}'{with}{summary}",
                    copy.table, copy.uri
                )
            }
            ParsedStatement::Empty => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::sql::parse::parse_sql;

    #[test]
    fn a_copy_is_shown_without_its_secrets() {
        let [copy] = parse_sql(
            "COPY t (a) FROM 's3://b/k/*.json' WITH (access_key_id = 'AK', \
             secret_access_key = 'SECRET', session_token = 'TOKEN') RETURN SUMMARY",
        )
        .unwrap()
        .try_into()
        .unwrap();
        let text = copy.text();
        assert!(
            !text.contains("SECRET") && !text.contains("TOKEN"),
            "{text}"
        );
        assert!(text.starts_with("COPY t (a) FROM 's3://b/k/*.json' WITH (access_key_id = 'AK'"));
        assert!(text.ends_with("RETURN SUMMARY"));
    }

    #[test]
    fn sql_is_shown_as_parsed() {
        let [select] = parse_sql("select  1").unwrap().try_into().unwrap();
        assert_eq!(select.text(), "SELECT 1");
    }
}
