//! Filters on one text column, evaluated once per distinct term of a segment's dictionary
//! instead of once per row.
//!
//! A shard keeps a text column as per-document ordinals into a sorted per-segment dictionary.
//! A predicate that reads that column alone (`URL LIKE '%google%'`, `SearchPhrase <> ''`) has
//! one answer per term, so the scan evaluates it over the dictionary, keeps the candidate
//! documents whose ordinal passed, and reads its output columns for those documents only.
//!
//! Like every pushed-down filter this narrows a scan and never decides it: DataFusion applies
//! the filter again above the scan. So whatever this module cannot do well (an expression that
//! does not build, an evaluation that fails on some term — the dictionary also holds the terms
//! of deleted documents and of rows other filters exclude —, a dictionary larger than the
//! candidate set) leaves the candidates as they are; it must never drop a row the filter keeps.

use std::io;
use std::sync::Arc;

use creek_common::schema::TableSchema;
use creek_common::types::ColumnType;
use datafusion::arrow::array::{Array, AsArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::execution_props::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{create_physical_expr, PhysicalExpr};
use tantivy::{DocId, SegmentReader};

use super::columns::{open_segment_column, ColumnSpec, SegmentColumn, Terms};

/// Terms per evaluation of the predicate.
const TERMS_PER_BATCH: usize = 8192;

/// The dictionaries of one segment's text columns that term filters decoded whole, by column
/// name: read again by the scan rather than decoded twice.
#[derive(Default)]
pub struct Decoded(Vec<(String, Vec<Terms>)>);

impl Decoded {
    /// One decoded dictionary per segment column of `name`, in the order the scan reads them.
    pub fn get(&self, name: &str) -> Option<&[Terms]> {
        self.0
            .iter()
            .find(|(column, _)| column == name)
            .map(|(_, terms)| terms.as_slice())
    }
}

/// One conjunct of a scan's filters that reads a single text column.
pub struct TermFilter {
    column: ColumnSpec,
    predicate: Arc<dyn PhysicalExpr>,
    schema: SchemaRef,
}

/// The conjuncts of `filters` that can be evaluated per dictionary term.
pub fn term_filters(table: &TableSchema, filters: &[Expr]) -> Vec<TermFilter> {
    filters
        .iter()
        .flat_map(split_conjunction)
        .filter_map(|conjunct| TermFilter::new(table, conjunct))
        .collect()
}

impl TermFilter {
    fn new(table: &TableSchema, expr: &Expr) -> Option<TermFilter> {
        if expr.is_volatile() {
            return None;
        }
        let refs = expr.column_refs();
        if refs.len() != 1 {
            return None;
        }
        let name = refs.into_iter().next()?.name.clone();
        let column = table.column(&name)?;
        if !matches!(column.column_type, ColumnType::Text { .. }) {
            return None;
        }
        // The one-column batch the predicate runs on has no table qualifier.
        let expr = expr
            .clone()
            .transform(|e| {
                Ok(match e {
                    Expr::Column(c) => {
                        Transformed::yes(Expr::Column(Column::new_unqualified(c.name)))
                    }
                    other => Transformed::no(other),
                })
            })
            .ok()?
            .data;
        let schema = Arc::new(Schema::new(vec![Field::new(&name, DataType::Utf8, true)]));
        let df_schema = DFSchema::try_from(schema.as_ref().clone()).ok()?;
        let predicate = create_physical_expr(
            &expr,
            &df_schema,
            &ExecutionProps::new(),
            &PhysicalPlanningContext::default(),
        )
        .ok()?;
        Some(TermFilter {
            column: ColumnSpec::Table {
                name,
                column_type: column.column_type.clone(),
                index: column.index,
            },
            predicate,
            schema,
        })
    }

    /// Keeps those of `docs` (ascending ids of `segment`) whose value passes the predicate; a
    /// document without a value passes if NULL does. The column's dictionaries, decoded whole
    /// to decide their terms, are left in `decoded` for the scan to read the column's values
    /// from (and for another filter on the same column).
    pub fn retain(
        &self,
        segment: &SegmentReader,
        docs: &mut Vec<DocId>,
        decoded: &mut Decoded,
    ) -> tantivy::Result<()> {
        let SegmentColumn::Str(columns) = open_segment_column(segment, &self.column, 0)? else {
            return Ok(());
        };
        let columns = columns.columns();
        let terms: usize = columns.iter().map(|column| column.num_terms()).sum();
        // Evaluating more terms than there are rows to decide costs more than it saves, also
        // when another filter on the column already decoded them.
        if terms > docs.len() {
            return Ok(());
        }
        let name = self.column.name();
        if decoded.get(name).is_none() {
            let mut all = Vec::with_capacity(columns.len());
            for column in columns {
                match Terms::all(column) {
                    Ok(terms) => all.push(terms),
                    // Larger than one Arrow array: not decided per term.
                    Err(e) if e.kind() == io::ErrorKind::InvalidInput => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
            decoded.0.push((name.to_string(), all));
        }
        let Some(dictionaries) = decoded.get(name) else {
            return Ok(());
        };
        let mut passing = Vec::with_capacity(columns.len());
        for terms in dictionaries {
            match self.passing_ords(terms) {
                Some(ords) => passing.push(ords),
                None => return Ok(()),
            }
        }
        let Some(&[null_passes]) = self.passes(StringArray::new_null(1)).as_deref() else {
            return Ok(());
        };
        // As the scan reads a value: from the first column that has one for the document.
        let mut decided: Vec<Option<bool>> = vec![None; docs.len()];
        let mut ords = vec![None; docs.len()];
        for (column, passing) in columns.iter().zip(&passing) {
            column.ords().first_vals(docs, &mut ords);
            for (decision, ord) in decided.iter_mut().zip(ords.iter_mut()) {
                if let (None, Some(ord)) = (&decision, ord.take()) {
                    *decision = Some(passing.get(ord as usize).copied().unwrap_or(true));
                }
            }
        }
        let mut decisions = decided.into_iter();
        docs.retain(|_| decisions.next().flatten().unwrap_or(null_passes));
        Ok(())
    }

    /// Whether each term of a dictionary, by ordinal, passes; `None` if the predicate cannot
    /// be evaluated on them.
    fn passing_ords(&self, terms: &Terms) -> Option<Vec<bool>> {
        let values = terms.values();
        let mut passing = Vec::with_capacity(values.len());
        for start in (0..values.len()).step_by(TERMS_PER_BATCH) {
            let len = TERMS_PER_BATCH.min(values.len() - start);
            passing.extend(self.passes(values.slice(start, len))?);
        }
        Some(passing)
    }

    /// The predicate on `values`: true where it holds (not false, not NULL).
    fn passes(&self, values: StringArray) -> Option<Vec<bool>> {
        let rows = values.len();
        let batch = RecordBatch::try_new(self.schema.clone(), vec![Arc::new(values)]).ok()?;
        let result = self
            .predicate
            .evaluate(&batch)
            .ok()?
            .into_array(rows)
            .ok()?;
        let result = result.as_boolean_opt()?;
        Some(
            (0..rows)
                .map(|i| result.is_valid(i) && result.value(i))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use creek_common::schema::ID_COLUMN;
    use creek_common::schema::{ColumnDef, ColumnIndex};
    use creek_common::{ShardId, TableId};
    use creek_proto::v1::WriteMode;
    use datafusion::arrow::array::Int32Array;
    use datafusion::logical_expr::{col, lit};

    use crate::shard::copy::CopyRole;
    use crate::shard::Shard;

    fn table() -> TableSchema {
        let column = |name: &str, column_type: ColumnType| ColumnDef {
            name: name.into(),
            column_type,
            not_null: false,
            default_expr: None,
            generated: None,
            index: ColumnIndex::Plain,
        };
        TableSchema {
            id: TableId(1),
            schema_name: "doc".into(),
            name: "t".into(),
            columns: vec![
                column("url", ColumnType::Text { max_len: None }),
                column("n", ColumnType::Integer),
            ],
            primary_key: vec!["n".into()],
            clustered_by: None,
            num_shards: 1,
            settings: Default::default(),
            indexes: Vec::new(),
            fulltext: Vec::new(),
            partitioned_by: Vec::new(),
            partitions: Vec::new(),
            version: 1,
        }
    }

    #[test]
    fn only_predicates_of_one_text_column_are_taken() {
        let table = table();
        let like = col("url").like(lit("%google%"));
        let both = col("url").eq(col("url2"));
        let number = col("n").gt(lit(3));
        let filters = vec![like.and(number.clone()), both, number];
        let taken = term_filters(&table, &filters);
        assert_eq!(taken.len(), 1);
        let passes = taken[0]
            .passes(StringArray::from(vec![
                Some("http://google.com/"),
                Some("http://vk.com/"),
                None,
            ]))
            .unwrap();
        assert_eq!(passes, vec![true, false, false]);
    }

    #[test]
    fn a_predicate_null_satisfies_keeps_documents_without_a_value() {
        let table = table();
        let filter = col("url").is_null().or(col("url").eq(lit("a")));
        let taken = term_filters(&table, &[filter]);
        assert_eq!(taken.len(), 1);
        let passes = taken[0]
            .passes(StringArray::from(vec![Some("a"), Some("b"), None]))
            .unwrap();
        assert_eq!(passes, vec![true, false, true]);
    }

    #[test]
    fn an_evaluation_error_gives_no_answer() {
        let table = table();
        let filter = Expr::Cast(datafusion::logical_expr::Cast::new(
            Box::new(col("url")),
            DataType::Int64,
        ))
        .gt(lit(1i64));
        let taken = term_filters(&table, &[filter]);
        assert_eq!(taken.len(), 1);
        assert!(taken[0]
            .passes(StringArray::from(vec!["12", "x"]))
            .is_none());
    }

    /// One segment of a real shard: url values (NULL for `None`) for n = 1, 2, ...
    fn shard_with(urls: &[Option<&str>]) -> (tempfile::TempDir, Arc<Shard>) {
        let dir = tempfile::tempdir().unwrap();
        let id = ShardId {
            table: TableId(1),
            shard: 0,
        };
        let shard = Shard::open(id, dir.path(), Arc::new(table())).unwrap();
        shard.set_role(CopyRole {
            allocation_id: "p".into(),
            primary: true,
            primary_term: 1,
            peers: Vec::new(),
        });
        let n: Vec<i32> = (1..=urls.len() as i32).collect();
        let ids: Vec<String> = n.iter().map(|n| n.to_string()).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new(ID_COLUMN, DataType::Utf8, false),
            Field::new("url", DataType::Utf8, true),
            Field::new("n", DataType::Int32, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(ids)),
                Arc::new(StringArray::from(urls.to_vec())),
                Arc::new(Int32Array::from(n)),
            ],
        )
        .unwrap();
        let rows = creek_proto::ipc::batch_to_ipc(&batch).unwrap();
        shard
            .write(WriteMode::Insert, &rows, &[], &[], "op-1")
            .unwrap();
        shard.refresh().unwrap();
        (dir, Arc::new(shard))
    }

    fn retained(shard: &Shard, filter: Expr, docs: Vec<DocId>) -> Vec<DocId> {
        let filters = term_filters(&table(), &[filter]);
        assert_eq!(filters.len(), 1);
        let searcher = shard.searcher();
        let segment = &searcher.segment_readers()[0];
        let mut docs = docs;
        filters[0]
            .retain(segment, &mut docs, &mut Decoded::default())
            .unwrap();
        docs
    }

    #[test]
    fn a_segment_keeps_the_documents_whose_term_passes() {
        let urls = [
            Some("http://google.com/a"),
            Some(""),
            None,
            Some("http://vk.com/"),
            Some("http://maps.google.com/"),
            Some(""),
        ];
        let (_dir, shard) = shard_with(&urls);
        let all: Vec<DocId> = (0..urls.len() as DocId).collect();
        let like = retained(&shard, col("url").like(lit("%google%")), all.clone());
        assert_eq!(like, vec![0, 4]);
        let not_empty = retained(&shard, col("url").not_eq(lit("")), all.clone());
        assert_eq!(not_empty, vec![0, 3, 4]);
        let null_or_vk = col("url").is_null().or(col("url").like(lit("%vk%")));
        assert_eq!(retained(&shard, null_or_vk, all.clone()), vec![2, 3]);
        // Fewer candidates than dictionary terms: left to the filter above the scan.
        assert_eq!(
            retained(&shard, col("url").like(lit("%google%")), vec![1, 3]),
            vec![1, 3]
        );
    }
}
