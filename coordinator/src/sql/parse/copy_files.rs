//! `COPY table [(columns)] FROM 'uri' [WITH (key = value, ...)] [RETURN SUMMARY]` and
//! `COPY table [(columns)] TO DIRECTORY 'uri' [WITH (...)]`: CrateDB's COPY from and to files
//! (`file://`, `s3://`), which sqlparser does not know. Syntax only; `sql::copy::files` and
//! `sql::copy::export` check the options and run them.

use creek_common::fulltext::Param;
use sqlparser::ast::{self, ObjectName};
use sqlparser::tokenizer::Token;

use super::fulltext::with_params;
use super::{syntax_error, word_is, ParsedStatement};
use crate::error::Result;

/// A parsed `COPY .. FROM 'uri'`.
#[derive(Debug, Clone)]
pub struct CopyFromClause {
    pub table: ObjectName,
    /// The columns the files fill, when named.
    pub columns: Option<Vec<String>>,
    pub uri: String,
    pub options: Vec<(String, Param)>,
    /// `RETURN SUMMARY`: a row per file with its counts and errors, instead of a row count.
    pub summary: bool,
}

/// A parsed `COPY .. TO DIRECTORY 'uri'`.
#[derive(Debug, Clone)]
pub struct CopyToClause {
    pub table: ObjectName,
    /// The columns written, when named (else every column).
    pub columns: Option<Vec<String>>,
    /// The directory the files go to.
    pub uri: String,
    pub options: Vec<(String, Param)>,
}

/// `COPY .. FROM '<uri>' ..` or `COPY .. TO DIRECTORY '<uri>' ..`; `None` for any other
/// statement (`COPY .. FROM STDIN` included).
pub(super) fn parse_copy_from_files(tokens: &[&Token]) -> Option<Result<ParsedStatement>> {
    if !tokens.first().is_some_and(|t| word_is(t, "copy")) {
        return None;
    }
    let at = tokens
        .iter()
        .position(|t| word_is(t, "from") || word_is(t, "to"))?;
    if word_is(tokens[at], "to") {
        if !tokens.get(at + 1).is_some_and(|t| word_is(t, "directory")) {
            return None;
        }
        let Some(Token::SingleQuotedString(uri)) = tokens.get(at + 2) else {
            return Some(Err(syntax_error(
                "expected a quoted URI after TO DIRECTORY",
            )));
        };
        return Some(parse_to(tokens, at, uri.clone()));
    }
    let Some(Token::SingleQuotedString(uri)) = tokens.get(at + 1) else {
        return None;
    };
    Some(parse(tokens, at, uri.clone()))
}

fn parse_to(tokens: &[&Token], to: usize, uri: String) -> Result<ParsedStatement> {
    let (table, columns) = table_and_columns(tokens, to)?;
    let rest: Vec<Token> = tokens[to + 3..].iter().map(|t| (*t).clone()).collect();
    let mut options = Vec::new();
    let mut j = 0;
    if rest.first().is_some_and(|t| word_is(t, "with")) {
        let (params, after) = with_params(&rest, 0)?;
        options = params;
        j = after;
    }
    if let Some(token) = rest.get(j) {
        return Err(syntax_error(format!(
            "unexpected {token} after COPY TO DIRECTORY '{uri}'"
        )));
    }
    Ok(ParsedStatement::CopyToDirectory(CopyToClause {
        table,
        columns,
        uri,
        options,
    }))
}

fn identifier(token: &Token) -> Option<ast::Ident> {
    match token {
        Token::Word(word) => Some(ast::Ident {
            value: if word.quote_style.is_some() {
                word.value.clone()
            } else {
                word.value.to_lowercase()
            },
            quote_style: word.quote_style,
            span: sqlparser::tokenizer::Span::empty(),
        }),
        _ => None,
    }
}

/// `COPY name [. name] [( columns )]` up to the FROM or TO at `from`.
fn table_and_columns(tokens: &[&Token], from: usize) -> Result<(ObjectName, Option<Vec<String>>)> {
    let mut parts = Vec::new();
    let mut i = 1;
    while i < from {
        match tokens[i] {
            Token::Period => {}
            Token::LParen => break,
            token => parts.push(
                identifier(token)
                    .ok_or_else(|| syntax_error(format!("unexpected {token} in COPY's table")))?,
            ),
        }
        i += 1;
    }
    if parts.is_empty() {
        return Err(syntax_error("expected a table name after COPY"));
    }
    let mut columns = None;
    if i < from {
        let mut names = Vec::new();
        for token in &tokens[i + 1..from] {
            match token {
                Token::Comma => {}
                Token::RParen => break,
                token => names.push(
                    identifier(token)
                        .ok_or_else(|| {
                            syntax_error(format!("unexpected {token} in COPY's columns"))
                        })?
                        .value,
                ),
            }
        }
        if names.is_empty() {
            return Err(syntax_error("COPY's column list is empty"));
        }
        columns = Some(names);
    }
    Ok((ObjectName::from(parts), columns))
}

fn parse(tokens: &[&Token], from: usize, uri: String) -> Result<ParsedStatement> {
    let (table, columns) = table_and_columns(tokens, from)?;
    let rest: Vec<Token> = tokens[from + 2..].iter().map(|t| (*t).clone()).collect();
    let mut options = Vec::new();
    let mut j = 0;
    if rest.first().is_some_and(|t| word_is(t, "with")) {
        let (params, after) = with_params(&rest, 0)?;
        options = params;
        j = after;
    }
    let mut summary = false;
    if rest.get(j).is_some_and(|t| word_is(t, "return")) {
        if !rest.get(j + 1).is_some_and(|t| word_is(t, "summary")) {
            return Err(syntax_error("expected SUMMARY after RETURN"));
        }
        summary = true;
        j += 2;
    }
    if let Some(token) = rest.get(j) {
        return Err(syntax_error(format!(
            "unexpected {token} after COPY FROM '{uri}'"
        )));
    }
    Ok(ParsedStatement::CopyFromFiles(CopyFromClause {
        table,
        columns,
        uri,
        options,
        summary,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::parse::parse_sql;

    fn clause(sql: &str) -> CopyFromClause {
        match parse_sql(sql).unwrap().remove(0) {
            ParsedStatement::CopyFromFiles(clause) => clause,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn copy_from_a_uri_is_parsed() {
        let c = clause("COPY doc.t (a, \"B\") FROM 's3://b/p/*.json' WITH (format = 'csv', header = false) RETURN SUMMARY");
        assert_eq!(c.table.to_string(), "doc.t");
        assert_eq!(c.columns, Some(vec!["a".to_string(), "B".to_string()]));
        assert_eq!(c.uri, "s3://b/p/*.json");
        assert_eq!(c.options.len(), 2);
        assert!(c.summary);
        let c = clause("copy t from 'file:///tmp/x.json'");
        assert!(c.columns.is_none() && !c.summary && c.options.is_empty());
        assert!(parse_sql("copy t from 'file:///x' return").is_err());
        assert!(parse_sql("copy t from 'file:///x' junk").is_err());
        let ParsedStatement::CopyToDirectory(to) =
            parse_sql("COPY t (a) TO DIRECTORY 's3://b/out' WITH (region = 'x')")
                .unwrap()
                .remove(0)
        else {
            panic!("not COPY TO DIRECTORY");
        };
        assert_eq!((to.uri.as_str(), to.options.len()), ("s3://b/out", 1));
        assert!(parse_sql("copy t to directory '/x' junk").is_err());
        assert!(parse_sql("copy t to directory x").is_err());
        // COPY FROM STDIN is not this statement.
        assert!(matches!(
            parse_sql("copy t from stdin").unwrap()[0],
            ParsedStatement::Sql(..)
        ));
    }
}
