//! CrateDB's spelling of a generated column, `col TYPE GENERATED ALWAYS AS expr`, in the form
//! sqlparser's PostgreSQL dialect reads: `GENERATED ALWAYS AS (expr) STORED`. Works on tokens
//! only; what the expression means is `sql::dml::generated`'s business.

use sqlparser::tokenizer::{Token, Whitespace};

use super::word_is;

/// Words that end a generated column's expression: the next column option.
const OPTION_WORDS: &[&str] = &[
    "primary",
    "default",
    "index",
    "constraint",
    "unique",
    "check",
    "references",
    "stored",
    "virtual",
];

/// Rewrites every `GENERATED ALWAYS AS expr` (not `AS IDENTITY`) to `GENERATED ALWAYS AS
/// (expr) STORED`; `STORED` or `VIRTUAL` the statement already gives is kept.
pub(super) fn normalize_generated(tokens: Vec<Token>) -> Vec<Token> {
    let significant =
        |from: usize| (from..tokens.len()).find(|j| !matches!(tokens[*j], Token::Whitespace(_)));
    let mut out = Vec::with_capacity(tokens.len() + 4);
    let mut i = 0;
    while i < tokens.len() {
        let always = significant(i + 1).filter(|j| word_is(&tokens[*j], "always"));
        let as_word = always
            .and_then(|j| significant(j + 1))
            .filter(|j| word_is(&tokens[*j], "as"));
        let start = as_word.and_then(|j| significant(j + 1));
        let (true, Some(as_word), Some(start)) = (word_is(&tokens[i], "generated"), as_word, start)
        else {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        };
        if word_is(&tokens[start], "identity") {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        out.extend(tokens[i..=as_word].iter().cloned());
        let mut end = expression_end(&tokens, start);
        while end > start && matches!(tokens[end - 1], Token::Whitespace(_)) {
            end -= 1;
        }
        out.push(Token::Whitespace(Whitespace::Space));
        out.push(Token::LParen);
        out.extend(tokens[start..end].iter().cloned());
        out.push(Token::RParen);
        let next = significant(end);
        let mode_given =
            next.is_some_and(|j| word_is(&tokens[j], "stored") || word_is(&tokens[j], "virtual"));
        if !mode_given {
            out.push(Token::Whitespace(Whitespace::Space));
            out.push(Token::make_keyword("STORED"));
        }
        i = end;
    }
    out
}

/// Where the expression starting at `start` ends: at a comma or closing bracket outside its
/// own brackets, or at the column option that follows it.
fn expression_end(tokens: &[Token], start: usize) -> usize {
    let mut depth = 0i64;
    // The last significant token of the expression so far, to tell `x IS NOT NULL` (part of
    // the expression) from a `NOT NULL` constraint after it.
    let mut previous: Option<&Token> = None;
    for (j, token) in tokens.iter().enumerate().skip(start) {
        match token {
            Token::Whitespace(_) => continue,
            Token::LParen | Token::LBracket | Token::LBrace => depth += 1,
            Token::RParen | Token::RBracket | Token::RBrace if depth == 0 => return j,
            Token::RParen | Token::RBracket | Token::RBrace => depth -= 1,
            Token::Comma | Token::SemiColon if depth == 0 => return j,
            Token::Word(_) if depth == 0 && j > start => {
                if OPTION_WORDS.iter().any(|w| word_is(token, w)) {
                    return j;
                }
                let after_is = previous.is_some_and(|p| word_is(p, "is") || word_is(p, "not"));
                let ends_value = previous.is_some_and(|p| {
                    matches!(
                        p,
                        Token::Word(_)
                            | Token::Number(..)
                            | Token::SingleQuotedString(_)
                            | Token::RParen
                            | Token::RBracket
                    )
                });
                if (word_is(token, "not") || word_is(token, "null")) && !after_is && ends_value {
                    return j;
                }
            }
            _ => {}
        }
        previous = Some(token);
    }
    tokens.len()
}

#[cfg(test)]
mod tests {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::tokenizer::Tokenizer;

    use super::normalize_generated;

    fn normalized(sql: &str) -> String {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize()
            .unwrap();
        normalize_generated(tokens)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn cratedb_spelling_becomes_postgresql_spelling() {
        assert_eq!(
            normalized("CREATE TABLE t (ts TIMESTAMP, day TIMESTAMP GENERATED ALWAYS AS date_trunc('day', ts), x INT)"),
            "CREATE TABLE t (ts TIMESTAMP, day TIMESTAMP GENERATED ALWAYS AS (date_trunc('day', ts)) STORED, x INT)"
        );
        assert_eq!(
            normalized("CREATE TABLE t (a INT, b INT GENERATED ALWAYS AS a * 2 NOT NULL)"),
            "CREATE TABLE t (a INT, b INT GENERATED ALWAYS AS (a * 2) STORED NOT NULL)"
        );
        assert_eq!(
            normalized("CREATE TABLE t (a INT, b BOOLEAN GENERATED ALWAYS AS a IS NOT NULL)"),
            "CREATE TABLE t (a INT, b BOOLEAN GENERATED ALWAYS AS (a IS NOT NULL) STORED)"
        );
        assert_eq!(
            normalized("CREATE TABLE t (a INT, b INT GENERATED ALWAYS AS (a + 1) STORED)"),
            "CREATE TABLE t (a INT, b INT GENERATED ALWAYS AS ((a + 1)) STORED)"
        );
        assert_eq!(
            normalized("CREATE TABLE t (a INT GENERATED ALWAYS AS IDENTITY)"),
            "CREATE TABLE t (a INT GENERATED ALWAYS AS IDENTITY)"
        );
    }
}
