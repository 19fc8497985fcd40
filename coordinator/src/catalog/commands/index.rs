//! `CREATE INDEX` and `DROP INDEX` applied to cluster state. Every column of a Creek table is
//! already indexed, so a declared index changes no data; it is recorded so it is listed (psql
//! `\di`, `pg_indexes`) and can be dropped, and so names clash as PostgreSQL's relation names
//! do: tables, views and indexes of one schema share one namespace.

use creek_common::error::{CodedError, ErrorCode};
use creek_common::schema::IndexDef;
use creek_common::state::{qualified, ClusterState};

use super::refused;

/// Whether a table, view, declared index or primary-key index named `name` exists in `schema`.
pub fn relation_exists(state: &ClusterState, schema: &str, name: &str) -> bool {
    let key = qualified(schema, name);
    state.tables.contains_key(&key)
        || state.views.contains_key(&key)
        || index_exists(state, schema, name)
}

/// Whether a declared or primary-key index named `name` exists in `schema`.
pub fn index_exists(state: &ClusterState, schema: &str, name: &str) -> bool {
    state
        .tables
        .values()
        .filter(|table| table.schema_name == schema)
        .any(|table| {
            table.primary_key_index_name().as_deref() == Some(name)
                || table.indexes.iter().any(|index| index.name == name)
        })
}

pub(super) fn create_index(
    state: &mut ClusterState,
    schema: &str,
    table_name: &str,
    index: &IndexDef,
    if_not_exists: bool,
) -> Result<bool, CodedError> {
    let key = qualified(schema, table_name);
    if !state.tables.contains_key(&key) {
        return Err(refused(
            ErrorCode::UndefinedTable,
            format!("relation \"{key}\" does not exist"),
        ));
    }
    if relation_exists(state, schema, &index.name) {
        if if_not_exists {
            return Ok(false);
        }
        return Err(refused(
            ErrorCode::DuplicateObject,
            format!("relation \"{}\" already exists", index.name),
        ));
    }
    let table = state.tables.get_mut(&key).expect("checked above");
    if let Some(missing) = index
        .columns
        .iter()
        .find(|column| table.column(column).is_none())
    {
        return Err(refused(
            ErrorCode::UndefinedColumn,
            format!("column \"{missing}\" does not exist"),
        ));
    }
    table.indexes.push(index.clone());
    table.version += 1;
    Ok(true)
}

pub(super) fn drop_index(
    state: &mut ClusterState,
    schema: &str,
    name: &str,
    if_exists: bool,
) -> Result<bool, CodedError> {
    for table in state
        .tables
        .values_mut()
        .filter(|table| table.schema_name == schema)
    {
        if let Some(position) = table.indexes.iter().position(|index| index.name == name) {
            table.indexes.remove(position);
            table.version += 1;
            return Ok(true);
        }
        if table.primary_key_index_name().as_deref() == Some(name) {
            return Err(refused(
                ErrorCode::DependentObjectsStillExist,
                format!(
                    "cannot drop index {name} because constraint {name} on table {} requires it",
                    table.name
                ),
            ));
        }
    }
    if state.tables.contains_key(&qualified(schema, name))
        || state.views.contains_key(&qualified(schema, name))
    {
        return Err(refused(
            ErrorCode::UndefinedObject,
            format!("\"{name}\" is not an index"),
        ));
    }
    if if_exists {
        return Ok(false);
    }
    Err(refused(
        ErrorCode::UndefinedObject,
        format!("index \"{name}\" does not exist"),
    ))
}

#[cfg(test)]
mod tests {
    use creek_common::schema::{ColumnDef, TableSchema};
    use creek_common::types::ColumnType;
    use creek_common::TableId;

    use super::*;

    const TABLE: &str = "t";

    fn one_table_state() -> ClusterState {
        let column = |name: &str| ColumnDef {
            name: name.into(),
            column_type: ColumnType::BigInt,
            not_null: false,
            default_expr: None,
            generated: None,
            index: Default::default(),
        };
        let table = TableSchema {
            id: TableId(1),
            schema_name: "doc".into(),
            name: TABLE.into(),
            columns: vec![column("id"), column("v")],
            primary_key: vec!["id".into()],
            clustered_by: None,
            num_shards: 1,
            settings: Default::default(),
            indexes: Vec::new(),
            fulltext: Vec::new(),
            partitioned_by: Vec::new(),
            partitions: Vec::new(),
            version: 0,
        };
        let mut state = ClusterState::default();
        state.tables.insert(qualified("doc", TABLE), table);
        state
    }

    #[test]
    fn indexes_are_created_listed_and_dropped() {
        let mut state = one_table_state();
        let index = IndexDef {
            name: "t_v_idx".into(),
            columns: vec!["v".into()],
        };
        assert!(create_index(&mut state, "doc", TABLE, &index, false).unwrap());
        assert!(relation_exists(&state, "doc", "t_v_idx"));
        let again = create_index(&mut state, "doc", TABLE, &index, false).unwrap_err();
        assert_eq!(again.code, ErrorCode::DuplicateObject);
        assert!(!create_index(&mut state, "doc", TABLE, &index, true).unwrap());
        assert!(drop_index(&mut state, "doc", "t_v_idx", false).unwrap());
        let missing = drop_index(&mut state, "doc", "t_v_idx", false).unwrap_err();
        assert_eq!(missing.code, ErrorCode::UndefinedObject);
        assert!(!drop_index(&mut state, "doc", "t_v_idx", true).unwrap());
        let pkey = drop_index(&mut state, "doc", "t_pkey", true).unwrap_err();
        assert_eq!(pkey.code, ErrorCode::DependentObjectsStillExist);
        let bad_column = IndexDef {
            name: "i".into(),
            columns: vec!["nope".into()],
        };
        let error = create_index(&mut state, "doc", TABLE, &bad_column, false).unwrap_err();
        assert_eq!(error.code, ErrorCode::UndefinedColumn);
    }
}
