//! `MATCH` on a shard: the tantivy query a [`MatchSpec`] stands for, the term statistics a
//! shard contributes to the whole table's (`MatchStats`), and the BM25 statistics provider
//! that scores with the table's instead of the shard's own.
//!
//! The query text is analyzed with each field's registered analyzer (`shard::analysis`), the
//! way its documents were, and the terms are combined as Elasticsearch's `match` and
//! `multi_match` queries combine them. This module builds queries; running them is `scan`'s.

use creek_common::fulltext::{MatchSpec, MatchStats, MatchType};
use tantivy::query::{
    Bm25StatisticsProvider, BooleanQuery, BoostQuery, DisjunctionMaxQuery, EmptyQuery,
    FuzzyTermQuery, Occur, PhrasePrefixQuery, PhraseQuery, Query, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::TokenStream;
use tantivy::{Index, Searcher, Term};

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result as DfResult;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::ExecutionPlan;

use super::columns::ColumnSpec;
use super::TantivyScanExec;
use crate::shard::document::fulltext_field_name;

/// The largest top-k a shard collects by score; beyond it every match is scored and sorted.
const MAX_TOP_K: usize = 10_000;

/// Makes each shard scan under `ORDER BY _score DESC LIMIT k` (a fragment's per-shard top-N
/// whose only key is the score) collect its k best matches with tantivy's top-k collector
/// instead of scoring every match: the sort above still orders and cuts them. With a second
/// sort key the scan keeps scoring every match, since the collector breaks ties its own way.
pub fn prune_score_top_k(plan: Arc<dyn ExecutionPlan>) -> DfResult<Arc<dyn ExecutionPlan>> {
    plan.transform_down(|node| {
        let Some(sort) = node.downcast_ref::<SortExec>() else {
            return Ok(Transformed::no(node));
        };
        let (Some(k), [key]) = (sort.fetch(), sort.expr().as_ref()) else {
            return Ok(Transformed::no(node));
        };
        let Some(column) = key.expr.downcast_ref::<Column>() else {
            return Ok(Transformed::no(node));
        };
        if !key.options.descending || k > MAX_TOP_K {
            return Ok(Transformed::no(node));
        }
        // Down to the scan through operators that keep its rows and schema.
        let mut current = Arc::clone(sort.input());
        while let Some(coop) = current.downcast_ref::<CooperativeExec>() {
            current = Arc::clone(coop.input());
        }
        let Some(scan) = current.downcast_ref::<TantivyScanExec>() else {
            return Ok(Transformed::no(node));
        };
        if !scan.has_match()
            || !matches!(scan.columns().get(column.index()), Some(ColumnSpec::Score))
        {
            return Ok(Transformed::no(node));
        }
        let pruned: Arc<dyn ExecutionPlan> = Arc::new(scan.with_top_k(k));
        let input = Arc::clone(sort.input()).transform_down(|n| {
            Ok(if n.is::<TantivyScanExec>() {
                Transformed::new(Arc::clone(&pruned), true, TreeNodeRecursion::Jump)
            } else {
                Transformed::no(n)
            })
        })?;
        let rewritten = Arc::clone(&node).replace_children(
            vec![input.data],
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )?;
        Ok(Transformed::new(rewritten, true, TreeNodeRecursion::Jump))
    })
    .map(|transformed| transformed.data)
}

/// One searched field: its boost and the query's analyzed terms with their positions.
struct FieldTerms {
    field: Field,
    boost: f32,
    terms: Vec<(usize, Term)>,
}

fn tantivy_err(message: String) -> tantivy::TantivyError {
    tantivy::TantivyError::InvalidArgument(message)
}

/// Analyzes the query text for each field of `spec` the shard's index has (an index the
/// layout lacks matches nothing in this shard).
fn field_terms(spec: &MatchSpec, index: &Index) -> tantivy::Result<Vec<FieldTerms>> {
    let schema = index.schema();
    let mut out = Vec::new();
    for target in &spec.fields {
        let Ok(field) = schema.get_field(&fulltext_field_name(&target.index)) else {
            continue;
        };
        let mut analyzer = index.tokenizer_for_field(field)?;
        let mut stream = analyzer.token_stream(&spec.query);
        let mut terms = Vec::new();
        while stream.advance() {
            let token = stream.token();
            terms.push((token.position, Term::from_field_text(field, &token.text)));
        }
        out.push(FieldTerms {
            field,
            boost: target.boost,
            terms,
        });
    }
    Ok(out)
}

/// A query for one term: exact, or within the fuzziness of it.
fn term_query(spec: &MatchSpec, term: &Term) -> Box<dyn Query> {
    let edits = spec
        .options
        .fuzziness
        .zip(term.value().as_str())
        .map_or(0, |(fuzziness, text)| fuzziness.edits_for(text));
    if edits > 0 {
        Box::new(FuzzyTermQuery::new(term.clone(), edits, true))
    } else {
        Box::new(TermQuery::new(term.clone(), IndexRecordOption::WithFreqs))
    }
}

/// Combines the per-term queries of one field (or, for cross_fields, of the whole query) by
/// the operator and `minimum_should_match`.
fn combine_terms(spec: &MatchSpec, queries: Vec<Box<dyn Query>>) -> Box<dyn Query> {
    if queries.len() == 1 {
        return queries.into_iter().next().expect("one query");
    }
    let count = queries.len();
    if spec.options.and {
        return Box::new(BooleanQuery::new(
            queries.into_iter().map(|q| (Occur::Must, q)).collect(),
        ));
    }
    let clauses: Vec<(Occur, Box<dyn Query>)> =
        queries.into_iter().map(|q| (Occur::Should, q)).collect();
    match spec.options.minimum_should_match {
        Some(minimum) => Box::new(BooleanQuery::with_minimum_required_clauses(
            clauses,
            minimum.of(count),
        )),
        None => Box::new(BooleanQuery::new(clauses)),
    }
}

fn boosted(query: Box<dyn Query>, boost: f32) -> Box<dyn Query> {
    if boost == 1.0 {
        query
    } else {
        Box::new(BoostQuery::new(query, boost))
    }
}

/// Combines per-field queries: the best field's score (plus `tie_breaker` times the others'),
/// or, for most_fields, their sum.
fn combine_fields(spec: &MatchSpec, queries: Vec<Box<dyn Query>>) -> Box<dyn Query> {
    match queries.len() {
        0 => Box::new(EmptyQuery),
        1 => queries.into_iter().next().expect("one query"),
        _ if spec.match_type == MatchType::MostFields => Box::new(BooleanQuery::new(
            queries.into_iter().map(|q| (Occur::Should, q)).collect(),
        )),
        _ => Box::new(DisjunctionMaxQuery::with_tie_breaker(
            queries,
            spec.options.tie_breaker,
        )),
    }
}

/// The tantivy query `spec` stands for on a shard of `index`.
pub fn match_query(spec: &MatchSpec, index: &Index) -> tantivy::Result<Box<dyn Query>> {
    let fields = field_terms(spec, index)?;
    let mut per_field = Vec::new();
    match spec.match_type {
        MatchType::BestFields | MatchType::MostFields => {
            for field in &fields {
                if field.terms.is_empty() {
                    continue;
                }
                let terms = field
                    .terms
                    .iter()
                    .map(|(_, term)| term_query(spec, term))
                    .collect();
                per_field.push(boosted(combine_terms(spec, terms), field.boost));
            }
        }
        MatchType::CrossFields => {
            // Each term in whichever field holds it best, the terms then combined as one
            // field's would be. Terms are matched up by their position in the query.
            let positions: std::collections::BTreeSet<usize> = fields
                .iter()
                .flat_map(|f| f.terms.iter().map(|(p, _)| *p))
                .collect();
            let mut per_term = Vec::new();
            for position in positions {
                let alternatives: Vec<Box<dyn Query>> = fields
                    .iter()
                    .flat_map(|f| {
                        f.terms
                            .iter()
                            .filter(|(p, _)| *p == position)
                            .map(|(_, term)| boosted(term_query(spec, term), f.boost))
                    })
                    .collect();
                per_term.push(Box::new(DisjunctionMaxQuery::with_tie_breaker(
                    alternatives,
                    spec.options.tie_breaker,
                )) as Box<dyn Query>);
            }
            if !per_term.is_empty() {
                per_field.push(combine_terms(spec, per_term));
            }
        }
        MatchType::Phrase | MatchType::PhrasePrefix => {
            for field in &fields {
                let query: Box<dyn Query> = match field.terms.as_slice() {
                    [] => continue,
                    [(_, term)] if spec.match_type == MatchType::Phrase => term_query(spec, term),
                    terms if spec.match_type == MatchType::Phrase => Box::new(
                        PhraseQuery::new_with_offset_and_slop(terms.to_vec(), spec.options.slop),
                    ),
                    terms => {
                        let mut query = PhrasePrefixQuery::new_with_offset(terms.to_vec());
                        query.set_max_expansions(spec.options.max_expansions);
                        Box::new(query)
                    }
                };
                per_field.push(boosted(query, field.boost));
            }
        }
    }
    Ok(combine_fields(spec, per_field))
}

/// What the shard `searcher` reads contributes to the table's term statistics for `spec`.
pub fn shard_stats(spec: &MatchSpec, searcher: &Searcher) -> tantivy::Result<MatchStats> {
    let index = searcher.index();
    // Counted as tantivy counts a searcher's documents for BM25 (deleted ones until merged
    // away included), so that the sum over shards is what one shard holding them would use.
    let mut stats = MatchStats {
        total_docs: Bm25StatisticsProvider::total_num_docs(searcher)?,
        ..MatchStats::default()
    };
    for (target, field) in spec.fields.iter().zip(field_terms(spec, index)?) {
        stats.total_tokens.insert(
            target.index.clone(),
            Bm25StatisticsProvider::total_num_tokens(searcher, field.field)?,
        );
        let doc_freq = stats.doc_freq.entry(target.index.clone()).or_default();
        for (_, term) in &field.terms {
            if let Some(text) = term.value().as_str() {
                doc_freq.insert(text.to_string(), searcher.doc_freq(term)?);
            }
        }
    }
    Ok(stats)
}

/// Scores with the whole table's statistics where `stats` has them (the searched fields and
/// query terms), with the shard's own for anything else.
pub struct TableStatistics<'a> {
    stats: &'a MatchStats,
    /// The fields of the searched indexes, with their index names.
    fields: Vec<(Field, &'a str)>,
    searcher: &'a Searcher,
}

impl<'a> TableStatistics<'a> {
    pub fn new(spec: &'a MatchSpec, stats: &'a MatchStats, searcher: &'a Searcher) -> Self {
        let schema = searcher.schema();
        let fields = spec
            .fields
            .iter()
            .filter_map(|target| {
                schema
                    .get_field(&fulltext_field_name(&target.index))
                    .ok()
                    .map(|field| (field, target.index.as_str()))
            })
            .collect();
        TableStatistics {
            stats,
            fields,
            searcher,
        }
    }

    fn index_of(&self, field: Field) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, name)| *name)
    }
}

impl Bm25StatisticsProvider for TableStatistics<'_> {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        match self
            .index_of(field)
            .and_then(|index| self.stats.total_tokens.get(index))
        {
            Some(tokens) => Ok(*tokens),
            None => Bm25StatisticsProvider::total_num_tokens(self.searcher, field),
        }
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.stats.total_docs.max(1))
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        let value = term.value();
        let global = self.index_of(term.field()).and_then(|index| {
            let text = value.as_str()?;
            self.stats.doc_freq.get(index)?.get(text).copied()
        });
        match global {
            Some(n) => Ok(n),
            None => self.searcher.doc_freq(term),
        }
    }
}

/// Checks that every index `spec` names is a FULLTEXT index of the table.
pub fn check_fields(
    spec: &MatchSpec,
    table: &creek_common::schema::TableSchema,
) -> tantivy::Result<()> {
    for field in &spec.fields {
        if table.fulltext_index(&field.index).is_none() {
            return Err(tantivy_err(format!(
                "table {} has no FULLTEXT index {}",
                table.name, field.index
            )));
        }
    }
    Ok(())
}
