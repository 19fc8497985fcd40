//! Reads a lifted object column type (`sql::parse`'s `CREEK_OBJECT('<text>')`):
//! `OBJECT [(DYNAMIC | STRICT | IGNORED)] [AS (name type, ...)]`, nested to any depth, and
//! `ARRAY(OBJECT ...)`. Other sub-column types are read as any column type is.

use creek_common::error::ErrorCode;
use creek_common::object::{ObjectField, ObjectPolicy};
use creek_common::types::ColumnType;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::{Error, Result};

/// How deeply object types may nest in one declaration.
const MAX_DEPTH: usize = 32;

/// The column type a lifted object type's text declares.
pub(super) fn object_type(text: &str) -> Result<ColumnType> {
    let tokens: Vec<Token> = Tokenizer::new(&PostgreSqlDialect {}, text)
        .tokenize()
        .map_err(|e| syntax(e.to_string()))?
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let mut reader = Reader { tokens, at: 0 };
    let column_type = reader.column_type(0)?;
    if reader.at != reader.tokens.len() {
        return Err(syntax(format!(
            "unexpected {} in object type",
            reader.tokens[reader.at]
        )));
    }
    Ok(column_type)
}

fn syntax(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::SyntaxError, message)
}

struct Reader {
    tokens: Vec<Token>,
    at: usize,
}

impl Reader {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn peek_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
    }

    fn expect(&mut self, token: Token) -> Result<()> {
        match self.peek() {
            Some(found) if *found == token => {
                self.at += 1;
                Ok(())
            }
            found => Err(syntax(format!(
                "expected {token} in object type, found {}",
                found.map_or("the end".to_string(), |t| t.to_string())
            ))),
        }
    }

    fn column_type(&mut self, depth: usize) -> Result<ColumnType> {
        if depth > MAX_DEPTH {
            return Err(Error::new(
                ErrorCode::ProgramLimitExceeded,
                format!("object types nest more than {MAX_DEPTH} levels deep"),
            ));
        }
        if self.peek_word("array") && self.tokens.get(self.at + 1) == Some(&Token::LParen) {
            self.at += 2;
            let inner = self.column_type(depth + 1)?;
            self.expect(Token::RParen)?;
            return super::array_of(inner);
        }
        if self.peek_word("object") {
            self.at += 1;
            return self.object(depth);
        }
        // Any other type: its tokens up to the `,` or `)` that ends it.
        let start = self.at;
        let mut nesting = 0i64;
        while let Some(token) = self.peek() {
            match token {
                Token::LParen => nesting += 1,
                Token::RParen if nesting == 0 => break,
                Token::RParen => nesting -= 1,
                Token::Comma if nesting == 0 => break,
                _ => {}
            }
            self.at += 1;
        }
        if start == self.at {
            return Err(syntax("expected a type in object type"));
        }
        let text: Vec<String> = self.tokens[start..self.at]
            .iter()
            .map(|t| t.to_string())
            .collect();
        super::column_type_from_name(&text.join(" "))
    }

    fn object(&mut self, depth: usize) -> Result<ColumnType> {
        let mut policy = ObjectPolicy::Dynamic;
        if self.peek() == Some(&Token::LParen) {
            self.at += 1;
            let Some(Token::Word(word)) = self.peek() else {
                return Err(syntax("expected DYNAMIC, STRICT or IGNORED"));
            };
            policy = word.value.parse().map_err(Error::Coded)?;
            self.at += 1;
            self.expect(Token::RParen)?;
        }
        let mut fields = Vec::new();
        if self.peek_word("as") {
            self.at += 1;
            self.expect(Token::LParen)?;
            loop {
                let Some(Token::Word(word)) = self.peek() else {
                    return Err(syntax("expected a sub-column name in object type"));
                };
                let name = if word.quote_style.is_some() {
                    word.value.clone()
                } else {
                    word.value.to_lowercase()
                };
                self.at += 1;
                let column_type = self.column_type(depth + 1)?;
                fields.push(ObjectField { name, column_type });
                match self.peek() {
                    Some(Token::Comma) => self.at += 1,
                    _ => break,
                }
            }
            self.expect(Token::RParen)?;
        }
        Ok(ColumnType::Object { policy, fields })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_types_read() {
        let t = object_type(
            "OBJECT(STRICT) AS (a INT, \"B\" OBJECT AS (c varchar(3)), l ARRAY(OBJECT(IGNORED)))",
        )
        .unwrap();
        assert_eq!(
            t.to_string(),
            "object(strict) as (\"a\" integer, \"B\" object(dynamic) as (\"c\" varchar(3)), \"l\" array(object(ignored)))"
        );
        assert!(object_type("OBJECT(LOOSE)").is_err());
        assert!(object_type("OBJECT AS (a)").is_err());
    }
}
