//! Dynamic object keys: a write that brings keys a DYNAMIC object lacks proposes the column's
//! widened type, and applying it merges that into the current definition. Applying in log
//! order decides races: of two writers adding one key with different types, the second gets
//! an error, and neither's value is dropped. Pure state changes.

use creek_common::error::{CodedError, ErrorCode};
use creek_common::object::{merge_types, sub_column_count, MAX_OBJECT_COLUMNS};
use creek_common::state::{qualified, ClusterState};
use creek_common::types::ColumnType;

use super::refused;

/// Merges the proposed types of object columns into table `schema.name`.
pub(super) fn extend_objects(
    state: &mut ClusterState,
    schema: &str,
    name: &str,
    columns: &[(String, ColumnType)],
) -> Result<bool, CodedError> {
    let key = qualified(schema, name);
    let table = state.tables.get(&key).ok_or_else(|| {
        refused(
            ErrorCode::UndefinedTable,
            format!("relation \"{key}\" does not exist"),
        )
    })?;
    let mut updated = table.clone();
    for (column_name, proposed) in columns {
        let Some(column) = updated.columns.iter_mut().find(|c| &c.name == column_name) else {
            return Err(refused(
                ErrorCode::UndefinedColumn,
                format!("column \"{column_name}\" of relation \"{key}\" does not exist"),
            ));
        };
        column.column_type = merge_types(&column.column_type, proposed, column_name)?;
    }
    if updated.columns == table.columns {
        // Another writer added the same keys first.
        return Ok(false);
    }
    let total: usize = updated
        .columns
        .iter()
        .map(|c| sub_column_count(&c.column_type))
        .sum();
    if total > MAX_OBJECT_COLUMNS {
        return Err(refused(
            ErrorCode::ProgramLimitExceeded,
            format!(
                "table {key} would have {total} object sub-columns, more than the \
                 {MAX_OBJECT_COLUMNS} allowed: use an IGNORED object for keys that come and go"
            ),
        ));
    }
    updated.version += 1;
    updated.validate()?;
    state.tables.insert(key, updated);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use creek_common::object::{ObjectField, ObjectPolicy};
    use creek_common::schema::{ColumnDef, TableSchema};
    use creek_common::TableId;

    use super::*;

    fn object(fields: &[(&str, ColumnType)]) -> ColumnType {
        ColumnType::Object {
            policy: ObjectPolicy::Dynamic,
            fields: fields
                .iter()
                .map(|(n, t)| ObjectField {
                    name: n.to_string(),
                    column_type: t.clone(),
                })
                .collect(),
        }
    }

    #[test]
    fn racing_keys_merge_or_conflict() {
        let mut state = ClusterState::default();
        let table = TableSchema {
            id: TableId(1),
            schema_name: "doc".into(),
            name: "t".into(),
            columns: vec![ColumnDef {
                name: "o".into(),
                column_type: object(&[]),
                not_null: false,
                default_expr: None,
                index: Default::default(),
                generated: None,
            }],
            primary_key: Vec::new(),
            clustered_by: None,
            num_shards: 1,
            settings: BTreeMap::new(),
            indexes: Vec::new(),
            fulltext: Vec::new(),
            version: 1,
            partitioned_by: Vec::new(),
            partitions: Vec::new(),
        };
        state.tables.insert(qualified("doc", "t"), table);
        let first = vec![("o".to_string(), object(&[("a", ColumnType::BigInt)]))];
        assert!(extend_objects(&mut state, "doc", "t", &first).unwrap());
        // The same key and type again changes nothing.
        assert!(!extend_objects(&mut state, "doc", "t", &first).unwrap());
        let conflicting = vec![(
            "o".to_string(),
            object(&[("a", ColumnType::Text { max_len: None })]),
        )];
        assert_eq!(
            extend_objects(&mut state, "doc", "t", &conflicting)
                .unwrap_err()
                .code,
            ErrorCode::DatatypeMismatch
        );
        let table = &state.tables[&qualified("doc", "t")];
        assert_eq!(table.version, 2);
        assert_eq!(
            table.columns[0].column_type,
            object(&[("a", ColumnType::BigInt)])
        );
    }
}
