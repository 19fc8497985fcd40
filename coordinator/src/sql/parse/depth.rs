//! Bounds the depth of the expression tree a statement can build, before it is parsed.
//!
//! sqlparser parses a chain of left-associative operators (`1 + 1 + ... + 1`, `a OR b OR ...`,
//! `x::int::int`, `q UNION q UNION ...`) in a loop, so its recursion limit never sees it, but
//! the tree it builds is as deep as the chain is long, and everything after the parser walks
//! such trees recursively: rewrites, planning, evaluation, even dropping them. A chain of a
//! few thousand operators overflowed a thread's stack and killed the process. This module
//! estimates the depth from the tokens (operators chained at one parenthesis level, plus
//! those of the enclosing levels) and refuses a statement beyond [`MAX_EXPRESSION_DEPTH`],
//! or one nesting square brackets beyond [`MAX_BRACKET_NESTING`]; it changes nothing it
//! accepts.

use creek_common::error::ErrorCode;
use sqlparser::tokenizer::{Token, Word};

use crate::error::{Error, Result};

/// The deepest operator chain a statement may hold (PostgreSQL refuses deep ones too, with
/// "stack depth limit exceeded"). A generated `a = 1 OR a = 2 OR ...` of 500 terms counts
/// 1,000.
pub const MAX_EXPRESSION_DEPTH: usize = 2_000;

/// How deeply square brackets (array literals, subscripts) may nest. Planning nested array
/// literals takes time that grows steeply with their depth (`ARRAY[` nested 160 deep took
/// 0.5 s, 200 deep minutes); PostgreSQL allows arrays of at most 6 dimensions.
pub const MAX_BRACKET_NESTING: usize = 32;

/// Keywords that combine two operands into a tree node.
const OPERATOR_KEYWORDS: [&str; 12] = [
    "and",
    "or",
    "not",
    "is",
    "like",
    "ilike",
    "similar",
    "between",
    "union",
    "intersect",
    "except",
    "collate",
];

/// Keywords that start a new clause: the chain before them is finished.
const CLAUSE_KEYWORDS: [&str; 20] = [
    "select",
    "from",
    "where",
    "group",
    "having",
    "order",
    "limit",
    "offset",
    "set",
    "values",
    "on",
    "when",
    "then",
    "else",
    "end",
    "case",
    "returning",
    "join",
    "by",
    "as",
];

fn keyword(token: &Token) -> Option<&str> {
    match token {
        Token::Word(Word {
            value,
            quote_style: None,
            ..
        }) => Some(value.as_str()),
        _ => None,
    }
}

fn is_operator(token: &Token) -> bool {
    match token {
        Token::Word(_) => keyword(token).is_some_and(|word| {
            OPERATOR_KEYWORDS
                .iter()
                .any(|keyword| word.eq_ignore_ascii_case(keyword))
        }),
        Token::Whitespace(_)
        | Token::Comma
        | Token::SemiColon
        | Token::LParen
        | Token::RParen
        | Token::LBracket
        | Token::RBracket
        | Token::LBrace
        | Token::RBrace
        | Token::Period
        | Token::Number(..)
        | Token::Char(_)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::NationalStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::Placeholder(_)
        | Token::EOF => false,
        _ => true,
    }
}

/// Whether `token` is a set operation: chained across clauses, not within one.
fn is_set_operation(token: &Token) -> bool {
    keyword(token).is_some_and(|word| {
        ["union", "intersect", "except"]
            .iter()
            .any(|keyword| word.eq_ignore_ascii_case(keyword))
    })
}

/// Refuses `tokens` (one statement) if they chain more than [`MAX_EXPRESSION_DEPTH`]
/// operators.
pub fn check_expression_depth(tokens: &[Token]) -> Result<()> {
    // Per open parenthesis: the depth outside it, and the chains it interrupted.
    let mut outer: Vec<(usize, usize, usize)> = Vec::new();
    let mut base = 0usize;
    // Operators chained in the current expression, and set operations chained at this level
    // (a clause keyword ends an expression, not a chain of `UNION`s).
    let mut run = 0usize;
    let mut set_operations = 0usize;
    let mut brackets = 0usize;
    for token in tokens {
        match token {
            Token::LBracket => brackets += 1,
            Token::RBracket => brackets = brackets.saturating_sub(1),
            _ => {}
        }
        if brackets > MAX_BRACKET_NESTING {
            return Err(Error::new(
                ErrorCode::ProgramLimitExceeded,
                format!("arrays and subscripts nest at most {MAX_BRACKET_NESTING} deep"),
            ));
        }
        match token {
            Token::LParen | Token::LBracket | Token::LBrace => {
                outer.push((base, run, set_operations));
                base += run + set_operations;
                run = 0;
                set_operations = 0;
            }
            Token::RParen | Token::RBracket | Token::RBrace => {
                // The parenthesised expression is one operand of the chain it is in.
                (base, run, set_operations) = outer.pop().unwrap_or((0, 0, 0));
            }
            Token::Comma | Token::SemiColon => run = 0,
            _ if is_set_operation(token) => set_operations += 1,
            _ if keyword(token).is_some_and(|word| {
                CLAUSE_KEYWORDS
                    .iter()
                    .any(|keyword| word.eq_ignore_ascii_case(keyword))
            }) =>
            {
                run = 0
            }
            _ if is_operator(token) => run += 1,
            _ => {}
        }
        if base + run + set_operations > MAX_EXPRESSION_DEPTH {
            return Err(Error::new(
                ErrorCode::ProgramLimitExceeded,
                format!(
                    "statement is too complex: it chains more than {MAX_EXPRESSION_DEPTH} \
                     operators in one expression"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::tokenizer::Tokenizer;

    fn check(sql: &str) -> Result<()> {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize()
            .unwrap();
        check_expression_depth(&tokens)
    }

    fn chain(separator: &str, terms: usize) -> String {
        vec!["1"; terms].join(separator)
    }

    #[test]
    fn long_chains_are_refused_and_wide_statements_are_not() {
        assert!(check(&format!("SELECT {}", chain("+", 1_000))).is_ok());
        let error = check(&format!("SELECT {}", chain("+", 100_000))).unwrap_err();
        assert_eq!(error.code(), ErrorCode::ProgramLimitExceeded);
        assert!(check(&format!("SELECT 1 WHERE {}", chain(" OR ", 5_000))).is_err());
        assert!(check(&format!("SELECT {}", chain(" UNION SELECT ", 5_000))).is_err());
        assert!(check(&format!("SELECT 1{}", "::int".repeat(5_000))).is_err());
        // Nesting adds the chains of the enclosing levels.
        let nested = format!(
            "SELECT {}",
            vec![chain("+", 100); 30].join("+(") + &")".repeat(29)
        );
        assert!(check(&nested).is_err());
        let nested =
            |depth: usize| format!("SELECT {}1{}", "ARRAY[".repeat(depth), "]".repeat(depth));
        assert!(check(&nested(MAX_BRACKET_NESTING)).is_ok());
        assert!(check(&nested(MAX_BRACKET_NESTING + 1)).is_err());
        assert!(check(&format!("SELECT o{} FROM t", "['k']".repeat(100))).is_ok());
        // Many short expressions side by side are fine: a 50,000-row INSERT of negative
        // numbers, a long IN list, a wide select list.
        let rows = vec!["(-1, -2, 'x' || 'y')"; 50_000].join(", ");
        assert!(check(&format!("INSERT INTO t VALUES {rows}")).is_ok());
        assert!(check(&format!(
            "SELECT * FROM t WHERE a IN ({})",
            chain(", ", 50_000)
        ))
        .is_ok());
        let columns = vec!["a + b * c"; 10_000].join(", ");
        assert!(check(&format!("SELECT {columns} FROM t WHERE a = 1 AND b = 2")).is_ok());
    }
}
