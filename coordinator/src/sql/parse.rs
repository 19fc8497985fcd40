//! Parses SQL text into statements: sqlparser (PostgreSQL dialect) plus Creek's DDL clauses,
//! which are lifted out of the token stream before sqlparser sees them. Syntax only: semantic
//! checks belong to planning.

use std::collections::BTreeMap;

use creek_common::error::ErrorCode;
use creek_common::schema::ColumnIndex;
use sqlparser::ast::{self, ObjectName, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace, Word};

use crate::error::{Error, Result};
use crate::plan::params::parameter_number;

mod copy_files;
mod depth;
mod fulltext;
mod generated;
mod object;
mod text;

pub use object::LIFTED_OBJECT_TYPE;

pub use copy_files::{CopyFromClause, CopyToClause};
pub use fulltext::{FulltextClause, MATCH_FUNCTION};

/// Nesting depth beyond which a statement is rejected instead of parsed.
pub const MAX_RECURSION: usize = 200;

/// How deeply queries may nest (subqueries, derived tables, CTE bodies). DataFusion's
/// optimizer takes time exponential in this depth (about twice as long per level: 14 levels
/// took 7.6 s here), so a short statement nesting deeper would hold a core for minutes.
pub const MAX_QUERY_NESTING: usize = 16;

/// Refuses a statement whose queries nest deeper than [`MAX_QUERY_NESTING`].
pub fn check_query_nesting(statement: &Statement) -> Result<()> {
    struct Depth {
        current: usize,
        deepest: usize,
    }
    impl ast::Visitor for Depth {
        type Break = ();
        fn pre_visit_query(&mut self, _: &ast::Query) -> std::ops::ControlFlow<()> {
            self.current += 1;
            self.deepest = self.deepest.max(self.current);
            if self.deepest > MAX_QUERY_NESTING {
                return std::ops::ControlFlow::Break(());
            }
            std::ops::ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &ast::Query) -> std::ops::ControlFlow<()> {
            self.current -= 1;
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut depth = Depth {
        current: 0,
        deepest: 0,
    };
    if ast::Visit::visit(statement, &mut depth).is_break() {
        return Err(Error::new(
            ErrorCode::ProgramLimitExceeded,
            format!(
                "statement is too complex: its queries nest more than {MAX_QUERY_NESTING} levels deep"
            ),
        ));
    }
    Ok(())
}

/// Creek clauses of `CREATE TABLE` that sqlparser does not know.
#[derive(Debug, Default, Clone)]
pub struct TableClauses {
    /// `CLUSTERED BY (column)`.
    pub clustered_by: Option<String>,
    /// `INTO n SHARDS`.
    pub num_shards: Option<u32>,
    /// `PARTITIONED BY (column, ...)`.
    pub partitioned_by: Vec<String>,
    /// `WITH (key = value, ...)`.
    pub settings: BTreeMap<String, String>,
    /// Columns declared with `INDEX OFF` (in `CREATE TABLE` or `ALTER TABLE .. ADD COLUMN`).
    pub column_index: BTreeMap<String, ColumnIndex>,
    /// FULLTEXT indexes: table elements `INDEX name USING FULLTEXT (..)`, and columns
    /// declared `INDEX USING FULLTEXT` (an index of that column, named after it).
    pub fulltext: Vec<FulltextClause>,
}

/// One parsed statement.
#[derive(Debug, Clone)]
pub enum ParsedStatement {
    /// A statement sqlparser understands, with Creek's table clauses if it is a CREATE TABLE.
    Sql(Box<Statement>, TableClauses),
    /// `REFRESH TABLE t [, ...]`.
    Refresh(Vec<ObjectName>),
    /// `ALTER TABLE t [PARTITION (col = value, ...)] SET (key = value, ...)` (`Some`) or
    /// `RESET (key, ...)` (`None`).
    AlterTableSettings {
        table: ObjectName,
        /// The partition's column values as literal text (`None` for NULL), if one is named.
        partition: Option<Vec<(String, Option<String>)>>,
        settings: BTreeMap<String, Option<String>>,
    },
    /// `SET GLOBAL [PERSISTENT | TRANSIENT] key = value, ...` or `RESET GLOBAL key, ...`.
    SetGlobal(BTreeMap<String, Option<String>>),
    /// `ALTER CLUSTER DECOMMISSION 'node'`.
    Decommission(String),
    /// `KILL 'job id'` (`Some`) or `KILL ALL` (`None`), as CrateDB spells them.
    Kill(Option<String>),
    /// `CREATE ANALYZER name (...)`.
    CreateAnalyzer {
        name: String,
        definition: creek_common::fulltext::AnalyzerDef,
    },
    /// `DROP ANALYZER name`.
    DropAnalyzer(String),
    /// `COPY table [(columns)] FROM 'uri' [WITH (..)] [RETURN SUMMARY]`.
    CopyFromFiles(CopyFromClause),
    /// `COPY table [(columns)] TO DIRECTORY 'uri' [WITH (..)]`.
    CopyToDirectory(CopyToClause),
    /// An empty statement (only whitespace or comments).
    Empty,
}

fn syntax_error(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::SyntaxError, message)
}

/// Splits `sql` into statements and parses each one. `?` placeholders are numbered `$1..$n`.
pub fn parse_sql(sql: &str) -> Result<Vec<ParsedStatement>> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize()
        .map_err(|e| syntax_error(e.to_string()))?;
    let mut statements = Vec::new();
    let mut current: Vec<Token> = Vec::new();
    let mut depth = 0i64;
    let mut question_marks = 0usize;
    for token in tokens {
        match &token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ => {}
        }
        if token == Token::SemiColon && depth <= 0 {
            statements.push(std::mem::take(&mut current));
            depth = 0;
            continue;
        }
        if matches!(&token, Token::Question) || matches!(&token, Token::Placeholder(p) if p == "?")
        {
            question_marks += 1;
            let numbered = format!("${question_marks}");
            parameter_number(&numbered)?;
            current.push(Token::Placeholder(numbered));
            continue;
        }
        if let Token::Placeholder(placeholder) = &token {
            parameter_number(placeholder)?;
        }
        current.push(token);
    }
    statements.push(current);
    let mut parsed = Vec::new();
    for tokens in statements {
        let meaningful: Vec<Token> = tokens
            .into_iter()
            .filter(|t| {
                !matches!(
                    t,
                    Token::Whitespace(
                        Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_)
                    )
                )
            })
            .collect();
        if meaningful.iter().all(|t| matches!(t, Token::Whitespace(_))) {
            continue;
        }
        parsed.push(parse_one(meaningful)?);
    }
    if parsed.is_empty() {
        parsed.push(ParsedStatement::Empty);
    }
    Ok(parsed)
}

fn word_is(token: &Token, keyword: &str) -> bool {
    matches!(token, Token::Word(Word { value, quote_style: None, .. }) if value.eq_ignore_ascii_case(keyword))
}

fn parse_one(tokens: Vec<Token>) -> Result<ParsedStatement> {
    depth::check_expression_depth(&tokens)?;
    for token in &tokens {
        if let Token::Number(text, _) = token {
            crate::plan::numeric_literals::check_length(text)?;
        }
    }
    let significant: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    if significant.first().is_some_and(|t| word_is(t, "refresh")) {
        return parse_refresh(&significant);
    }
    if let Some(admin) = parse_admin(&significant) {
        return admin;
    }
    if let Some(analyzer) = fulltext::parse_analyzer_statement(&significant) {
        return analyzer;
    }
    if let Some(copy) = copy_files::parse_copy_from_files(&significant) {
        return copy;
    }
    let is_create_table = significant.len() > 2
        && word_is(significant[0], "create")
        && (word_is(significant[1], "table")
            || (significant.len() > 3 && word_is(significant[2], "table")));
    let is_alter_table = significant.len() > 2
        && word_is(significant[0], "alter")
        && word_is(significant[1], "table");
    let (tokens, mut clauses) = if is_create_table {
        lift_table_clauses(tokens)?
    } else {
        (tokens, TableClauses::default())
    };
    let tokens = if is_create_table || is_alter_table {
        let tokens = object::lift_object_types(tokens);
        let (tokens, indexes) = lift_column_index(tokens, is_alter_table)?;
        clauses.column_index = indexes.index;
        clauses.fulltext = indexes.fulltext;
        generated::normalize_generated(tokens)
    } else {
        tokens
    };
    let tokens = fulltext::rewrite_match(tokens)?;
    let tokens = object::rewrite_sub_column_assignments(tokens)?;
    let tokens = object::rewrite_object_literals(tokens)?;
    let dialect = PostgreSqlDialect {};
    let mut parser = Parser::new(&dialect)
        .with_recursion_limit(MAX_RECURSION)
        .with_tokens(tokens);
    let statement = parser.parse_statement().map_err(|e| {
        let text = e.to_string();
        if text.contains("recursion limit") {
            Error::new(
                ErrorCode::ProgramLimitExceeded,
                "statement is too deeply nested",
            )
        } else {
            syntax_error(text.trim_start_matches("sql parser error: ").to_string())
        }
    })?;
    if parser.peek_token().token != Token::EOF {
        return Err(syntax_error(format!(
            "unexpected {} after the end of the statement",
            parser.peek_token().token
        )));
    }
    check_query_nesting(&statement)?;
    Ok(ParsedStatement::Sql(Box::new(statement), clauses))
}

/// `ALTER TABLE .. SET/RESET (..)`, `SET/RESET GLOBAL ..`, `ALTER CLUSTER ..` and `KILL`;
/// `None` for any other statement.
fn parse_admin(tokens: &[&Token]) -> Option<Result<ParsedStatement>> {
    let is = |i: usize, keyword: &str| tokens.get(i).is_some_and(|t| word_is(t, keyword));
    if is(0, "kill") {
        return Some(match tokens.get(1..) {
            Some([all]) if word_is(all, "all") => Ok(ParsedStatement::Kill(None)),
            Some([Token::SingleQuotedString(id)]) => Ok(ParsedStatement::Kill(Some(id.clone()))),
            _ => Err(syntax_error("expected KILL ALL or KILL 'job id'")),
        });
    }
    if is(0, "alter") && is(1, "cluster") {
        return Some(match tokens.get(2..) {
            Some([decommission, Token::SingleQuotedString(node)])
                if word_is(decommission, "decommission") =>
            {
                Ok(ParsedStatement::Decommission(node.clone()))
            }
            _ => Err(syntax_error("expected ALTER CLUSTER DECOMMISSION 'node'")),
        });
    }
    if (is(0, "set") || is(0, "reset")) && is(1, "global") {
        let mut start = 2;
        if is(2, "persistent") || is(2, "transient") {
            start = 3;
        }
        let rest: Vec<Token> = tokens[start..].iter().map(|t| (*t).clone()).collect();
        return Some(if is(0, "set") {
            let mut wrapped = rest;
            wrapped.push(Token::RParen);
            let mut settings = BTreeMap::new();
            parse_settings(&wrapped, 0, &mut settings).and_then(|end| {
                if end != wrapped.len() {
                    return Err(syntax_error("unexpected tokens after SET GLOBAL settings"));
                }
                Ok(ParsedStatement::SetGlobal(
                    settings.into_iter().map(|(k, v)| (k, Some(v))).collect(),
                ))
            })
        } else {
            parse_keys(&rest).map(|keys| {
                ParsedStatement::SetGlobal(keys.into_iter().map(|k| (k, None)).collect())
            })
        });
    }
    if !(is(0, "alter") && is(1, "table")) {
        return None;
    }
    // ALTER TABLE name SET ( .. ) | RESET ( .. ): the name ends before SET or RESET.
    let verb = (2..tokens.len()).find(|i| is(*i, "set") || is(*i, "reset"))?;
    if tokens.get(verb + 1) != Some(&&Token::LParen) {
        return None;
    }
    let partition_at = (2..verb).find(|i| is(*i, "partition"));
    let partition = match partition_at {
        Some(at) => match parse_partition_spec(&tokens[at + 1..verb]) {
            Ok(spec) => Some(spec),
            Err(error) => return Some(Err(error)),
        },
        None => None,
    };
    let mut parts = Vec::new();
    for token in &tokens[2..partition_at.unwrap_or(verb)] {
        match token {
            Token::Word(word) => parts.push(ast::Ident {
                value: if word.quote_style.is_some() {
                    word.value.clone()
                } else {
                    word.value.to_lowercase()
                },
                quote_style: word.quote_style,
                span: sqlparser::tokenizer::Span::empty(),
            }),
            Token::Period => {}
            _ => return None,
        }
    }
    if parts.is_empty() {
        return Some(Err(syntax_error("expected a table name after ALTER TABLE")));
    }
    let table = ObjectName::from(parts);
    let body: Vec<Token> = tokens[verb + 2..].iter().map(|t| (*t).clone()).collect();
    let settings = if is(verb, "set") {
        let mut settings = BTreeMap::new();
        match parse_settings(&body, 0, &mut settings) {
            Ok(end) if end == body.len() => {}
            Ok(_) => return Some(Err(syntax_error("unexpected tokens after SET (...)"))),
            Err(error) => return Some(Err(error)),
        }
        settings.into_iter().map(|(k, v)| (k, Some(v))).collect()
    } else {
        match body.split_last() {
            Some((Token::RParen, keys)) => match parse_keys(keys) {
                Ok(keys) => keys.into_iter().map(|k| (k, None)).collect(),
                Err(error) => return Some(Err(error)),
            },
            _ => return Some(Err(syntax_error("expected RESET (key, ...)"))),
        }
    };
    Some(Ok(ParsedStatement::AlterTableSettings {
        table,
        partition,
        settings,
    }))
}

/// Parses `(col = literal, ...)` of `ALTER TABLE t PARTITION (...)`: each value as its text,
/// `None` for NULL.
fn parse_partition_spec(tokens: &[&Token]) -> Result<Vec<(String, Option<String>)>> {
    let invalid = || syntax_error("expected PARTITION (column = literal, ...)");
    let (Some(Token::LParen), Some(Token::RParen)) = (tokens.first(), tokens.last()) else {
        return Err(invalid());
    };
    let mut spec = Vec::new();
    for pair in tokens[1..tokens.len() - 1].split(|t| **t == Token::Comma) {
        let (column, value) = match pair {
            [Token::Word(column), Token::Eq, value @ ..] => (column, value),
            _ => return Err(invalid()),
        };
        let value = match value {
            [Token::SingleQuotedString(text)] => Some(text.clone()),
            [Token::Number(text, _)] => Some(text.clone()),
            [Token::Minus, Token::Number(text, _)] => Some(format!("-{text}")),
            [word] if word_is(word, "null") => None,
            [word] if word_is(word, "true") || word_is(word, "false") => {
                Some(word.to_string().to_lowercase())
            }
            _ => return Err(invalid()),
        };
        let name = if column.quote_style.is_some() {
            column.value.clone()
        } else {
            column.value.to_lowercase()
        };
        spec.push((name, value));
    }
    Ok(spec)
}

/// Parses `key, key.sub, "quoted key"` into setting names.
fn parse_keys(tokens: &[Token]) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut key = String::new();
    for token in tokens {
        match token {
            Token::Whitespace(_) => {}
            Token::Word(word) if word.quote_style.is_some() => key.push_str(&word.value),
            Token::Word(word) => key.push_str(&word.value.to_lowercase()),
            Token::SingleQuotedString(text) => key.push_str(text),
            Token::Period => key.push('.'),
            Token::Comma if !key.is_empty() => keys.push(std::mem::take(&mut key)),
            other => {
                return Err(syntax_error(format!(
                    "unexpected {other} in a setting list"
                )))
            }
        }
    }
    if key.is_empty() {
        return Err(syntax_error("expected a setting name"));
    }
    keys.push(key);
    Ok(keys)
}

fn parse_refresh(tokens: &[&Token]) -> Result<ParsedStatement> {
    if tokens.len() < 3 || !word_is(tokens[1], "table") {
        return Err(syntax_error("expected REFRESH TABLE name"));
    }
    let mut names = Vec::new();
    let mut parts = Vec::new();
    for token in &tokens[2..] {
        match token {
            Token::Word(word) => parts.push(sqlparser::ast::Ident {
                value: if word.quote_style.is_some() {
                    word.value.clone()
                } else {
                    word.value.to_lowercase()
                },
                quote_style: word.quote_style,
                span: sqlparser::tokenizer::Span::empty(),
            }),
            Token::Period => {}
            Token::Comma => names.push(ObjectName::from(std::mem::take(&mut parts))),
            other => return Err(syntax_error(format!("unexpected {other} in REFRESH TABLE"))),
        }
    }
    if parts.is_empty() {
        return Err(syntax_error("expected a table name after REFRESH TABLE"));
    }
    names.push(ObjectName::from(parts));
    Ok(ParsedStatement::Refresh(names))
}

/// Removes `CLUSTERED [BY (col)] [INTO n SHARDS]`, `PARTITIONED BY (col, ...)` and
/// `WITH (...)` after the column list.
fn lift_table_clauses(tokens: Vec<Token>) -> Result<(Vec<Token>, TableClauses)> {
    let mut clauses = TableClauses::default();
    let mut out = Vec::with_capacity(tokens.len());
    let mut depth = 0i64;
    let mut seen_columns = false;
    let mut i = 0;
    let next_significant =
        |from: usize| (from..tokens.len()).find(|j| !matches!(tokens[*j], Token::Whitespace(_)));
    while i < tokens.len() {
        let token = &tokens[i];
        match token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    seen_columns = true;
                }
            }
            _ => {}
        }
        if depth == 0 && seen_columns && word_is(token, "clustered") {
            i += 1;
            let mut j =
                next_significant(i).ok_or_else(|| syntax_error("incomplete CLUSTERED clause"))?;
            if word_is(&tokens[j], "by") {
                let open = next_significant(j + 1)
                    .ok_or_else(|| syntax_error("expected ( after CLUSTERED BY"))?;
                if tokens[open] != Token::LParen {
                    return Err(syntax_error("expected ( after CLUSTERED BY"));
                }
                let column =
                    next_significant(open + 1).ok_or_else(|| syntax_error("expected a column"))?;
                let Token::Word(word) = &tokens[column] else {
                    return Err(syntax_error("expected a column name in CLUSTERED BY"));
                };
                clauses.clustered_by = Some(if word.quote_style.is_some() {
                    word.value.clone()
                } else {
                    word.value.to_lowercase()
                });
                let close =
                    next_significant(column + 1).ok_or_else(|| syntax_error("expected )"))?;
                if tokens[close] != Token::RParen {
                    return Err(syntax_error("CLUSTERED BY takes exactly one column"));
                }
                j = close + 1;
                i = j;
                match next_significant(j) {
                    Some(k) if word_is(&tokens[k], "into") => j = k,
                    _ => continue,
                }
            }
            if word_is(&tokens[j], "into") {
                let number = next_significant(j + 1)
                    .ok_or_else(|| syntax_error("expected a shard count"))?;
                let Token::Number(text, _) = &tokens[number] else {
                    return Err(syntax_error("expected a shard count after INTO"));
                };
                clauses.num_shards = Some(
                    text.parse()
                        .map_err(|_| syntax_error(format!("invalid shard count {text}")))?,
                );
                let shards =
                    next_significant(number + 1).ok_or_else(|| syntax_error("expected SHARDS"))?;
                if !word_is(&tokens[shards], "shards") {
                    return Err(syntax_error("expected SHARDS after the shard count"));
                }
                i = shards + 1;
                continue;
            }
            return Err(syntax_error("expected BY or INTO after CLUSTERED"));
        }
        if depth == 0 && seen_columns && word_is(token, "partitioned") {
            let by = next_significant(i + 1).filter(|j| word_is(&tokens[*j], "by"));
            let open = by
                .and_then(|j| next_significant(j + 1))
                .filter(|j| tokens[*j] == Token::LParen)
                .ok_or_else(|| syntax_error("expected PARTITIONED BY (column, ...)"))?;
            let mut j = open + 1;
            loop {
                let column = next_significant(j)
                    .ok_or_else(|| syntax_error("expected a column in PARTITIONED BY"))?;
                let Token::Word(word) = &tokens[column] else {
                    return Err(syntax_error("expected a column name in PARTITIONED BY"));
                };
                clauses.partitioned_by.push(if word.quote_style.is_some() {
                    word.value.clone()
                } else {
                    word.value.to_lowercase()
                });
                let after = next_significant(column + 1)
                    .ok_or_else(|| syntax_error("expected ) after PARTITIONED BY columns"))?;
                match &tokens[after] {
                    Token::Comma => j = after + 1,
                    Token::RParen => {
                        i = after + 1;
                        break;
                    }
                    other => {
                        return Err(syntax_error(format!(
                            "unexpected {other} in PARTITIONED BY"
                        )))
                    }
                }
            }
            continue;
        }
        if depth == 0 && seen_columns && word_is(token, "with") {
            let open =
                next_significant(i + 1).ok_or_else(|| syntax_error("expected ( after WITH"))?;
            if tokens[open] != Token::LParen {
                out.push(token.clone());
                i += 1;
                continue;
            }
            i = parse_settings(&tokens, open + 1, &mut clauses.settings)?;
            continue;
        }
        out.push(token.clone());
        i += 1;
    }
    Ok((out, clauses))
}

/// Removes each column definition's `INDEX OFF` and `INDEX USING FULLTEXT [WITH (..)]`, and
/// `CREATE TABLE`'s `INDEX name USING FULLTEXT (..)` elements, which sqlparser does not know;
/// returns the columns with `INDEX OFF` and the FULLTEXT indexes. Column definitions are the
/// elements of `CREATE TABLE`'s column list (`alter == false`) or follow `ADD [COLUMN] [IF
/// NOT EXISTS]` (`alter == true`).
fn lift_column_index(tokens: Vec<Token>, alter: bool) -> Result<(Vec<Token>, ColumnIndexes)> {
    let mut fulltext = Vec::new();
    let significant_after =
        |from: usize| (from..tokens.len()).find(|j| !matches!(tokens[*j], Token::Whitespace(_)));
    let mut found = BTreeMap::new();
    let mut out = Vec::with_capacity(tokens.len());
    let definition_depth = if alter { 0 } else { 1 };
    let mut depth = 0i64;
    let mut awaiting_name = false;
    let mut column: Option<String> = None;
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        match token {
            // Brackets and braces nest too: `DEFAULT ARRAY[1, 2]` has no column separator.
            Token::LParen | Token::LBracket | Token::LBrace => {
                depth += 1;
                if !alter && depth == 1 && column.is_none() && !awaiting_name {
                    awaiting_name = true;
                }
            }
            Token::RParen | Token::RBracket | Token::RBrace => depth -= 1,
            Token::Comma if depth == definition_depth => {
                awaiting_name = !alter;
                column = None;
            }
            Token::Word(word) if depth == definition_depth => {
                if alter && column.is_none() && !awaiting_name && word_is(token, "add") {
                    // ADD [COLUMN] [IF NOT EXISTS] name: skip the optional words in place.
                    out.push(token.clone());
                    let mut next = significant_after(i + 1);
                    if let Some(j) = next.filter(|j| word_is(&tokens[*j], "column")) {
                        out.extend(tokens[i + 1..=j].iter().cloned());
                        i = j;
                        next = significant_after(j + 1);
                    }
                    if let Some(j) = next.filter(|j| word_is(&tokens[*j], "if")) {
                        let not = significant_after(j + 1).filter(|k| word_is(&tokens[*k], "not"));
                        let exists = not
                            .and_then(|k| significant_after(k + 1))
                            .filter(|k| word_is(&tokens[*k], "exists"));
                        if let Some(k) = exists {
                            out.extend(tokens[i + 1..=k].iter().cloned());
                            i = k;
                        }
                    }
                    awaiting_name = true;
                    i += 1;
                    continue;
                } else if awaiting_name && !alter && fulltext::is_index_element(&tokens, i) {
                    // A whole element: drop it with the comma before it (or after it, when
                    // it comes first).
                    let (clause, after) = fulltext::index_element(&tokens, i)?;
                    fulltext.push(clause);
                    while matches!(out.last(), Some(Token::Whitespace(_))) {
                        out.pop();
                    }
                    i = after;
                    if out.last() == Some(&Token::Comma) {
                        out.pop();
                    } else if let Some(comma) =
                        significant_after(i).filter(|j| tokens[*j] == Token::Comma)
                    {
                        i = comma + 1;
                    }
                    awaiting_name = true;
                    continue;
                } else if awaiting_name {
                    column = Some(if word.quote_style.is_some() {
                        word.value.clone()
                    } else {
                        word.value.to_lowercase()
                    });
                    awaiting_name = false;
                } else if word_is(token, "index") {
                    let next = significant_after(i + 1);
                    if let (Some(next), Some(name)) = (next, &column) {
                        if word_is(&tokens[next], "off") {
                            if found.insert(name.clone(), ColumnIndex::Off).is_some() {
                                return Err(syntax_error(format!(
                                    "INDEX given twice for column {name}"
                                )));
                            }
                            i = next + 1;
                            continue;
                        }
                        if word_is(&tokens[next], "using") {
                            if alter {
                                return Err(Error::new(
                                    ErrorCode::FeatureNotSupported,
                                    "a FULLTEXT index can only be declared in CREATE TABLE (a \
                                     shard's field layout is fixed when its index is created)",
                                ));
                            }
                            let (analyzer, after) = fulltext::using_fulltext(&tokens, next)?;
                            if found.contains_key(name)
                                || fulltext.iter().any(|f: &FulltextClause| &f.name == name)
                            {
                                return Err(syntax_error(format!(
                                    "INDEX given twice for column {name}"
                                )));
                            }
                            fulltext.push(FulltextClause {
                                name: name.clone(),
                                columns: vec![name.clone()],
                                analyzer,
                            });
                            i = after;
                            continue;
                        }
                    }
                }
            }
            _ => {}
        }
        out.push(token.clone());
        i += 1;
    }
    Ok((
        out,
        ColumnIndexes {
            index: found,
            fulltext,
        },
    ))
}

/// What [`lift_column_index`] lifts: the columns with `INDEX OFF`, and the FULLTEXT indexes.
struct ColumnIndexes {
    index: BTreeMap<String, ColumnIndex>,
    fulltext: Vec<FulltextClause>,
}

/// Parses `key = value, ...)` starting after the `(`; returns the index after `)`.
fn parse_settings(
    tokens: &[Token],
    mut i: usize,
    settings: &mut BTreeMap<String, String>,
) -> Result<usize> {
    let mut key = String::new();
    let mut value: Option<String> = None;
    let mut after_equals = false;
    while i < tokens.len() {
        let token = &tokens[i];
        i += 1;
        match token {
            Token::Whitespace(_) => {}
            Token::Eq => after_equals = true,
            Token::Comma | Token::RParen => {
                if key.is_empty() || value.is_none() {
                    return Err(syntax_error("expected key = value in WITH (...)"));
                }
                settings.insert(std::mem::take(&mut key), value.take().unwrap_or_default());
                after_equals = false;
                if *token == Token::RParen {
                    return Ok(i);
                }
            }
            Token::Word(word) if !after_equals => key.push_str(&word.value.to_lowercase()),
            Token::SingleQuotedString(text) if !after_equals => key.push_str(text),
            Token::Period if !after_equals => key.push('.'),
            Token::Number(text, _) if after_equals => value = Some(text.clone()),
            Token::SingleQuotedString(text) if after_equals => value = Some(text.clone()),
            Token::Word(word) if after_equals => value = Some(word.value.clone()),
            Token::Minus if after_equals => value = Some("-".into()),
            other => return Err(syntax_error(format!("unexpected {other} in WITH (...)"))),
        }
        if let (Some(v), true) = (&value, after_equals) {
            if v == "-" {
                if let Some(Token::Number(text, _)) = tokens.get(i) {
                    value = Some(format!("-{text}"));
                    i += 1;
                }
            }
        }
    }
    Err(syntax_error("unterminated WITH (...)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_off_is_lifted_per_column() {
        let column_index = |sql: &str| {
            let parsed = parse_sql(sql).unwrap();
            let ParsedStatement::Sql(_, clauses) = &parsed[0] else {
                panic!()
            };
            clauses.column_index.keys().cloned().collect::<Vec<_>>()
        };
        assert_eq!(
            column_index(
                "create table t (id int primary key, \"V\" varchar(10) index off, w numeric(5, 2) not null INDEX OFF default 1, index int) with (a = 1)"
            ),
            ["V", "w"]
        );
        assert_eq!(
            column_index("alter table t add column if not exists x text index off, add y int"),
            ["x"]
        );
        assert!(parse_sql("create table t (a int index off index off)").is_err());
        assert_eq!(
            column_index(
                "create table t (id int primary key, tags int[] default array[1, 2] not null index off)"
            ),
            ["tags"]
        );
        assert_eq!(
            column_index("alter table t add column tags int[] default array[1, 2] index off"),
            ["tags"]
        );
        assert_eq!(
            column_index("alter table t add column \"exists\" int index off"),
            ["exists"]
        );
        assert_eq!(
            column_index("alter table t add \"add\" int index off"),
            ["add"]
        );
        assert!(parse_sql("create table t (a int index on)").is_err());
    }

    #[test]
    fn creek_clauses_are_lifted() {
        let parsed = parse_sql(
            "create table t (id int primary key, v text) clustered by (id) into 3 shards with (number_of_replicas = 1, \"refresh_interval\" = 500, translog.durability = 'async')",
        )
        .unwrap();
        let ParsedStatement::Sql(_, clauses) = &parsed[0] else {
            panic!()
        };
        assert_eq!(clauses.clustered_by.as_deref(), Some("id"));
        assert_eq!(clauses.num_shards, Some(3));
        assert_eq!(
            clauses
                .settings
                .get("number_of_replicas")
                .map(String::as_str),
            Some("1")
        );
        assert_eq!(
            clauses.settings.get("refresh_interval").map(String::as_str),
            Some("500")
        );
        assert_eq!(
            clauses
                .settings
                .get("translog.durability")
                .map(String::as_str),
            Some("async")
        );
    }

    #[test]
    fn statements_split_and_placeholders_number() {
        let parsed = parse_sql("select ?; select ? , ?;;").unwrap();
        assert_eq!(parsed.len(), 2);
        let ParsedStatement::Sql(statement, _) = &parsed[1] else {
            panic!()
        };
        assert_eq!(statement.to_string(), "SELECT $2, $3");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let sql = format!("select {}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse_sql(&sql).is_err());
    }

    #[test]
    fn refresh_parses() {
        let parsed = parse_sql("REFRESH TABLE doc.t, u").unwrap();
        let ParsedStatement::Refresh(names) = &parsed[0] else {
            panic!()
        };
        assert_eq!(names.len(), 2);
    }
}
