//! Full-text syntax sqlparser does not know, lifted out of (or rewritten in) the token stream:
//! `INDEX name USING FULLTEXT (columns) [WITH (analyzer = '..')]` elements of `CREATE TABLE`,
//! `CREATE ANALYZER` / `DROP ANALYZER`, and the `MATCH` predicate, which becomes a call of
//! [`MATCH_FUNCTION`] that planning resolves (`plan::fulltext`). Syntax only: analyzers and
//! indexes are checked against the catalog when the statement runs.

use creek_common::fulltext::{
    self, AnalyzerDef, MatchOptions, MatchType, Param, TokenFilterDef, TokenizerDef,
};
use sqlparser::tokenizer::{Token, Word};

use super::{syntax_error, word_is, ParsedStatement};
use crate::error::{Error, Result};

/// The function a `MATCH` predicate is rewritten to: `__creek_match(query, 'options json',
/// 'index', boost, ...)`.
pub const MATCH_FUNCTION: &str = "__creek_match";

/// The parameters of a `WITH (key = value, ...)`, in order.
type Params = Vec<(String, Param)>;

/// A FULLTEXT index as `CREATE TABLE` declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct FulltextClause {
    pub name: String,
    pub columns: Vec<String>,
    pub analyzer: Option<String>,
}

fn identifier(word: &Word) -> String {
    if word.quote_style.is_some() {
        word.value.clone()
    } else {
        word.value.to_lowercase()
    }
}

fn significant_after(tokens: &[Token], from: usize) -> Option<usize> {
    (from..tokens.len()).find(|j| !matches!(tokens[*j], Token::Whitespace(_)))
}

/// Reads `WITH ( key = value, ... )` starting at `with` (the WITH word): values are text,
/// integers, identifiers or `[ 'a', 'b' ]` lists. Returns the parameters and the index after
/// the closing parenthesis.
pub(super) fn with_params(tokens: &[Token], with: usize) -> Result<(Params, usize)> {
    let open = significant_after(tokens, with + 1)
        .filter(|i| tokens[*i] == Token::LParen)
        .ok_or_else(|| syntax_error("expected ( after WITH"))?;
    let mut params = Vec::new();
    let mut i = open + 1;
    loop {
        let key_at =
            significant_after(tokens, i).ok_or_else(|| syntax_error("unterminated WITH (...)"))?;
        let key = match &tokens[key_at] {
            Token::Word(word) => identifier(word),
            Token::SingleQuotedString(text) => text.to_lowercase(),
            Token::RParen if params.is_empty() => return Ok((params, key_at + 1)),
            other => return Err(syntax_error(format!("unexpected {other} in WITH (...)"))),
        };
        let eq = significant_after(tokens, key_at + 1)
            .filter(|i| tokens[*i] == Token::Eq)
            .ok_or_else(|| syntax_error(format!("expected = after {key} in WITH (...)")))?;
        let value_at =
            significant_after(tokens, eq + 1).ok_or_else(|| syntax_error("expected a value"))?;
        let (value, after) = match &tokens[value_at] {
            Token::SingleQuotedString(text) => (Param::Text(text.clone()), value_at + 1),
            Token::Word(word) => (Param::Text(word.value.clone()), value_at + 1),
            Token::Number(text, _) => (number_param(text)?, value_at + 1),
            Token::Minus => {
                match significant_after(tokens, value_at + 1).map(|j| (j, &tokens[j])) {
                    Some((j, Token::Number(text, _))) => {
                        (number_param(&format!("-{text}"))?, j + 1)
                    }
                    _ => return Err(syntax_error("expected a number after -")),
                }
            }
            Token::LBracket => {
                let mut items = Vec::new();
                let mut j = value_at + 1;
                loop {
                    let at = significant_after(tokens, j)
                        .ok_or_else(|| syntax_error("unterminated [ ... ]"))?;
                    match &tokens[at] {
                        Token::SingleQuotedString(text) => items.push(text.clone()),
                        Token::Comma => {}
                        Token::RBracket => break (Param::List(items), at + 1),
                        other => return Err(syntax_error(format!("unexpected {other} in a list"))),
                    }
                    j = at + 1;
                }
            }
            other => {
                return Err(syntax_error(format!(
                    "unexpected {other} as a value of {key}"
                )))
            }
        };
        params.push((key, value));
        let next = significant_after(tokens, after)
            .ok_or_else(|| syntax_error("unterminated WITH (...)"))?;
        match tokens[next] {
            Token::Comma => i = next + 1,
            Token::RParen => return Ok((params, next + 1)),
            ref other => return Err(syntax_error(format!("unexpected {other} in WITH (...)"))),
        }
    }
}

fn number_param(text: &str) -> Result<Param> {
    if let Ok(n) = text.parse::<i64>() {
        return Ok(Param::Number(n));
    }
    // Fractions (a tie breaker, a boost) travel as text; the option reads them as a float.
    text.parse::<f64>()
        .map(|_| Param::Text(text.to_string()))
        .map_err(|_| syntax_error(format!("invalid number {text}")))
}

/// The analyzer named in a FULLTEXT index's `WITH (analyzer = '..')`.
fn analyzer_param(tokens: &[Token], with: usize) -> Result<(Option<String>, usize)> {
    let (params, after) = with_params(tokens, with)?;
    let mut analyzer = None;
    for (key, value) in params {
        match (key.as_str(), value) {
            ("analyzer", Param::Text(name)) => analyzer = Some(name.to_lowercase()),
            (key, _) => {
                return Err(Error::new(
                    creek_common::ErrorCode::InvalidParameterValue,
                    format!("a FULLTEXT index takes only the analyzer parameter, not {key}"),
                ))
            }
        }
    }
    Ok((analyzer, after))
}

/// Reads `USING FULLTEXT [WITH (analyzer = '..')]` at `using` (the USING word): the analyzer
/// and the index after the clause.
pub(super) fn using_fulltext(tokens: &[Token], using: usize) -> Result<(Option<String>, usize)> {
    let kind = significant_after(tokens, using + 1)
        .filter(|i| word_is(&tokens[*i], "fulltext"))
        .ok_or_else(|| syntax_error("expected FULLTEXT after INDEX USING"))?;
    match significant_after(tokens, kind + 1) {
        Some(with) if word_is(&tokens[with], "with") => analyzer_param(tokens, with),
        _ => Ok((None, kind + 1)),
    }
}

/// Whether the table element starting at `at` is `INDEX name USING FULLTEXT ...` (and not a
/// column called `index`).
pub(super) fn is_index_element(tokens: &[Token], at: usize) -> bool {
    word_is(&tokens[at], "index")
        && significant_after(tokens, at + 1).is_some_and(|name| {
            matches!(tokens[name], Token::Word(_))
                && significant_after(tokens, name + 1).is_some_and(|u| word_is(&tokens[u], "using"))
        })
}

/// Reads the table element `INDEX name USING FULLTEXT (columns) [WITH (...)]` at `at`;
/// returns it and the index after it.
pub(super) fn index_element(tokens: &[Token], at: usize) -> Result<(FulltextClause, usize)> {
    let name_at =
        significant_after(tokens, at + 1).ok_or_else(|| syntax_error("expected an index name"))?;
    let Token::Word(name) = &tokens[name_at] else {
        return Err(syntax_error("expected an index name"));
    };
    let using =
        significant_after(tokens, name_at + 1).ok_or_else(|| syntax_error("expected USING"))?;
    let kind = significant_after(tokens, using + 1)
        .filter(|i| word_is(&tokens[*i], "fulltext"))
        .ok_or_else(|| syntax_error("expected USING FULLTEXT in an index definition"))?;
    let open = significant_after(tokens, kind + 1)
        .filter(|i| tokens[*i] == Token::LParen)
        .ok_or_else(|| syntax_error("expected ( and the indexed columns after USING FULLTEXT"))?;
    let mut columns = Vec::new();
    let mut i = open + 1;
    let close = loop {
        let at =
            significant_after(tokens, i).ok_or_else(|| syntax_error("unterminated column list"))?;
        match &tokens[at] {
            Token::Word(word) => columns.push(identifier(word)),
            Token::Comma => {}
            Token::RParen => break at,
            other => {
                return Err(syntax_error(format!(
                    "unexpected {other} in an index's columns"
                )))
            }
        }
        i = at + 1;
    };
    let (analyzer, after) = match significant_after(tokens, close + 1) {
        Some(with) if word_is(&tokens[with], "with") => analyzer_param(tokens, with)?,
        _ => (None, close + 1),
    };
    Ok((
        FulltextClause {
            name: identifier(name),
            columns,
            analyzer,
        },
        after,
    ))
}

/// `CREATE ANALYZER` and `DROP ANALYZER`; `None` for any other statement.
pub(super) fn parse_analyzer_statement(tokens: &[&Token]) -> Option<Result<ParsedStatement>> {
    let is = |i: usize, keyword: &str| tokens.get(i).is_some_and(|t| word_is(t, keyword));
    if is(0, "drop") && is(1, "analyzer") {
        return Some(match tokens.get(2..) {
            Some([Token::Word(name)]) => Ok(ParsedStatement::DropAnalyzer(identifier(name))),
            _ => Err(syntax_error("expected DROP ANALYZER name")),
        });
    }
    if !(is(0, "create") && is(1, "analyzer")) {
        return None;
    }
    let Some(Token::Word(name)) = tokens.get(2) else {
        return Some(Err(syntax_error(
            "expected an analyzer name after CREATE ANALYZER",
        )));
    };
    if is(3, "extends") {
        return Some(Err(Error::new(
            creek_common::ErrorCode::FeatureNotSupported,
            "CREATE ANALYZER .. EXTENDS is not supported: define the tokenizer and token filters",
        )));
    }
    let body: Vec<Token> = tokens[3..].iter().map(|t| (*t).clone()).collect();
    Some(
        analyzer_body(&body).map(|definition| ParsedStatement::CreateAnalyzer {
            name: identifier(name),
            definition,
        }),
    )
}

/// Reads a tokenizer or filter reference: a built-in name, or `custom WITH (type = .., ...)`.
fn component(tokens: &[Token], at: usize) -> Result<(String, Params, usize)> {
    let Token::Word(word) = &tokens[at] else {
        return Err(syntax_error(format!("expected a name, got {}", tokens[at])));
    };
    let name = identifier(word);
    match significant_after(tokens, at + 1) {
        Some(with) if word_is(&tokens[with], "with") => {
            let (params, after) = with_params(tokens, with)?;
            let kind = params
                .iter()
                .find_map(|(key, value)| match (key.as_str(), value) {
                    ("type", Param::Text(kind)) => Some(kind.to_lowercase()),
                    _ => None,
                })
                .ok_or_else(|| syntax_error(format!("{name} WITH (...) needs a type")))?;
            Ok((kind, params, after))
        }
        _ => Ok((name, Vec::new(), at + 1)),
    }
}

/// `( TOKENIZER t [WITH (..)], TOKEN_FILTERS (f [WITH (..)], ...) )`.
fn analyzer_body(tokens: &[Token]) -> Result<AnalyzerDef> {
    let open = significant_after(tokens, 0)
        .filter(|i| tokens[*i] == Token::LParen)
        .ok_or_else(|| syntax_error("expected ( after CREATE ANALYZER name"))?;
    let mut tokenizer: Option<TokenizerDef> = None;
    let mut token_filters: Vec<TokenFilterDef> = Vec::new();
    let mut i = open + 1;
    loop {
        let at = significant_after(tokens, i)
            .ok_or_else(|| syntax_error("unterminated CREATE ANALYZER"))?;
        match &tokens[at] {
            Token::Comma => i = at + 1,
            Token::RParen => {
                if significant_after(tokens, at + 1).is_some() {
                    return Err(syntax_error(
                        "unexpected tokens after CREATE ANALYZER (...)",
                    ));
                }
                break;
            }
            token if word_is(token, "tokenizer") => {
                let name_at = significant_after(tokens, at + 1)
                    .ok_or_else(|| syntax_error("expected a tokenizer"))?;
                let (kind, params, after) = component(tokens, name_at)?;
                if tokenizer
                    .replace(fulltext::tokenizer(&kind, &params)?)
                    .is_some()
                {
                    return Err(syntax_error("TOKENIZER given twice"));
                }
                i = after;
            }
            token if word_is(token, "token_filters") => {
                let list = significant_after(tokens, at + 1)
                    .filter(|j| tokens[*j] == Token::LParen)
                    .ok_or_else(|| syntax_error("expected ( after TOKEN_FILTERS"))?;
                let mut j = list + 1;
                loop {
                    let item = significant_after(tokens, j)
                        .ok_or_else(|| syntax_error("unterminated TOKEN_FILTERS (...)"))?;
                    match &tokens[item] {
                        Token::Comma => j = item + 1,
                        Token::RParen => break i = item + 1,
                        _ => {
                            let (kind, params, after) = component(tokens, item)?;
                            token_filters.push(fulltext::token_filter(&kind, &params)?);
                            j = after;
                        }
                    }
                }
            }
            token if word_is(token, "char_filters") => {
                return Err(Error::new(
                    creek_common::ErrorCode::FeatureNotSupported,
                    "CHAR_FILTERS are not supported",
                ))
            }
            other => {
                return Err(syntax_error(format!(
                    "expected TOKENIZER or TOKEN_FILTERS in CREATE ANALYZER, got {other}"
                )))
            }
        }
    }
    Ok(AnalyzerDef {
        tokenizer: tokenizer.unwrap_or(TokenizerDef::Standard {
            max_token_length: fulltext::DEFAULT_MAX_TOKEN_LENGTH,
        }),
        token_filters,
    })
}

/// Rewrites every `MATCH(target, query) [USING type] [WITH (...)]` into a call of
/// [`MATCH_FUNCTION`]; `target` is an index or text column (`t.ft` qualified), or a list
/// `(a 2.0, b)` of them with boosts. Tokens without a MATCH come back unchanged.
pub fn rewrite_match(tokens: Vec<Token>) -> Result<Vec<Token>> {
    let is_match = |i: usize| {
        word_is(&tokens[i], "match")
            && significant_after(&tokens, i + 1).is_some_and(|j| tokens[j] == Token::LParen)
    };
    if !(0..tokens.len()).any(is_match) {
        return Ok(tokens);
    }
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if !is_match(i) {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        let open = significant_after(&tokens, i + 1).unwrap_or(i + 1);
        let (fields, comma) = match_targets(&tokens, open + 1)?;
        // The query: every token up to the parenthesis closing MATCH(.
        let mut depth = 0i64;
        let mut close = None;
        for (j, token) in tokens.iter().enumerate().skip(comma + 1) {
            match token {
                Token::LParen | Token::LBracket => depth += 1,
                Token::RParen | Token::RBracket if depth > 0 => depth -= 1,
                Token::RParen => {
                    close = Some(j);
                    break;
                }
                Token::Comma if depth == 0 => {
                    return Err(syntax_error("MATCH takes a target and one query"));
                }
                _ => {}
            }
        }
        let close = close.ok_or_else(|| syntax_error("unterminated MATCH (...)"))?;
        let query = &tokens[comma + 1..close];
        if query.iter().all(|t| matches!(t, Token::Whitespace(_))) {
            return Err(syntax_error("MATCH needs a query"));
        }
        let mut after = close + 1;
        let mut match_type = MatchType::default();
        if let Some(using) =
            significant_after(&tokens, after).filter(|j| word_is(&tokens[*j], "using"))
        {
            let kind = significant_after(&tokens, using + 1)
                .ok_or_else(|| syntax_error("expected a match type after USING"))?;
            let Token::Word(word) = &tokens[kind] else {
                return Err(syntax_error("expected a match type after USING"));
            };
            match_type = MatchType::parse(&word.value).ok_or_else(|| {
                Error::new(
                    creek_common::ErrorCode::InvalidParameterValue,
                    format!(
                        "unknown match type {} (known: best_fields, most_fields, cross_fields, \
                         phrase, phrase_prefix)",
                        word.value
                    ),
                )
            })?;
            after = kind + 1;
        }
        let mut options = MatchOptions::from_params(&[])?;
        if let Some(with) =
            significant_after(&tokens, after).filter(|j| word_is(&tokens[*j], "with"))
        {
            let (params, end) = with_params(&tokens, with)?;
            options = MatchOptions::from_params(&params)?;
            after = end;
        }
        let options = serde_json::json!({ "match_type": match_type, "options": options });
        out.push(Token::make_word(MATCH_FUNCTION, None));
        out.push(Token::LParen);
        out.push(Token::LParen);
        out.extend(query.iter().cloned());
        out.push(Token::RParen);
        out.push(Token::Comma);
        out.push(Token::SingleQuotedString(options.to_string()));
        for (target, boost) in fields {
            out.push(Token::Comma);
            out.push(Token::SingleQuotedString(target));
            out.push(Token::Comma);
            out.push(Token::Number(boost, false));
        }
        out.push(Token::RParen);
        i = after;
    }
    Ok(out)
}

/// Reads MATCH's target(s) from `from`; returns `(name, boost)` pairs and the index of the
/// comma before the query.
fn match_targets(tokens: &[Token], from: usize) -> Result<(Vec<(String, String)>, usize)> {
    let first =
        significant_after(tokens, from).ok_or_else(|| syntax_error("unterminated MATCH"))?;
    let name = |at: usize| -> Result<(String, usize)> {
        let mut parts = Vec::new();
        let mut j = at;
        loop {
            let Token::Word(word) = &tokens[j] else {
                return Err(syntax_error(format!(
                    "expected an index or column in MATCH, got {}",
                    tokens[j]
                )));
            };
            parts.push(identifier(word));
            match significant_after(tokens, j + 1) {
                Some(dot) if tokens[dot] == Token::Period => {
                    j = significant_after(tokens, dot + 1)
                        .ok_or_else(|| syntax_error("expected a name after ."))?;
                }
                _ => return Ok((parts.join("."), j + 1)),
            }
        }
    };
    let expect_comma = |at: usize| {
        significant_after(tokens, at)
            .filter(|j| tokens[*j] == Token::Comma)
            .ok_or_else(|| syntax_error("expected , and the query after MATCH's target"))
    };
    if tokens[first] != Token::LParen {
        let (target, after) = name(first)?;
        return Ok((vec![(target, "1.0".into())], expect_comma(after)?));
    }
    let mut fields = Vec::new();
    let mut j = first + 1;
    loop {
        let at = significant_after(tokens, j)
            .ok_or_else(|| syntax_error("unterminated MATCH targets"))?;
        match &tokens[at] {
            Token::Comma => j = at + 1,
            Token::RParen => break,
            _ => {
                let (target, after) = name(at)?;
                let mut boost = "1.0".to_string();
                j = after;
                if let Some(b) = significant_after(tokens, after) {
                    if let Token::Number(text, _) = &tokens[b] {
                        text.parse::<f32>()
                            .ok()
                            .filter(|v| v.is_finite() && *v >= 0.0)
                            .ok_or_else(|| syntax_error(format!("invalid boost {text}")))?;
                        boost = text.clone();
                        j = b + 1;
                    }
                }
                fields.push((target, boost));
            }
        }
    }
    if fields.is_empty() {
        return Err(syntax_error("MATCH needs at least one index or column"));
    }
    let close = significant_after(tokens, j).unwrap_or(j);
    Ok((fields, expect_comma(close + 1)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::tokenizer::Tokenizer;

    fn rewritten(sql: &str) -> String {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize()
            .unwrap();
        rewrite_match(tokens)
            .unwrap()
            .iter()
            .map(|t| t.to_string())
            .collect()
    }

    #[test]
    fn match_becomes_a_function_call() {
        assert_eq!(
            rewritten("select 1 from t where match(ft, 'a b') and x = 1"),
            "select 1 from t where __creek_match(( 'a b'),'{\"match_type\":\"best_fields\",\"options\":{\"and\":false,\"max_expansions\":50,\"slop\":0,\"tie_breaker\":0.0}}','ft',1.0) and x = 1"
        );
        let sql = rewritten(
            "select * from t where MATCH((t.a 2.5, b), $1) using phrase with (slop = 2) order by _score desc",
        );
        assert!(
            sql.contains("__creek_match(( $1),'{\"match_type\":\"phrase\""),
            "{sql}"
        );
        assert!(sql.contains("\"slop\":2"), "{sql}");
        assert!(
            sql.ends_with(",'t.a',2.5,'b',1.0) order by _score desc"),
            "{sql}"
        );
        // MATCH FULL of a foreign key and a column called match are left alone.
        assert_eq!(rewritten("select match from t"), "select match from t");
    }

    #[test]
    fn bad_matches_are_syntax_errors() {
        let fails = |sql: &str| {
            let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
                .tokenize()
                .unwrap();
            rewrite_match(tokens).is_err()
        };
        assert!(fails("select 1 from t where match(ft)"));
        assert!(fails("select 1 from t where match(ft, 'a', 'b')"));
        assert!(fails("select 1 from t where match(ft, 'a') using fuzzy"));
        assert!(fails(
            "select 1 from t where match(ft, 'a') with (boost_mode = 1)"
        ));
        assert!(fails("select 1 from t where match((), 'a')"));
    }
}
