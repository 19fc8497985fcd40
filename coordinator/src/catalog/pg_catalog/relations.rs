//! The relations `pg_class` and its neighbours list: tables, their primary-key indexes,
//! declared indexes and views, computed from cluster state.

use std::collections::BTreeSet;

use creek_common::schema::TableSchema;

use super::oids::*;
use super::ACCESS_METHOD;
use crate::catalog::ClusterState;

/// What kind of relation a `pg_class` row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    /// A table (`r`).
    Table,
    /// A view (`v`).
    View,
    /// A table's primary-key index (`i`).
    PrimaryKey,
    /// An index declared with `CREATE INDEX` (`i`).
    Index,
}

impl RelationKind {
    pub(super) fn relkind(self) -> &'static str {
        match self {
            RelationKind::Table => "r",
            RelationKind::View => "v",
            RelationKind::PrimaryKey | RelationKind::Index => "i",
        }
    }

    /// Whether the relation is an index.
    pub fn is_index(self) -> bool {
        matches!(self, RelationKind::PrimaryKey | RelationKind::Index)
    }
}

/// A relation as the catalogs list it.
#[derive(Debug, Clone)]
pub struct Relation {
    /// `pg_class.oid`.
    pub oid: i64,
    /// The relation's name.
    pub name: String,
    /// The schema it lives in.
    pub schema: String,
    /// Table, view or primary-key index.
    pub kind: RelationKind,
    /// The table it belongs to (itself for a table, the indexed table for an index).
    pub table: Option<TableSchema>,
    /// A view's defining query.
    pub view_query: Option<String>,
    /// An index's columns, in order.
    pub index_columns: Vec<String>,
}

impl Relation {
    /// The relation's name qualified by its schema, as `::regclass` prints it when the schema
    /// is not searched.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// `pg_get_indexdef` of an index.
    pub fn index_definition(&self) -> Option<String> {
        let table = self.table.as_ref()?;
        let unique = match self.kind {
            RelationKind::PrimaryKey => "UNIQUE ",
            RelationKind::Index => "",
            _ => return None,
        };
        Some(format!(
            "CREATE {unique}INDEX {} ON {}.{} USING {ACCESS_METHOD} ({})",
            self.name,
            table.schema_name,
            table.name,
            self.index_columns.join(", ")
        ))
    }

    /// `pg_get_constraintdef` of a primary-key constraint.
    pub fn constraint_definition(&self) -> Option<String> {
        let table = self.table.as_ref()?;
        (self.kind == RelationKind::PrimaryKey)
            .then(|| format!("PRIMARY KEY ({})", table.primary_key.join(", ")))
    }
}

/// The attribute numbers (1-based column positions) of `columns` of a table, in order.
pub(super) fn attnums(table: &TableSchema, columns: &[String]) -> Vec<i64> {
    columns
        .iter()
        .filter_map(|key| table.columns.iter().position(|c| &c.name == key))
        .map(|position| position as i64 + 1)
        .collect()
}

pub(super) fn primary_key_name(table: &TableSchema) -> String {
    format!("{}_pkey", table.name)
}

/// Every relation in cluster state: tables, their primary-key indexes and views.
pub fn relations(state: &ClusterState) -> Vec<Relation> {
    let mut relations = Vec::new();
    for table in state.tables.values() {
        relations.push(Relation {
            oid: table_oid(table.id.0),
            name: table.name.clone(),
            schema: table.schema_name.clone(),
            kind: RelationKind::Table,
            table: Some(table.clone()),
            view_query: None,
            index_columns: Vec::new(),
        });
        if !table.primary_key.is_empty() {
            relations.push(Relation {
                oid: primary_key_oid(table.id.0),
                name: primary_key_name(table),
                schema: table.schema_name.clone(),
                kind: RelationKind::PrimaryKey,
                table: Some(table.clone()),
                view_query: None,
                index_columns: table.primary_key.clone(),
            });
        }
        for index in &table.indexes {
            relations.push(Relation {
                oid: index_oid(&table.schema_name, &index.name),
                name: index.name.clone(),
                schema: table.schema_name.clone(),
                kind: RelationKind::Index,
                table: Some(table.clone()),
                view_query: None,
                index_columns: index.columns.clone(),
            });
        }
    }
    for view in state.views.values() {
        relations.push(Relation {
            oid: view_oid(&view.schema_name, &view.name),
            name: view.name.clone(),
            schema: view.schema_name.clone(),
            kind: RelationKind::View,
            table: None,
            view_query: Some(view.query.clone()),
            index_columns: Vec::new(),
        });
    }
    relations
}

/// Schemas that exist: implicit ones plus every schema holding a table or view.
pub fn schema_names(state: &ClusterState) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = state
        .tables
        .values()
        .map(|t| t.schema_name.clone())
        .chain(state.views.values().map(|v| v.schema_name.clone()))
        .collect();
    for builtin in ["doc", "sys", "pg_catalog", "information_schema"] {
        names.insert(builtin.to_string());
    }
    names
}
