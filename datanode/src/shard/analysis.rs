//! Analyzers of FULLTEXT indexes: tantivy text analyzers built from the definitions a table
//! carries (`creek_common::fulltext`), registered with a shard's index under the name of the
//! index's field, and the n-gram token filters tantivy lacks.
//!
//! Indexing and `MATCH` both go through the analyzer registered here, so a query term is
//! always analyzed as the indexed text was. This module must not decide the field layout
//! (`document` does) nor build queries (`scan::fulltext` does).

use creek_common::fulltext::{AnalyzerDef, TokenFilterDef, TokenizerDef};
use creek_common::schema::TableSchema;
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, NgramTokenizer, RawTokenizer, RegexTokenizer,
    RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer, Token, TokenFilter,
    TokenStream, Tokenizer, WhitespaceTokenizer,
};
use tantivy::Index;

use super::document::fulltext_field_name;

fn language(name: &str) -> Option<Language> {
    Some(match name {
        "arabic" => Language::Arabic,
        "danish" => Language::Danish,
        "dutch" => Language::Dutch,
        "english" => Language::English,
        "finnish" => Language::Finnish,
        "french" => Language::French,
        "german" => Language::German,
        "greek" => Language::Greek,
        "hungarian" => Language::Hungarian,
        "italian" => Language::Italian,
        "norwegian" => Language::Norwegian,
        "portuguese" => Language::Portuguese,
        "romanian" => Language::Romanian,
        "russian" => Language::Russian,
        "spanish" => Language::Spanish,
        "swedish" => Language::Swedish,
        "tamil" => Language::Tamil,
        "turkish" => Language::Turkish,
        _ => return None,
    })
}

fn unknown(what: &str) -> tantivy::TantivyError {
    tantivy::TantivyError::InvalidArgument(format!("analyzer definition: {what}"))
}

/// Builds the analyzer `definition` describes.
pub fn build_analyzer(definition: &AnalyzerDef) -> tantivy::Result<TextAnalyzer> {
    let mut builder = match &definition.tokenizer {
        TokenizerDef::Standard { max_token_length } => {
            TextAnalyzer::builder(SimpleTokenizer::default())
                .filter_dynamic(RemoveLongFilter::limit(*max_token_length + 1))
        }
        TokenizerDef::Letter => TextAnalyzer::builder(RegexTokenizer::new(r"\p{L}+")?).dynamic(),
        TokenizerDef::Whitespace => TextAnalyzer::builder(WhitespaceTokenizer::default()).dynamic(),
        TokenizerDef::Keyword => TextAnalyzer::builder(RawTokenizer::default()).dynamic(),
        TokenizerDef::Ngram { min_gram, max_gram } => {
            TextAnalyzer::builder(NgramTokenizer::all_ngrams(*min_gram, *max_gram)?).dynamic()
        }
        TokenizerDef::EdgeNgram { min_gram, max_gram } => {
            TextAnalyzer::builder(NgramTokenizer::prefix_only(*min_gram, *max_gram)?).dynamic()
        }
    };
    for filter in &definition.token_filters {
        builder = match filter {
            TokenFilterDef::Lowercase => builder.filter_dynamic(LowerCaser),
            TokenFilterDef::Asciifolding => builder.filter_dynamic(AsciiFoldingFilter),
            TokenFilterDef::Stop { stopwords } => {
                builder.filter_dynamic(StopWordFilter::remove(stopwords.iter().cloned()))
            }
            TokenFilterDef::StopLanguage { language: name } => {
                let filter = language(name)
                    .and_then(StopWordFilter::new)
                    .ok_or_else(|| unknown(&format!("no stop words for {name}")))?;
                builder.filter_dynamic(filter)
            }
            TokenFilterDef::Stemmer { language: name } => {
                let language =
                    language(name).ok_or_else(|| unknown(&format!("no stemmer for {name}")))?;
                builder.filter_dynamic(Stemmer::new(language))
            }
            TokenFilterDef::Length { max } => {
                builder.filter_dynamic(RemoveLongFilter::limit(max + 1))
            }
            TokenFilterDef::Ngram { min_gram, max_gram } => builder.filter_dynamic(GramFilter {
                min: *min_gram,
                max: *max_gram,
                prefix_only: false,
            }),
            TokenFilterDef::EdgeNgram { min_gram, max_gram } => {
                builder.filter_dynamic(GramFilter {
                    min: *min_gram,
                    max: *max_gram,
                    prefix_only: true,
                })
            }
        };
    }
    Ok(builder.build())
}

/// Registers the analyzer of each of `table`'s FULLTEXT indexes with `index`, under its
/// field's name (which the field's indexing options name as its tokenizer).
pub fn register_analyzers(index: &Index, table: &TableSchema) -> tantivy::Result<()> {
    for fulltext in &table.fulltext {
        index.tokenizers().register(
            &fulltext_field_name(&fulltext.name),
            build_analyzer(&fulltext.definition)?,
        );
    }
    Ok(())
}

/// Replaces each token by its character n-grams of `min..=max` characters (only those
/// starting at the first character when `prefix_only`), at the token's position: a filter
/// after the tokenizer, where the n-gram tokenizer would cut across words.
#[derive(Clone)]
struct GramFilter {
    min: usize,
    max: usize,
    prefix_only: bool,
}

impl TokenFilter for GramFilter {
    type Tokenizer<T: Tokenizer> = GramTokenizer<T>;

    fn transform<T: Tokenizer>(self, tokenizer: T) -> GramTokenizer<T> {
        GramTokenizer {
            filter: self,
            inner: tokenizer,
            grams: Vec::new(),
        }
    }
}

#[derive(Clone)]
struct GramTokenizer<T> {
    filter: GramFilter,
    inner: T,
    grams: Vec<Token>,
}

impl<T: Tokenizer> Tokenizer for GramTokenizer<T> {
    type TokenStream<'a> = GramTokenStream<'a, T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        self.grams.clear();
        GramTokenStream {
            filter: &self.filter,
            tail: self.inner.token_stream(text),
            grams: &mut self.grams,
        }
    }
}

struct GramTokenStream<'a, T> {
    filter: &'a GramFilter,
    tail: T,
    /// The current token's grams, the next one last.
    grams: &'a mut Vec<Token>,
}

impl<T: TokenStream> GramTokenStream<'_, T> {
    /// Fills `grams` with the current token's n-grams (in reverse, to pop in order).
    fn split(&mut self) {
        let token = self.tail.token();
        let bounds: Vec<usize> = token
            .text
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(token.text.len()))
            .collect();
        let chars = bounds.len() - 1;
        let starts = if self.filter.prefix_only {
            1.min(chars)
        } else {
            chars
        };
        for start in 0..starts {
            for len in self.filter.min..=self.filter.max {
                if start + len > chars {
                    break;
                }
                self.grams.push(Token {
                    text: token.text[bounds[start]..bounds[start + len]].to_string(),
                    ..token.clone()
                });
            }
        }
        self.grams.reverse();
    }
}

impl<T: TokenStream> TokenStream for GramTokenStream<'_, T> {
    fn advance(&mut self) -> bool {
        self.grams.pop();
        // A token shorter than `min` yields no gram: on to the next one.
        while self.grams.is_empty() {
            if !self.tail.advance() {
                return false;
            }
            self.split();
        }
        true
    }

    fn token(&self) -> &Token {
        self.grams.last().unwrap_or_else(|| self.tail.token())
    }

    fn token_mut(&mut self) -> &mut Token {
        self.grams
            .last_mut()
            .unwrap_or_else(|| self.tail.token_mut())
    }
}

/// The tokens `analyzer` makes of `text`.
pub fn tokens(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use creek_common::fulltext::{builtin_analyzer, token_filter, tokenizer, Param};

    fn analyze(definition: &AnalyzerDef, text: &str) -> Vec<String> {
        tokens(&mut build_analyzer(definition).unwrap(), text)
    }

    #[test]
    fn builtin_analyzers_tokenize_as_documented() {
        let standard = builtin_analyzer("standard").unwrap();
        assert_eq!(
            analyze(&standard, "The Quick-brown fox, 42x!"),
            ["the", "quick", "brown", "fox", "42x"]
        );
        let simple = builtin_analyzer("simple").unwrap();
        assert_eq!(analyze(&simple, "Route66 to Köln"), ["route", "to", "köln"]);
        let whitespace = builtin_analyzer("whitespace").unwrap();
        assert_eq!(analyze(&whitespace, "A b-C"), ["A", "b-C"]);
        let keyword = builtin_analyzer("keyword").unwrap();
        assert_eq!(analyze(&keyword, "A b"), ["A b"]);
        let english = builtin_analyzer("english").unwrap();
        assert_eq!(
            analyze(&english, "The runners were running"),
            ["runner", "were", "run"]
        );
        let german = builtin_analyzer("german").unwrap();
        assert_eq!(analyze(&german, "Die Häuser und Hunde"), ["haus", "hund"]);
    }

    #[test]
    fn gram_filters_split_each_token() {
        let n = |v| Param::Number(v);
        let edge = AnalyzerDef {
            tokenizer: tokenizer("whitespace", &[]).unwrap(),
            token_filters: vec![
                token_filter("lowercase", &[]).unwrap(),
                token_filter(
                    "edge_ngram",
                    &[("min_gram".into(), n(2)), ("max_gram".into(), n(3))],
                )
                .unwrap(),
            ],
        };
        assert_eq!(analyze(&edge, "Über a cat"), ["üb", "übe", "ca", "cat"]);
        let grams = AnalyzerDef {
            tokenizer: tokenizer("whitespace", &[]).unwrap(),
            token_filters: vec![token_filter(
                "ngram",
                &[("min_gram".into(), n(2)), ("max_gram".into(), n(2))],
            )
            .unwrap()],
        };
        assert_eq!(analyze(&grams, "abcd x"), ["ab", "bc", "cd"]);
        let stop = AnalyzerDef {
            tokenizer: tokenizer("standard", &[]).unwrap(),
            token_filters: vec![
                token_filter("lowercase", &[]).unwrap(),
                token_filter(
                    "stop",
                    &[(
                        "stopwords".into(),
                        Param::List(vec!["a".into(), "The".into()]),
                    )],
                )
                .unwrap(),
            ],
        };
        assert_eq!(analyze(&stop, "The cat a dog"), ["cat", "dog"]);
    }
}
