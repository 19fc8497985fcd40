//! Full-text definitions as cluster state keeps them: analyzers (a tokenizer and a chain of
//! token filters), the built-in ones by name, and the FULLTEXT indexes of a table.
//!
//! This module owns the vocabulary and its validation, so that every coordinator accepts the
//! same `CREATE ANALYZER` and every data node builds the same analyzer from a definition. It
//! must not tokenize anything: turning a definition into a running analyzer is the data
//! node's business.

use serde::{Deserialize, Serialize};

use crate::error::{CodedError, ErrorCode};

/// The analyzer a FULLTEXT index uses when it names none.
pub const DEFAULT_ANALYZER: &str = "standard";

/// The longest token the standard tokenizer keeps (Lucene's default): longer runs are
/// dropped, as tantivy cannot index terms beyond 65,530 bytes and nobody searches for them.
pub const DEFAULT_MAX_TOKEN_LENGTH: usize = 255;

/// The widest n-gram range a tokenizer or filter may ask for: each token of length n yields
/// up to n × (max - min + 1) grams, which must stay bounded.
pub const MAX_NGRAM_DIFF: usize = 16;

/// The longest n-gram, in characters.
pub const MAX_NGRAM: usize = 64;

/// Languages with a stemmer (tantivy's Snowball stemmers); stop word lists exist for the
/// ones in [`STOP_LANGUAGES`].
pub const STEM_LANGUAGES: &[&str] = &[
    "arabic",
    "danish",
    "dutch",
    "english",
    "finnish",
    "french",
    "german",
    "greek",
    "hungarian",
    "italian",
    "norwegian",
    "portuguese",
    "romanian",
    "russian",
    "spanish",
    "swedish",
    "tamil",
    "turkish",
];

/// Languages with a built-in stop word list.
pub const STOP_LANGUAGES: &[&str] = &[
    "danish",
    "dutch",
    "english",
    "finnish",
    "french",
    "german",
    "hungarian",
    "italian",
    "norwegian",
    "portuguese",
    "russian",
    "spanish",
    "swedish",
];

/// How text is split into tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TokenizerDef {
    /// Runs of letters and digits; runs longer than `max_token_length` are dropped.
    Standard { max_token_length: usize },
    /// Runs of letters.
    Letter,
    /// Runs of anything but whitespace.
    Whitespace,
    /// The whole text as one token.
    Keyword,
    /// Every substring of `min_gram..=max_gram` characters.
    Ngram { min_gram: usize, max_gram: usize },
    /// The prefixes of `min_gram..=max_gram` characters of the text.
    EdgeNgram { min_gram: usize, max_gram: usize },
}

/// One step of the token filter chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TokenFilterDef {
    /// Lowercases every token.
    Lowercase,
    /// Folds accented and other non-ASCII letters to ASCII where an equivalent exists.
    Asciifolding,
    /// Drops the given words (compared after the filters before it).
    Stop { stopwords: Vec<String> },
    /// Drops a language's stop words.
    StopLanguage { language: String },
    /// Reduces words to their stem (Snowball); expects lowercase tokens.
    Stemmer { language: String },
    /// Drops tokens longer than `max` bytes.
    Length { max: usize },
    /// Replaces each token by its substrings of `min_gram..=max_gram` characters.
    Ngram { min_gram: usize, max_gram: usize },
    /// Replaces each token by its prefixes of `min_gram..=max_gram` characters.
    EdgeNgram { min_gram: usize, max_gram: usize },
}

/// An analyzer: a tokenizer, then token filters in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalyzerDef {
    pub tokenizer: TokenizerDef,
    #[serde(default)]
    pub token_filters: Vec<TokenFilterDef>,
}

/// A FULLTEXT index of a table: the analyzed text of its columns, searched by `MATCH`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulltextIndexDef {
    /// The index name: the column's own name for a column-level index.
    pub name: String,
    /// The text columns whose values it indexes, in order.
    pub columns: Vec<String>,
    /// The analyzer's name: built in, or a custom one defined by `CREATE ANALYZER`.
    pub analyzer: String,
    /// The analyzer itself, copied from cluster state when the table was created, so that the
    /// table's shards never depend on an analyzer that is later dropped or redefined.
    pub definition: AnalyzerDef,
}

/// The standard analyzer's chain: standard tokenizer, lowercase.
fn standard() -> AnalyzerDef {
    AnalyzerDef {
        tokenizer: TokenizerDef::Standard {
            max_token_length: DEFAULT_MAX_TOKEN_LENGTH,
        },
        token_filters: vec![TokenFilterDef::Lowercase],
    }
}

/// Returns the built-in analyzer called `name`: `standard`, `simple`, `whitespace`,
/// `keyword`, `stop`, or a language (`english`, `german`, ...: standard, lowercase, the
/// language's stop words and stemmer).
pub fn builtin_analyzer(name: &str) -> Option<AnalyzerDef> {
    Some(match name {
        "standard" | "default" => standard(),
        "simple" => AnalyzerDef {
            tokenizer: TokenizerDef::Letter,
            token_filters: vec![TokenFilterDef::Lowercase],
        },
        "whitespace" => AnalyzerDef {
            tokenizer: TokenizerDef::Whitespace,
            token_filters: Vec::new(),
        },
        "keyword" => AnalyzerDef {
            tokenizer: TokenizerDef::Keyword,
            token_filters: Vec::new(),
        },
        "stop" => AnalyzerDef {
            tokenizer: TokenizerDef::Letter,
            token_filters: vec![
                TokenFilterDef::Lowercase,
                TokenFilterDef::StopLanguage {
                    language: "english".into(),
                },
            ],
        },
        language if STEM_LANGUAGES.contains(&language) => {
            let mut analyzer = standard();
            if STOP_LANGUAGES.contains(&language) {
                analyzer.token_filters.push(TokenFilterDef::StopLanguage {
                    language: language.into(),
                });
            }
            analyzer.token_filters.push(TokenFilterDef::Stemmer {
                language: language.into(),
            });
            analyzer
        }
        _ => return None,
    })
}

/// Names of the built-in analyzers, for `information_schema` and error messages.
pub fn builtin_analyzer_names() -> Vec<&'static str> {
    let mut names = vec!["standard", "simple", "whitespace", "keyword", "stop"];
    names.extend(STEM_LANGUAGES);
    names
}

/// A parameter of a tokenizer or filter definition (`WITH (key = value)`), as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    Number(i64),
    List(Vec<String>),
}

fn invalid(message: impl Into<String>) -> CodedError {
    CodedError::new(ErrorCode::InvalidParameterValue, message)
}

/// Reads parameters by name, refusing any that nothing read (a setting that is accepted and
/// silently ignored would be a lie).
struct Params<'a> {
    what: &'a str,
    params: &'a [(String, Param)],
    used: Vec<&'a str>,
}

impl<'a> Params<'a> {
    fn new(what: &'a str, params: &'a [(String, Param)]) -> Params<'a> {
        Params {
            what,
            params,
            used: vec!["type"],
        }
    }

    fn get(&mut self, key: &'a str) -> Option<&'a Param> {
        self.used.push(key);
        self.params
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }

    fn number(&mut self, key: &'a str, default: usize) -> Result<usize, CodedError> {
        match self.get(key) {
            None => Ok(default),
            Some(Param::Number(n)) if *n >= 1 => Ok(*n as usize),
            Some(other) => Err(invalid(format!(
                "{} parameter {key} must be a positive integer, got {other:?}",
                self.what
            ))),
        }
    }

    fn text(&mut self, key: &'a str) -> Result<Option<String>, CodedError> {
        match self.get(key) {
            None => Ok(None),
            Some(Param::Text(text)) => Ok(Some(text.to_lowercase())),
            Some(other) => Err(invalid(format!(
                "{} parameter {key} must be text, got {other:?}",
                self.what
            ))),
        }
    }

    fn finish(self) -> Result<(), CodedError> {
        match self
            .params
            .iter()
            .find(|(name, _)| !self.used.contains(&name.as_str()))
        {
            Some((name, _)) => Err(invalid(format!(
                "{} does not take the parameter {name}",
                self.what
            ))),
            None => Ok(()),
        }
    }
}

fn gram_range(
    params: &mut Params<'_>,
    min: usize,
    max: usize,
) -> Result<(usize, usize), CodedError> {
    let min_gram = params.number("min_gram", min)?;
    let max_gram = params.number("max_gram", max)?;
    if min_gram > max_gram || max_gram > MAX_NGRAM || max_gram - min_gram > MAX_NGRAM_DIFF {
        return Err(invalid(format!(
            "{}: min_gram ({min_gram}) must be at most max_gram ({max_gram}), max_gram at most \
             {MAX_NGRAM}, and they may differ by at most {MAX_NGRAM_DIFF}",
            params.what
        )));
    }
    Ok((min_gram, max_gram))
}

fn language(params: &mut Params<'_>, list: &[&str]) -> Result<String, CodedError> {
    let language = params
        .text("language")?
        .unwrap_or_else(|| "english".to_string());
    if !list.contains(&language.as_str()) {
        return Err(invalid(format!(
            "{}: unknown language {language:?} (known: {})",
            params.what,
            list.join(", ")
        )));
    }
    Ok(language)
}

/// Resolves a tokenizer of `kind` (a built-in name, or the `type` of a custom one) with its
/// parameters.
pub fn tokenizer(kind: &str, params: &[(String, Param)]) -> Result<TokenizerDef, CodedError> {
    let what = format!("tokenizer {kind}");
    let mut reader = Params::new(&what, params);
    let tokenizer = match kind {
        "standard" | "classic" => TokenizerDef::Standard {
            max_token_length: reader.number("max_token_length", DEFAULT_MAX_TOKEN_LENGTH)?,
        },
        "letter" | "lowercase" => TokenizerDef::Letter,
        "whitespace" => TokenizerDef::Whitespace,
        "keyword" => TokenizerDef::Keyword,
        "ngram" | "n_gram" => {
            let (min_gram, max_gram) = gram_range(&mut reader, 1, 2)?;
            TokenizerDef::Ngram { min_gram, max_gram }
        }
        "edge_ngram" | "edge_n_gram" => {
            let (min_gram, max_gram) = gram_range(&mut reader, 1, 2)?;
            TokenizerDef::EdgeNgram { min_gram, max_gram }
        }
        other => {
            return Err(CodedError::new(
                ErrorCode::UndefinedObject,
                format!(
                    "unknown tokenizer {other:?} (known: standard, letter, whitespace, keyword, \
                     ngram, edge_ngram)"
                ),
            ))
        }
    };
    reader.finish()?;
    Ok(tokenizer)
}

/// Resolves a token filter of `kind` (a built-in name, or the `type` of a custom one) with
/// its parameters. `lowercase` as a tokenizer name is Lucene's letter tokenizer followed by
/// lowercasing; as a filter it only lowercases.
pub fn token_filter(kind: &str, params: &[(String, Param)]) -> Result<TokenFilterDef, CodedError> {
    let what = format!("token filter {kind}");
    let mut reader = Params::new(&what, params);
    let filter = match kind {
        "lowercase" => TokenFilterDef::Lowercase,
        "asciifolding" => TokenFilterDef::Asciifolding,
        "stop" => match reader.get("stopwords") {
            Some(Param::List(words)) => TokenFilterDef::Stop {
                stopwords: words.iter().map(|w| w.to_lowercase()).collect(),
            },
            Some(other) => {
                return Err(invalid(format!(
                    "{what}: stopwords must be an array of words, got {other:?}"
                )))
            }
            None => TokenFilterDef::StopLanguage {
                language: language(&mut reader, STOP_LANGUAGES)?,
            },
        },
        "stemmer" | "snowball" => TokenFilterDef::Stemmer {
            language: language(&mut reader, STEM_LANGUAGES)?,
        },
        "porter_stem" | "kstem" => TokenFilterDef::Stemmer {
            language: "english".into(),
        },
        "length" => TokenFilterDef::Length {
            max: reader.number("max", DEFAULT_MAX_TOKEN_LENGTH)?,
        },
        "ngram" | "n_gram" => {
            let (min_gram, max_gram) = gram_range(&mut reader, 1, 2)?;
            TokenFilterDef::Ngram { min_gram, max_gram }
        }
        "edge_ngram" | "edge_n_gram" => {
            let (min_gram, max_gram) = gram_range(&mut reader, 1, 2)?;
            TokenFilterDef::EdgeNgram { min_gram, max_gram }
        }
        other => {
            return Err(CodedError::new(
                ErrorCode::UndefinedObject,
                format!(
                    "unknown token filter {other:?} (known: lowercase, asciifolding, stop, \
                     stemmer, porter_stem, kstem, length, ngram, edge_ngram)"
                ),
            ))
        }
    };
    reader.finish()?;
    Ok(filter)
}

/// How `MATCH` combines its fields and terms (Elasticsearch's and CrateDB's match types).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchType {
    /// Each field's terms combined; the best field's score counts (plus `tie_breaker` times
    /// the others').
    #[default]
    BestFields,
    /// Each field's terms combined; the fields' scores add up.
    MostFields,
    /// The fields as one: each term scores in its best field; the terms' scores add up.
    CrossFields,
    /// The terms in order, at most `slop` positions apart, in one field.
    Phrase,
    /// As `Phrase`, the last term a prefix.
    PhrasePrefix,
}

impl MatchType {
    /// Parses the name after `USING`.
    pub fn parse(name: &str) -> Option<MatchType> {
        Some(match name.to_ascii_lowercase().as_str() {
            "best_fields" => MatchType::BestFields,
            "most_fields" => MatchType::MostFields,
            "cross_fields" => MatchType::CrossFields,
            "phrase" => MatchType::Phrase,
            "phrase_prefix" => MatchType::PhrasePrefix,
            _ => return None,
        })
    }
}

/// How many query terms a document must contain (`minimum_should_match`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MinimumShouldMatch {
    /// That many terms (negative: all but that many).
    Count(i64),
    /// That percentage of the terms, rounded down (negative: all but that share).
    Percent(i64),
}

impl MinimumShouldMatch {
    /// The number of the `terms` a document must match, at least 1 and at most `terms`.
    pub fn of(self, terms: usize) -> usize {
        let terms_i = terms as i64;
        let n = match self {
            MinimumShouldMatch::Count(n) if n < 0 => terms_i + n,
            MinimumShouldMatch::Count(n) => n,
            MinimumShouldMatch::Percent(p) if p < 0 => terms_i - terms_i * (-p) / 100,
            MinimumShouldMatch::Percent(p) => terms_i * p / 100,
        };
        n.clamp(1, terms_i.max(1)) as usize
    }
}

/// How far a term may be from a query term and still match (`fuzziness`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fuzziness {
    /// This many edits (0, 1 or 2).
    Edits(u8),
    /// Elasticsearch's `AUTO`: 0 edits for terms of up to 2 characters, 1 up to 5, else 2.
    Auto,
}

impl Fuzziness {
    /// The edits allowed for `term`.
    pub fn edits_for(self, term: &str) -> u8 {
        match self {
            Fuzziness::Edits(n) => n,
            Fuzziness::Auto => match term.chars().count() {
                0..=2 => 0,
                3..=5 => 1,
                _ => 2,
            },
        }
    }
}

/// The options of a `MATCH` (`WITH (...)`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MatchOptions {
    /// `operator = 'and'`: every term must match (default `or`: any).
    #[serde(default)]
    pub and: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_should_match: Option<MinimumShouldMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuzziness: Option<Fuzziness>,
    /// Positions a phrase's terms may move.
    #[serde(default)]
    pub slop: u32,
    /// For best_fields: how much the other fields' scores count.
    #[serde(default)]
    pub tie_breaker: f32,
    /// For phrase_prefix: how many terms the prefix may expand to.
    #[serde(default = "default_max_expansions")]
    pub max_expansions: u32,
}

fn default_max_expansions() -> u32 {
    50
}

/// The options a `MATCH` accepts, by name.
pub const MATCH_OPTIONS: &[&str] = &[
    "operator",
    "minimum_should_match",
    "fuzziness",
    "slop",
    "tie_breaker",
    "max_expansions",
];

impl MatchOptions {
    /// Reads `WITH (...)` of a `MATCH`; an unknown option or value is an error.
    pub fn from_params(params: &[(String, Param)]) -> Result<MatchOptions, CodedError> {
        let mut options = MatchOptions {
            max_expansions: default_max_expansions(),
            ..MatchOptions::default()
        };
        for (key, value) in params {
            let bad = || invalid(format!("invalid value {value:?} for MATCH option {key}"));
            let number = || match value {
                Param::Number(n) => Ok(*n),
                Param::Text(text) => text.trim().parse::<i64>().map_err(|_| bad()),
                Param::List(_) => Err(bad()),
            };
            match key.as_str() {
                "operator" => {
                    options.and = match value {
                        Param::Text(t) if t.eq_ignore_ascii_case("and") => true,
                        Param::Text(t) if t.eq_ignore_ascii_case("or") => false,
                        _ => return Err(bad()),
                    }
                }
                "minimum_should_match" => {
                    options.minimum_should_match = Some(match value {
                        Param::Text(t) if t.trim().ends_with('%') => MinimumShouldMatch::Percent(
                            t.trim().trim_end_matches('%').parse().map_err(|_| bad())?,
                        ),
                        _ => MinimumShouldMatch::Count(number()?),
                    })
                }
                "fuzziness" => {
                    options.fuzziness = Some(match value {
                        Param::Text(t) if t.eq_ignore_ascii_case("auto") => Fuzziness::Auto,
                        _ => match number()? {
                            n @ 0..=2 => Fuzziness::Edits(n as u8),
                            _ => return Err(bad()),
                        },
                    })
                }
                "slop" => options.slop = u32::try_from(number()?).map_err(|_| bad())?,
                "max_expansions" => {
                    options.max_expansions = u32::try_from(number()?)
                        .ok()
                        .filter(|n| (1..=10_000).contains(n))
                        .ok_or_else(bad)?
                }
                "tie_breaker" => {
                    options.tie_breaker = match value {
                        Param::Number(n) => *n as f32,
                        Param::Text(t) => t.trim().parse().map_err(|_| bad())?,
                        Param::List(_) => return Err(bad()),
                    };
                    if !(0.0..=1.0).contains(&options.tie_breaker) {
                        return Err(bad());
                    }
                }
                other => {
                    return Err(invalid(format!(
                        "unknown MATCH option {other} (known: {})",
                        MATCH_OPTIONS.join(", ")
                    )))
                }
            }
        }
        Ok(options)
    }
}

/// One field a `MATCH` searches: a FULLTEXT index and its boost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchField {
    pub index: String,
    pub boost: f32,
}

/// Term statistics of the whole table (every shard), so that each shard scores with the
/// same frequencies as a one-shard table would (Elasticsearch's `dfs_query_then_fetch`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MatchStats {
    /// Documents of all shards, as tantivy counts them for BM25 (deleted ones until they are
    /// merged away included).
    pub total_docs: u64,
    /// Per index: the tokens of all its documents.
    pub total_tokens: std::collections::BTreeMap<String, u64>,
    /// Per index, per analyzed query term: the documents holding it.
    pub doc_freq: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
}

impl MatchStats {
    /// Adds another set of shards' statistics.
    pub fn merge(&mut self, other: MatchStats) {
        self.total_docs += other.total_docs;
        for (index, tokens) in other.total_tokens {
            *self.total_tokens.entry(index).or_default() += tokens;
        }
        for (index, terms) in other.doc_freq {
            let mine = self.doc_freq.entry(index).or_default();
            for (term, n) in terms {
                *mine.entry(term).or_default() += n;
            }
        }
    }
}

/// A `MATCH` predicate as the scan of one table runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchSpec {
    pub fields: Vec<MatchField>,
    pub query: String,
    #[serde(default)]
    pub match_type: MatchType,
    #[serde(default)]
    pub options: MatchOptions,
    /// The whole table's statistics; `None`: each shard scores with its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<MatchStats>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_resolve() {
        assert_eq!(builtin_analyzer("standard"), Some(standard()));
        let english = builtin_analyzer("english").unwrap();
        assert_eq!(english.token_filters.len(), 3);
        // Greek has a stemmer but no stop word list.
        assert_eq!(builtin_analyzer("greek").unwrap().token_filters.len(), 2);
        assert_eq!(builtin_analyzer("klingon"), None);
        for name in builtin_analyzer_names() {
            assert!(builtin_analyzer(name).is_some(), "{name}");
        }
    }

    #[test]
    fn minimum_should_match_is_bounded() {
        assert_eq!(MinimumShouldMatch::Count(2).of(3), 2);
        assert_eq!(MinimumShouldMatch::Count(5).of(3), 3);
        assert_eq!(MinimumShouldMatch::Count(-1).of(3), 2);
        assert_eq!(MinimumShouldMatch::Percent(50).of(3), 1);
        assert_eq!(MinimumShouldMatch::Percent(-25).of(4), 3);
        assert_eq!(MinimumShouldMatch::Percent(0).of(4), 1);
    }

    #[test]
    fn match_options_are_checked() {
        let text = |t: &str| Param::Text(t.into());
        let options = MatchOptions::from_params(&[
            ("operator".into(), text("AND")),
            ("fuzziness".into(), text("auto")),
            ("minimum_should_match".into(), text("75%")),
        ])
        .unwrap();
        assert!(options.and);
        assert_eq!(options.fuzziness, Some(Fuzziness::Auto));
        assert_eq!(
            options.minimum_should_match,
            Some(MinimumShouldMatch::Percent(75))
        );
        assert!(MatchOptions::from_params(&[("fuzziness".into(), Param::Number(3))]).is_err());
        assert!(MatchOptions::from_params(&[("operator".into(), text("xor"))]).is_err());
        assert!(MatchOptions::from_params(&[("boost_mode".into(), text("x"))]).is_err());
    }

    #[test]
    fn parameters_are_checked() {
        let n = |v| Param::Number(v);
        assert_eq!(
            tokenizer(
                "edge_ngram",
                &[("min_gram".into(), n(2)), ("max_gram".into(), n(5))]
            )
            .unwrap(),
            TokenizerDef::EdgeNgram {
                min_gram: 2,
                max_gram: 5
            }
        );
        assert!(tokenizer(
            "ngram",
            &[("min_gram".into(), n(5)), ("max_gram".into(), n(2))]
        )
        .is_err());
        assert!(tokenizer("ngram", &[("max_gram".into(), n(100))]).is_err());
        assert!(tokenizer("whitespace", &[("max_token_length".into(), n(3))]).is_err());
        assert_eq!(
            token_filter(
                "stop",
                &[("stopwords".into(), Param::List(vec!["The".into()]))]
            )
            .unwrap(),
            TokenFilterDef::Stop {
                stopwords: vec!["the".into()]
            }
        );
        assert!(token_filter(
            "stemmer",
            &[("language".into(), Param::Text("elvish".into()))]
        )
        .is_err());
        assert_eq!(
            token_filter("unknown", &[]).unwrap_err().code,
            ErrorCode::UndefinedObject
        );
    }
}
