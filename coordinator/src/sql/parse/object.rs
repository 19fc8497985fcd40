//! CrateDB's object column types, `OBJECT [(DYNAMIC | STRICT | IGNORED)] [AS (col type, ...)]`
//! and `ARRAY(OBJECT ...)`, which sqlparser cannot read (its `AS` would start a generated
//! column): each is lifted out of `CREATE TABLE` and `ALTER TABLE` as the type
//! `CREEK_OBJECT('<its text>')`, whose text `sql::ddl::object` reads. Object literals,
//! `{a = 1, b = {c = 'x'}}`, become `named_struct('a', 1, 'b', named_struct('c', 'x'))`.
//! Tokens only.

use sqlparser::tokenizer::{Token, Word};

use super::word_is;

/// The type name a lifted object type is given.
pub const LIFTED_OBJECT_TYPE: &str = "creek_object";

/// Words after a column's type that start its constraints or options.
const AFTER_TYPE: &[&str] = &[
    "not",
    "null",
    "primary",
    "default",
    "index",
    "generated",
    "constraint",
    "unique",
    "check",
    "references",
    "storage",
    "with",
];

/// Replaces every object type in a column definition with its lifted form.
pub(super) fn lift_object_types(tokens: Vec<Token>) -> Vec<Token> {
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|i| !matches!(tokens[*i], Token::Whitespace(_)))
        .collect();
    // Positions in `significant`.
    let at = |k: usize| significant.get(k).map(|i| &tokens[*i]);
    let mut replace: Vec<(usize, usize)> = Vec::new();
    let mut k = 0;
    while k < significant.len() {
        let after_name = k >= 1 && matches!(at(k - 1), Some(Token::Word(_)));
        if after_name
            && at(k).is_some_and(|t| word_is(t, "array"))
            && at(k + 1) == Some(&Token::LParen)
        {
            // CrateDB's `ARRAY(type)`, which sqlparser's PostgreSQL dialect does not read.
            let mut depth = 0i64;
            let mut j = k + 1;
            let closed = loop {
                match at(j) {
                    Some(Token::LParen) => depth += 1,
                    Some(Token::RParen) => {
                        depth -= 1;
                        if depth == 0 {
                            break Some(j);
                        }
                    }
                    None => break None,
                    _ => {}
                }
                j += 1;
            };
            let ends = closed.is_some_and(|end| match at(end + 1) {
                None | Some(Token::Comma | Token::RParen | Token::SemiColon | Token::EOF) => true,
                Some(token) => AFTER_TYPE.iter().any(|w| word_is(token, w)),
            });
            if let (true, Some(end)) = (ends, closed) {
                replace.push((significant[k], significant[end]));
                k = end + 1;
                continue;
            }
        }
        let is_object = at(k).is_some_and(|t| word_is(t, "object"));
        let Some(end) = is_object.then(|| object_end(&at, k)).flatten() else {
            k += 1;
            continue;
        };
        let in_array = k >= 2
            && at(k - 1) == Some(&Token::LParen)
            && at(k - 2).is_some_and(|t| word_is(t, "array"));
        let (start, end) = if in_array && at(end + 1) == Some(&Token::RParen) {
            (k - 2, end + 1)
        } else if after_name {
            (k, end)
        } else {
            k += 1;
            continue;
        };
        // A type is followed by the end of its column definition or its constraints.
        let ends_definition = match at(end + 1) {
            None | Some(Token::Comma | Token::RParen | Token::SemiColon | Token::EOF) => true,
            Some(token) => AFTER_TYPE.iter().any(|w| word_is(token, w)),
        };
        if ends_definition {
            replace.push((significant[start], significant[end]));
            k = end + 1;
        } else {
            k += 1;
        }
    }
    if replace.is_empty() {
        return tokens;
    }
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    for (start, end) in replace {
        out.extend(tokens[i..start].iter().cloned());
        let text: String = tokens[start..=end].iter().map(|t| t.to_string()).collect();
        out.push(Token::Word(Word {
            value: LIFTED_OBJECT_TYPE.to_string(),
            quote_style: None,
            keyword: sqlparser::keywords::Keyword::NoKeyword,
        }));
        out.push(Token::LParen);
        out.push(Token::SingleQuotedString(text));
        out.push(Token::RParen);
        i = end + 1;
    }
    out.extend(tokens[i..].iter().cloned());
    out
}

/// The last significant position of the object type starting at `k` (the word `OBJECT`):
/// its optional `(policy)` and `AS (...)`; `None` if what follows is no object type.
fn object_end<'a>(at: &impl Fn(usize) -> Option<&'a Token>, k: usize) -> Option<usize> {
    let mut end = k;
    if at(end + 1) == Some(&Token::LParen) {
        let policy = at(end + 2)?;
        if !["dynamic", "strict", "ignored"]
            .iter()
            .any(|w| word_is(policy, w))
            || at(end + 3) != Some(&Token::RParen)
        {
            return None;
        }
        end += 3;
    }
    if at(end + 1).is_some_and(|t| word_is(t, "as")) && at(end + 2) == Some(&Token::LParen) {
        let mut depth = 0i64;
        let mut j = end + 2;
        loop {
            match at(j)? {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        end = j;
    }
    Some(end)
}

/// An identifier token as a name: unquoted ones in lower case.
fn identifier(token: &Token) -> String {
    match token {
        Token::Word(word) if word.quote_style.is_some() => word.value.clone(),
        Token::Word(word) => word.value.to_lowercase(),
        other => other.to_string(),
    }
}

/// Rewrites `UPDATE ... SET o['a']['b'] = v` (and `ON CONFLICT ... DO UPDATE SET`), which
/// sqlparser does not read, into `SET o = __creek_object_set(o, 'a', 'b', (v))`; several
/// assignments into one object nest, in their order.
pub(super) fn rewrite_sub_column_assignments(
    tokens: Vec<Token>,
) -> crate::error::Result<Vec<Token>> {
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|i| !matches!(tokens[*i], Token::Whitespace(_)))
        .collect();
    let word_at = |k: usize, w: &str| significant.get(k).is_some_and(|i| word_is(&tokens[*i], w));
    let set_at = if word_at(0, "update") {
        (1..significant.len()).find(|k| word_at(*k, "set"))
    } else {
        (2..significant.len())
            .find(|k| word_at(*k, "set") && word_at(k - 1, "update") && word_at(k - 2, "do"))
    };
    let Some(set_at) = set_at else {
        return Ok(tokens);
    };
    let at = |k: usize| significant.get(k).map(|i| &tokens[*i]);
    // In an upsert the object is the existing row's: qualified by the target table's name,
    // as `excluded` has the column too.
    let qualifier: Option<Token> = if word_at(0, "update") {
        None
    } else {
        let into = (0..set_at).find(|k| word_at(*k, "into"));
        into.and_then(|into| {
            // `name` or `schema.name`: the last word of the dotted name.
            let mut k = into + 1;
            loop {
                let word = significant.get(k).map(|i| &tokens[*i])?;
                if !matches!(word, Token::Word(_)) {
                    return None;
                }
                if at(k + 1) != Some(&Token::Period) {
                    return Some(word.clone());
                }
                k += 2;
            }
        })
    };
    // The assignments: (column token, keys, value tokens) or a plain one's tokens.
    enum Assignment {
        Plain(Vec<Token>),
        Sub(Token, Vec<String>, Vec<Token>),
    }
    let mut assignments = Vec::new();
    let mut k = set_at + 1;
    let mut end = None;
    let mut any_sub = false;
    while k < significant.len() {
        let start = k;
        let mut keys = Vec::new();
        let mut j = k + 1;
        while at(j) == Some(&Token::LBracket) {
            let (Some(Token::SingleQuotedString(key)), Some(Token::RBracket)) =
                (at(j + 1), at(j + 2))
            else {
                break;
            };
            keys.push(key.clone());
            j += 3;
        }
        let is_sub =
            !keys.is_empty() && matches!(at(k), Some(Token::Word(_))) && at(j) == Some(&Token::Eq);
        // The value runs to the `,` or clause word that ends it at nesting 0.
        let value_start = if is_sub { j + 1 } else { k };
        let mut depth = 0i64;
        let mut v = value_start;
        let mut stop = None;
        while let Some(token) = at(v) {
            match token {
                Token::LParen | Token::LBracket | Token::LBrace => depth += 1,
                Token::RParen | Token::RBracket | Token::RBrace => depth -= 1,
                Token::Comma if depth == 0 => break,
                Token::SemiColon | Token::EOF => {
                    stop = Some(v);
                    break;
                }
                // `IS [NOT] DISTINCT FROM` is part of the value.
                token
                    if depth == 0
                        && ["where", "returning", "from"]
                            .iter()
                            .any(|w| word_is(token, w))
                        && !(word_is(token, "from")
                            && at(v - 1).is_some_and(|t| word_is(t, "distinct"))) =>
                {
                    stop = Some(v);
                    break;
                }
                _ => {}
            }
            v += 1;
        }
        // The value's tokens as written, whitespace included (trimmed at both ends).
        let value: Vec<Token> = match (
            significant.get(value_start),
            v.checked_sub(1).and_then(|l| significant.get(l)),
        ) {
            (Some(first), Some(last)) if value_start < v => tokens[*first..=*last].to_vec(),
            _ => Vec::new(),
        };
        if is_sub && keys.len() > creek_common::object::MAX_OBJECT_DEPTH {
            return Err(crate::error::Error::new(
                creek_common::ErrorCode::ProgramLimitExceeded,
                format!(
                    "a sub-column path of more than {} keys",
                    creek_common::object::MAX_OBJECT_DEPTH
                ),
            ));
        }
        if is_sub {
            any_sub = true;
            assignments.push(Assignment::Sub(
                tokens[significant[start]].clone(),
                keys,
                value,
            ));
        } else {
            assignments.push(Assignment::Plain(value));
        }
        if let Some(stop) = stop {
            end = Some(stop);
            break;
        }
        if at(v).is_none() {
            break;
        }
        k = v + 1;
    }
    if !any_sub {
        return Ok(tokens);
    }
    let tail_from = end.map_or(tokens.len(), |k| significant[k]);
    let mut out: Vec<Token> = tokens[..=significant[set_at]].to_vec();
    out.push(Token::Whitespace(sqlparser::tokenizer::Whitespace::Space));
    // One assignment per object column, the sub-column ones nested in their order.
    let mut columns: Vec<(Token, Vec<Token>)> = Vec::new();
    let mut plain: Vec<Vec<Token>> = Vec::new();
    for assignment in assignments {
        match assignment {
            Assignment::Plain(tokens) => plain.push(tokens),
            Assignment::Sub(column, keys, value) => {
                let position = match columns
                    .iter()
                    .position(|(c, _)| identifier(c) == identifier(&column))
                {
                    Some(position) => position,
                    None => {
                        let reference = match &qualifier {
                            Some(table) => vec![table.clone(), Token::Period, column.clone()],
                            None => vec![column.clone()],
                        };
                        columns.push((column.clone(), reference));
                        columns.len() - 1
                    }
                };
                let mut expr = vec![
                    Token::make_word(creek_common::object::OBJECT_SET_FUNCTION, None),
                    Token::LParen,
                ];
                expr.extend(std::mem::take(&mut columns[position].1));
                for key in keys {
                    expr.push(Token::Comma);
                    expr.push(Token::SingleQuotedString(key));
                }
                expr.push(Token::Comma);
                expr.push(Token::LParen);
                expr.extend(value);
                expr.push(Token::RParen);
                expr.push(Token::RParen);
                columns[position].1 = expr;
            }
        }
    }
    // A column assigned whole and by key in one statement: which would win is unclear.
    for tokens in &plain {
        let target = tokens.iter().find(|t| !matches!(t, Token::Whitespace(_)));
        if let Some(target) = target {
            if columns
                .iter()
                .any(|(c, _)| identifier(c) == identifier(target))
            {
                return Err(super::syntax_error(format!(
                    "multiple assignments to the same column {}",
                    identifier(target)
                )));
            }
        }
    }
    let mut first = true;
    let mut separator = |out: &mut Vec<Token>| {
        if !first {
            out.push(Token::Comma);
        }
        first = false;
    };
    for tokens in plain {
        separator(&mut out);
        out.extend(tokens);
    }
    for (column, expr) in columns {
        separator(&mut out);
        out.push(column);
        out.push(Token::Eq);
        out.extend(expr);
    }
    out.push(Token::Whitespace(sqlparser::tokenizer::Whitespace::Space));
    out.extend(tokens[tail_from..].iter().cloned());
    Ok(out)
}

/// Rewrites every object literal `{key = expr, ...}` into a `named_struct` call; `{}` is the
/// text `'{}'`, which an object column reads as an empty object.
pub(super) fn rewrite_object_literals(tokens: Vec<Token>) -> crate::error::Result<Vec<Token>> {
    if !tokens.contains(&Token::LBrace) {
        return Ok(tokens);
    }
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    let mut brackets = 0i64;
    while i < tokens.len() {
        match tokens[i] {
            Token::LBracket => brackets += 1,
            Token::RBracket => brackets -= 1,
            _ => {}
        }
        if tokens[i] == Token::LBrace && brackets > 0 {
            // In an array, objects with different keys would be structs of different types,
            // which no array holds: a constant one is its JSON text, which object columns read.
            if let Some((value, end)) = constant_json(&tokens, i, 0) {
                out.push(Token::SingleQuotedString(value.to_string()));
                i = end;
                continue;
            }
        }
        if tokens[i] == Token::LBrace {
            i = literal(&tokens, i, &mut out, 0)?;
        } else {
            out.push(tokens[i].clone());
            i += 1;
        }
    }
    Ok(out)
}

/// The JSON value of a constant object literal (or array) starting at `open`, and the index
/// after it; `None` if it holds anything but literals.
fn constant_json(
    tokens: &[Token],
    open: usize,
    depth: usize,
) -> Option<(serde_json::Value, usize)> {
    use serde_json::Value;
    if depth > super::MAX_RECURSION {
        return None;
    }
    let significant =
        |from: usize| (from..tokens.len()).find(|j| !matches!(tokens[*j], Token::Whitespace(_)));
    let (close, is_object) = match tokens.get(open)? {
        Token::LBrace => (Token::RBrace, true),
        Token::LBracket => (Token::RBracket, false),
        _ => return None,
    };
    let mut map = serde_json::Map::new();
    let mut items = Vec::new();
    let mut i = significant(open + 1)?;
    if tokens[i] == close {
        let value = if is_object {
            Value::Object(map)
        } else {
            Value::Array(items)
        };
        return Some((value, i + 1));
    }
    loop {
        let key = if is_object {
            let key = match &tokens[i] {
                Token::Word(word) if word.quote_style.is_some() => word.value.clone(),
                Token::Word(word) => word.value.to_lowercase(),
                _ => return None,
            };
            let eq = significant(i + 1)?;
            if tokens[eq] != Token::Eq {
                return None;
            }
            i = significant(eq + 1)?;
            Some(key)
        } else {
            None
        };
        let negative = tokens[i] == Token::Minus;
        if negative {
            i = significant(i + 1)?;
        }
        let (value, after) = match &tokens[i] {
            Token::Number(text, _) => {
                let text = if negative {
                    format!("-{text}")
                } else {
                    text.clone()
                };
                (serde_json::from_str::<Value>(&text).ok()?, i + 1)
            }
            _ if negative => return None,
            Token::SingleQuotedString(text) => (Value::String(text.clone()), i + 1),
            Token::Word(word) if word.quote_style.is_none() => {
                match word.value.to_ascii_lowercase().as_str() {
                    "true" => (Value::Bool(true), i + 1),
                    "false" => (Value::Bool(false), i + 1),
                    "null" => (Value::Null, i + 1),
                    _ => return None,
                }
            }
            Token::LBrace | Token::LBracket => constant_json(tokens, i, depth + 1)?,
            _ => return None,
        };
        match key {
            Some(key) => {
                map.insert(key, value);
            }
            None => items.push(value),
        }
        let next = significant(after)?;
        if tokens[next] == close {
            let value = if is_object {
                Value::Object(map)
            } else {
                Value::Array(items)
            };
            return Some((value, next + 1));
        }
        if tokens[next] != Token::Comma {
            return None;
        }
        i = significant(next + 1)?;
    }
}

/// Rewrites the literal whose `{` is at `open` into `out`; returns the index after its `}`.
fn literal(
    tokens: &[Token],
    open: usize,
    out: &mut Vec<Token>,
    depth: usize,
) -> crate::error::Result<usize> {
    if depth > super::MAX_RECURSION {
        return Err(crate::error::Error::new(
            creek_common::ErrorCode::ProgramLimitExceeded,
            "statement is too deeply nested",
        ));
    }
    let significant =
        |from: usize| (from..tokens.len()).find(|j| !matches!(tokens[*j], Token::Whitespace(_)));
    let unterminated = || super::syntax_error("unterminated object literal: expected }");
    let mut i = significant(open + 1).ok_or_else(unterminated)?;
    if tokens[i] == Token::RBrace {
        out.push(Token::SingleQuotedString("{}".to_string()));
        return Ok(i + 1);
    }
    out.push(Token::make_word("named_struct", None));
    out.push(Token::LParen);
    loop {
        let key = match &tokens[i] {
            Token::Word(word) if word.quote_style.is_some() => word.value.clone(),
            Token::Word(word) => word.value.to_lowercase(),
            other => {
                return Err(super::syntax_error(format!(
                    "expected a key in object literal, found {other}"
                )))
            }
        };
        let eq = significant(i + 1).ok_or_else(unterminated)?;
        if tokens[eq] != Token::Eq {
            return Err(super::syntax_error(format!(
                "expected = after key {key} in object literal"
            )));
        }
        out.push(Token::SingleQuotedString(key));
        out.push(Token::Comma);
        // The value: tokens up to the `,` or `}` that ends it, nested literals rewritten.
        let mut j = eq + 1;
        let mut nesting = 0i64;
        loop {
            let token = tokens.get(j).ok_or_else(unterminated)?;
            match token {
                Token::LBrace => {
                    j = literal(tokens, j, out, depth + 1)?;
                    continue;
                }
                Token::LParen | Token::LBracket => nesting += 1,
                Token::RParen | Token::RBracket => nesting -= 1,
                Token::Comma | Token::RBrace if nesting == 0 => break,
                _ => {}
            }
            out.push(token.clone());
            j += 1;
        }
        if tokens[j] == Token::RBrace {
            out.push(Token::RParen);
            return Ok(j + 1);
        }
        out.push(Token::Comma);
        i = significant(j + 1).ok_or_else(unterminated)?;
    }
}

#[cfg(test)]
mod tests {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::tokenizer::Tokenizer;

    use super::*;

    fn lifted(sql: &str) -> String {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize()
            .unwrap();
        lift_object_types(tokens)
            .iter()
            .map(|t| t.to_string())
            .collect()
    }

    #[test]
    fn sub_column_assignments_become_object_sets() {
        let text = |sql: &str| -> String {
            let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
                .tokenize()
                .unwrap();
            rewrite_sub_column_assignments(tokens)
                .unwrap()
                .iter()
                .map(|t| t.to_string())
                .collect()
        };
        assert_eq!(
            text("UPDATE t SET o['a']['b'] = 1 + f(2, 3), x = 4, o['c'] = 'y' WHERE id = 1"),
            "UPDATE t SET x = 4,o=__creek_object_set(__creek_object_set(o,'a','b',(1 + f(2, 3))),'c',('y')) WHERE id = 1"
        );
        assert_eq!(
            text("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET o['n'] = excluded.v"),
            "INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET o=__creek_object_set(t.o,'n',(excluded.v)) "
        );
        assert_eq!(text("UPDATE t SET a = 1"), "UPDATE t SET a = 1");
    }

    #[test]
    fn object_literals_become_named_structs() {
        let tokens = Tokenizer::new(
            &PostgreSqlDialect {},
            "SELECT {a = 1, \"B\" = {c = f(1, 2)}, d = [1, 2]}, {}",
        )
        .tokenize()
        .unwrap();
        let text: String = rewrite_object_literals(tokens)
            .unwrap()
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(
            text,
            "SELECT named_struct('a', 1,'B', named_struct('c', f(1, 2)),'d', [1, 2]), '{}'"
        );
        for bad in ["SELECT {a 1}", "SELECT {a = 1", "SELECT {1 = 2}"] {
            let tokens = Tokenizer::new(&PostgreSqlDialect {}, bad)
                .tokenize()
                .unwrap();
            assert!(rewrite_object_literals(tokens).is_err(), "{bad}");
        }
    }

    #[test]
    fn object_types_are_lifted_and_names_are_not() {
        assert_eq!(
            lifted("CREATE TABLE t (o OBJECT(STRICT) AS (a INT, b OBJECT AS (c TEXT)) NOT NULL, p object)"),
            "CREATE TABLE t (o creek_object('OBJECT(STRICT) AS (a INT, b OBJECT AS (c TEXT))') NOT NULL, p creek_object('object'))"
        );
        assert_eq!(
            lifted("CREATE TABLE t (object int, l ARRAY(OBJECT AS (x int)))"),
            "CREATE TABLE t (object int, l creek_object('ARRAY(OBJECT AS (x int))'))"
        );
        assert_eq!(
            lifted("CREATE TABLE t (a ARRAY(INT) NOT NULL, b ARRAY(GEO_POINT))"),
            "CREATE TABLE t (a creek_object('ARRAY(INT)') NOT NULL, b creek_object('ARRAY(GEO_POINT)'))"
        );
        assert_eq!(
            lifted("CREATE TABLE t AS SELECT a, object FROM u"),
            "CREATE TABLE t AS SELECT a, object FROM u"
        );
    }
}
