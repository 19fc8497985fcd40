//! How a parsed statement is shown to operators (`sys.jobs`): sqlparser's rendering for SQL
//! it parsed, a rendering of Creek's own statements, and never a credential (a COPY's S3
//! secret and session token are masked).

use super::ParsedStatement;
use creek_common::fulltext::Param;

/// COPY options whose values `sys.jobs` must not show.
const SECRET_OPTIONS: [&str; 2] = ["secret_access_key", "session_token"];

/// Rendered text kept of a statement: a 50,000-row INSERT is not rendered whole for it.
const MAX_TEXT_BYTES: usize = 16 * 1024;

/// `value` rendered up to about [`MAX_TEXT_BYTES`]; rendering stops there.
fn bounded(value: &impl std::fmt::Display) -> String {
    struct Bounded(String);
    impl std::fmt::Write for Bounded {
        fn write_str(&mut self, text: &str) -> std::fmt::Result {
            if self.0.len() >= MAX_TEXT_BYTES {
                return Err(std::fmt::Error);
            }
            self.0.push_str(text);
            Ok(())
        }
    }
    let mut out = Bounded(String::new());
    // An error only says the bound was reached.
    let _ = std::fmt::Write::write_fmt(&mut out, format_args!("{value}"));
    out.0
}

/// A COPY's `WITH (..)`, secrets masked.
fn with_options(options: &[(String, Param)]) -> String {
    let options: Vec<String> = options
        .iter()
        .map(|(key, value)| match value {
            _ if SECRET_OPTIONS.contains(&key.as_str()) => format!("{key} = '***'"),
            Param::Text(text) => format!("{key} = '{text}'"),
            Param::Number(n) => format!("{key} = {n}"),
            Param::List(items) => format!("{key} = {items:?}"),
        })
        .collect();
    if options.is_empty() {
        String::new()
    } else {
        format!(" WITH ({})", options.join(", "))
    }
}

/// A URI with any `user:password@` masked (a COPY refuses them, but its text is shown first).
fn without_userinfo(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => uri.to_string(),
    }
}

impl ParsedStatement {
    /// The statement as text.
    pub fn text(&self) -> String {
        match self {
            ParsedStatement::Sql(statement, _) => bounded(statement),
            ParsedStatement::Refresh(names) => format!(
                "REFRESH TABLE {}",
                names
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ParsedStatement::AlterTableSettings {
                table,
                partition,
                settings,
            } => {
                let settings: Vec<String> = settings
                    .iter()
                    .map(|(key, value)| match value {
                        Some(value) => format!("\"{key}\" = '{value}'"),
                        None => format!("RESET \"{key}\""),
                    })
                    .collect();
                let partition = partition
                    .as_ref()
                    .map(|spec| {
                        let values: Vec<String> = spec
                            .iter()
                            .map(|(column, value)| match value {
                                Some(value) => format!("\"{column}\" = '{value}'"),
                                None => format!("\"{column}\" = NULL"),
                            })
                            .collect();
                        format!(" PARTITION ({})", values.join(", "))
                    })
                    .unwrap_or_default();
                format!(
                    "ALTER TABLE {table}{partition} SET ({})",
                    settings.join(", ")
                )
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
            ParsedStatement::Kill(Some(id)) => format!("KILL '{}'", id.replace('\'', "''")),
            ParsedStatement::Kill(None) => "KILL ALL".to_string(),
            ParsedStatement::CreateAnalyzer { name, .. } => format!("CREATE ANALYZER {name}"),
            ParsedStatement::DropAnalyzer(name) => format!("DROP ANALYZER {name}"),
            ParsedStatement::CopyFromFiles(copy) => {
                let columns = copy
                    .columns
                    .as_ref()
                    .map(|c| format!(" ({})", c.join(", ")))
                    .unwrap_or_default();
                let with = with_options(&copy.options);
                let summary = if copy.summary { " RETURN SUMMARY" } else { "" };
                format!(
                    "COPY {}{columns} FROM '{}'{with}{summary}",
                    copy.table,
                    without_userinfo(&copy.uri)
                )
            }
            ParsedStatement::CopyToDirectory(copy) => {
                let columns = copy
                    .columns
                    .as_ref()
                    .map(|c| format!(" ({})", c.join(", ")))
                    .unwrap_or_default();
                format!(
                    "COPY {}{columns} TO DIRECTORY '{}'{}",
                    copy.table,
                    without_userinfo(&copy.uri),
                    with_options(&copy.options)
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
    fn credentials_in_a_uri_are_masked() {
        assert_eq!(
            super::without_userinfo("s3://KEY:SECRET@bucket/a@b.json"),
            "s3://***@bucket/a@b.json"
        );
        assert_eq!(super::without_userinfo("file:///a@b"), "file:///a@b");
    }

    #[test]
    fn a_long_statement_is_rendered_up_to_the_bound() {
        let values = vec!["(1, 'x')"; 100_000].join(", ");
        let [insert] = parse_sql(&format!("INSERT INTO t VALUES {values}"))
            .unwrap()
            .try_into()
            .unwrap();
        let text = insert.text();
        assert!(text.starts_with("INSERT INTO t VALUES (1, 'x')"));
        assert!(text.len() < super::MAX_TEXT_BYTES + 1024, "{}", text.len());
    }

    #[test]
    fn sql_is_shown_as_parsed() {
        let [select] = parse_sql("select  1").unwrap().try_into().unwrap();
        assert_eq!(select.text(), "SELECT 1");
    }
}
