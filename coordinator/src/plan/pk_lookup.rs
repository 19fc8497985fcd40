//! Primary-key lookups without DataFusion: `SELECT <columns | *> FROM t WHERE <every key
//! column> = <constant or $n>` is answered by one real-time Get to the shard that holds the
//! row, as CrateDB does. Planning and optimising such a query through DataFusion costs several
//! times more than the lookup itself.
//!
//! This module only recognises the statement shape and runs the Get; anything else (other
//! predicates, expressions, joins, ORDER BY, views, system tables) returns `None` and takes
//! the ordinary planned path, which gives the same answer.

use std::sync::Arc;

use creek_common::schema::TableSchema;
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::ScalarValue;
use sqlparser::ast;

use crate::cluster::Cluster;
use crate::error::Result;
use crate::plan::routing::ids_and_shards;
use crate::sql::ddl::split_name;
use crate::sql::dml::conform_batch;

/// A recognised lookup: the table, the output columns and the key values' expressions.
pub struct PkLookup {
    table: TableSchema,
    /// The table restricted to its key (and routing) columns: what the key values are
    /// conformed to (the other columns' NOT NULL and DEFAULT rules do not apply to a key).
    key_table: TableSchema,
    columns: Vec<String>,
    keys: Vec<(String, ast::Expr)>,
}

impl PkLookup {
    /// Recognises `statement`, or returns `None` for anything but a plain key lookup.
    pub fn recognise(
        cluster: &Cluster,
        statement: &ast::Statement,
        default_schema: &str,
    ) -> Option<PkLookup> {
        let ast::Statement::Query(query) = statement else {
            return None;
        };
        if query.with.is_some()
            || query.order_by.is_some()
            || query.limit_clause.is_some()
            || query.fetch.is_some()
            || !query.locks.is_empty()
        {
            return None;
        }
        let ast::SetExpr::Select(select) = query.body.as_ref() else {
            return None;
        };
        if select.distinct.is_some()
            || select.top.is_some()
            || select.into.is_some()
            || !select.lateral_views.is_empty()
            || select.prewhere.is_some()
            || select.having.is_some()
            || !select.named_window.is_empty()
            || select.qualify.is_some()
            || !matches!(&select.group_by, ast::GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty())
            || select.from.len() != 1
            || !select.from[0].joins.is_empty()
        {
            return None;
        }
        let ast::TableFactor::Table {
            name, alias, args, ..
        } = &select.from[0].relation
        else {
            return None;
        };
        if args.is_some() {
            return None;
        }
        let (schema, table_name) = split_name(name, default_schema).ok()?;
        let qualifier = alias
            .as_ref()
            .map(|a| normalise(&a.name))
            .unwrap_or_else(|| table_name.clone());
        // The WHERE shape first: most queries fail here, before any catalog lookup.
        let mut keys = Vec::new();
        collect_equalities(select.selection.as_ref()?, &qualifier, &mut keys)?;
        let table = cluster
            .catalog()
            .existing_table(&schema, &table_name)
            .ok()?;
        if table.primary_key.is_empty() {
            return None;
        }
        let mut columns = Vec::new();
        for item in &select.projection {
            match item {
                ast::SelectItem::Wildcard(options) if is_plain_wildcard(options) => {
                    columns.extend(table.columns.iter().map(|c| c.name.clone()))
                }
                ast::SelectItem::UnnamedExpr(expr) => columns.push(column_of(expr, &qualifier)?),
                _ => return None,
            }
        }
        if columns.iter().any(|c| table.column(c).is_none()) {
            return None;
        }
        let mut names: Vec<&String> = keys.iter().map(|(name, _)| name).collect();
        names.sort();
        names.dedup();
        let mut needed: Vec<&String> = table.primary_key.iter().collect();
        if let Some(routing) = &table.clustered_by {
            needed.push(routing);
        }
        needed.sort();
        needed.dedup();
        // Exactly the key (and routing) columns, each once: anything else is a real filter.
        if names.len() != keys.len() || names != needed {
            return None;
        }
        let mut key_table = table.clone();
        key_table.columns.retain(|c| needed.contains(&&c.name));
        // Key values are looked up as given, never computed.
        for column in &mut key_table.columns {
            column.generated = None;
        }
        Some(PkLookup {
            table,
            key_table,
            columns,
            keys,
        })
    }

    /// What `EXPLAIN` shows for the lookup (CrateDB shows its `Get` the same way).
    pub fn describe(&self) -> String {
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|(name, value)| format!("{name} = {value}"))
            .collect();
        format!(
            "PrimaryKeyGet: table={}.{}, columns=[{}], keys=[{}]",
            self.table.schema_name,
            self.table.name,
            self.columns.join(", "),
            keys.join(", ")
        )
    }

    /// The result schema, as the planned path would report it.
    pub fn schema(&self) -> SchemaRef {
        // The table's own fields, metadata included (a geo_shape column is marked so).
        let table = self.table.arrow_schema();
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|name| {
                    table
                        .field_with_name(name)
                        .expect("checked in recognise")
                        .clone()
                })
                .collect::<Vec<_>>(),
        ))
    }

    /// Parameter types by position: each `$n` compared with a key column takes its type.
    pub fn param_types(&self) -> Vec<Option<DataType>> {
        let mut types = Vec::new();
        for (name, expr) in &self.keys {
            if let Some(index) = crate::plan::params::placeholder_index(expr) {
                let column_type = self.table.column(name).map(|c| c.column_type.arrow_type());
                crate::plan::params::set_parameter_type(&mut types, index, column_type);
            }
        }
        types
    }

    /// Runs the lookup; `None` if a key value is not a usable constant of its column's type
    /// (NULL, out of range, unparsable), which the planned path answers with its own rules.
    pub async fn run(
        &self,
        cluster: &Cluster,
        params: &[ScalarValue],
    ) -> Result<Option<RecordBatch>> {
        let mut fields = Vec::with_capacity(self.keys.len());
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.keys.len());
        for (name, expr) in &self.keys {
            let Some(value) = crate::sql::dml::constant_value(expr, params) else {
                return Ok(None);
            };
            if value.is_null() {
                return Ok(None);
            }
            // `int_pk = 1.5` matches nothing; converting the key would round it to 2.
            let integer_key = self
                .key_table
                .column(name)
                .is_some_and(|c| c.column_type.arrow_type().is_integer());
            if integer_key && crate::sql::dml::is_fractional(&value) {
                return Ok(None);
            }
            let array = value.to_array()?;
            fields.push(Field::new(name, array.data_type().clone(), true));
            arrays.push(array);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(1));
        let keys =
            RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)?;
        let Ok(keys) = conform_batch(&self.key_table, &keys) else {
            return Ok(None);
        };
        let Ok((ids, shards)) = ids_and_shards(&self.key_table, &keys) else {
            return Ok(None);
        };
        let found = cluster
            .get_rows(&self.table, shards[0], ids, self.columns.clone())
            .await?;
        // The Get answers `_id` first, then the columns by name; the output keeps the
        // statement's order, repeats included.
        let arrays = self
            .columns
            .iter()
            .map(|name| {
                found.column_by_name(name).cloned().ok_or_else(|| {
                    crate::error::Error::new(
                        creek_common::ErrorCode::Internal,
                        format!("lookup answer lacks column {name}"),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(found.num_rows()));
        Ok(Some(RecordBatch::try_new_with_options(
            self.schema(),
            arrays,
            &options,
        )?))
    }
}

fn normalise(ident: &ast::Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

fn is_plain_wildcard(options: &ast::WildcardAdditionalOptions) -> bool {
    options.opt_ilike.is_none()
        && options.opt_exclude.is_none()
        && options.opt_except.is_none()
        && options.opt_replace.is_none()
        && options.opt_rename.is_none()
}

/// The column a bare (or table-qualified) identifier names.
fn column_of(expr: &ast::Expr, qualifier: &str) -> Option<String> {
    match expr {
        ast::Expr::Identifier(ident) => Some(normalise(ident)),
        ast::Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [table, column] if normalise(table) == qualifier => Some(normalise(column)),
            _ => None,
        },
        _ => None,
    }
}

/// `a = 1 AND b = $2 AND ...` as (column, value) pairs; `None` for any other predicate.
fn collect_equalities(
    expr: &ast::Expr,
    qualifier: &str,
    out: &mut Vec<(String, ast::Expr)>,
) -> Option<()> {
    match expr {
        ast::Expr::Nested(inner) => collect_equalities(inner, qualifier, out),
        ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::And,
            right,
        } => {
            collect_equalities(left, qualifier, out)?;
            collect_equalities(right, qualifier, out)
        }
        ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::Eq,
            right,
        } => {
            let (column, value) = match column_of(left, qualifier) {
                Some(column) => (column, right),
                None => (column_of(right, qualifier)?, left),
            };
            if crate::plan::params::placeholder_index(value).is_none() {
                crate::sql::dml::constant_value(value, &[])?;
            }
            out.push((column, value.as_ref().clone()));
            Some(())
        }
        _ => None,
    }
}
