//! `CommandStatementIngest`: ADBC's bulk ingest of Arrow batches into a table, created from
//! the batches' schema when asked, appended to or replaced. The rows go through the same bulk
//! loader as COPY FROM STDIN (`sql::load`): table types, NOT NULL and duplicate keys are
//! checked as for an INSERT.

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{CommandStatementIngest, TableExistsOption, TableNotExistOption};
use creek_common::types::ColumnType;
use creek_common::ErrorCode;
use datafusion::arrow::datatypes::{DataType, Schema};
use futures::StreamExt;
use tonic::Status;

use super::metadata::{quoted, unknown_catalog};
use super::params::{flight_status, uncompressed};
use super::results::{status, status_of};
use crate::catalog::commands::{apply, Command};
use crate::catalog::pg_catalog::DATABASE_NAME;
use crate::cluster::Cluster;
use crate::session::Session;
use crate::sql::load::BatchLoader;
use crate::sql::parse::{parse_sql, ParsedStatement};
use sqlparser::ast::Statement;
use std::sync::Arc;

fn unsupported(message: String) -> Status {
    status_of(ErrorCode::FeatureNotSupported, message)
}

/// The names of the struct fields nested anywhere in `data_type`.
fn nested_names(data_type: &DataType) -> Box<dyn Iterator<Item = &String> + '_> {
    match data_type {
        DataType::Struct(fields) => Box::new(fields.iter().flat_map(|field| {
            std::iter::once(field.name()).chain(nested_names(field.data_type()))
        })),
        DataType::List(field) | DataType::LargeList(field) | DataType::FixedSizeList(field, _) => {
            nested_names(field.data_type())
        }
        _ => Box::new(std::iter::empty()),
    }
}

/// The `CREATE TABLE` for a table of `schema`'s columns.
fn create_table_sql(schema_name: &str, table: &str, schema: &Schema) -> Result<String, Status> {
    if schema.fields().is_empty() {
        return Err(status_of(
            ErrorCode::InvalidParameterValue,
            "cannot create a table of no columns".to_string(),
        ));
    }
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let column_type = ColumnType::from_arrow(field.data_type()).ok_or_else(|| {
                unsupported(format!(
                    "column \"{}\" has Arrow type {}, which no Creek column type holds",
                    field.name(),
                    field.data_type()
                ))
            })?;
            // Sub-column names are written unquoted-aware by the type's DDL text; a double
            // quote in one would end it early.
            if let Some(name) = nested_names(field.data_type()).find(|name| name.contains('"')) {
                return Err(status_of(
                    ErrorCode::InvalidParameterValue,
                    format!(
                        "sub-column name {name:?} of \"{}\" contains a double quote",
                        field.name()
                    ),
                ));
            }
            Ok(format!("{} {column_type}", quoted(field.name())))
        })
        .collect::<Result<Vec<String>, Status>>()?;
    Ok(format!(
        "CREATE TABLE {}.{} ({})",
        quoted(schema_name),
        quoted(table),
        columns.join(", ")
    ))
}

/// Checks that `sql`, a `CREATE TABLE`, would create a valid table, without creating it.
fn check_create(cluster: &Cluster, sql: &str, default_schema: &str) -> Result<(), Status> {
    let statements = parse_sql(sql).map_err(status)?;
    let [ParsedStatement::Sql(statement, clauses)] = statements.as_slice() else {
        return Err(Status::internal(
            "the generated CREATE TABLE is not one statement",
        ));
    };
    let Statement::CreateTable(create) = statement.as_ref() else {
        return Err(Status::internal(
            "the generated CREATE TABLE is not a CREATE TABLE",
        ));
    };
    let table = crate::sql::ddl::table_from_create(
        create,
        clauses,
        default_schema,
        cluster.data_nodes().len(),
        &cluster.catalog().state().analyzers,
    )
    .map_err(status)?;
    table
        .validate()
        .map_err(|error| status(crate::error::Error::from(error)))?;
    // And what the cluster state would say (placement, shard limits): a dry run of the drop
    // and the create on a copy of the state, through the same pure `apply` the Raft log runs.
    let mut state = (*cluster.catalog().state()).clone();
    let drop = Command::DropTable {
        schema: table.schema_name.clone(),
        name: table.name.clone(),
        if_exists: true,
    };
    let create = Command::CreateTable {
        table,
        if_not_exists: false,
    };
    for command in [drop, create] {
        apply(&mut state, &command).map_err(|error| status(crate::error::Error::from(error)))?;
    }
    Ok(())
}

/// Runs an ingest; returns the rows written.
pub async fn ingest(
    cluster: &Arc<Cluster>,
    session: &Session,
    command: CommandStatementIngest,
    request: PeekableFlightDataStream,
) -> Result<i64, Status> {
    if command.temporary {
        return Err(unsupported("temporary tables are not supported".into()));
    }
    if command.transaction_id.is_some() {
        return Err(unsupported("transactions are not supported".into()));
    }
    if let Some(option) = command.options.keys().next() {
        return Err(unsupported(format!(
            "ingest option \"{option}\" is not supported"
        )));
    }
    if let Some(catalog) = command.catalog.as_deref() {
        if !catalog.is_empty() && catalog != DATABASE_NAME {
            return Err(unknown_catalog(catalog));
        }
    }
    let options = command.table_definition_options.unwrap_or_default();
    let if_not_exist = TableNotExistOption::try_from(options.if_not_exist)
        .unwrap_or(TableNotExistOption::Unspecified);
    let if_exists =
        TableExistsOption::try_from(options.if_exists).unwrap_or(TableExistsOption::Unspecified);
    if if_not_exist == TableNotExistOption::Unspecified
        || if_exists == TableExistsOption::Unspecified
    {
        return Err(status_of(
            ErrorCode::InvalidParameterValue,
            "ingest needs both table definition options (if the table exists, if it does not)"
                .into(),
        ));
    }
    let schema_name = command
        .schema
        .filter(|schema| !schema.is_empty())
        .unwrap_or_else(|| session.settings().schema);
    let table_name = command.table;

    let mut batches = FlightRecordBatchStream::new_from_flight_data(uncompressed(request));
    // The schema arrives before (or without) the first batch.
    let first = batches.next().await.transpose().map_err(flight_status)?;
    let schema = match (&first, batches.schema()) {
        (Some(batch), _) => batch.schema(),
        (None, Some(schema)) => schema.clone(),
        (None, None) => {
            return Err(status_of(
                ErrorCode::InvalidParameterValue,
                "the ingest stream carries no Arrow schema".into(),
            ))
        }
    };

    let create = || create_table_sql(&schema_name, &table_name, &schema);
    match cluster.catalog().table(&schema_name, &table_name) {
        Some(_) => match if_exists {
            TableExistsOption::Fail => {
                return Err(status_of(
                    ErrorCode::DuplicateObject,
                    format!("relation \"{schema_name}.{table_name}\" already exists"),
                ))
            }
            TableExistsOption::Replace => {
                // The new definition is checked in full before the old table is dropped: a
                // schema no table can have must not cost the rows already there.
                check_create(cluster, &create()?, &schema_name)?;
                let sql = format!(
                    "DROP TABLE {}.{}; {}",
                    quoted(&schema_name),
                    quoted(&table_name),
                    create()?
                );
                session.execute(&sql, &[]).await.map_err(status)?;
            }
            _ => {}
        },
        None => match if_not_exist {
            TableNotExistOption::Create => {
                session.execute(&create()?, &[]).await.map_err(status)?;
            }
            _ => {
                return Err(status_of(
                    ErrorCode::UndefinedTable,
                    format!("relation \"{schema_name}.{table_name}\" does not exist"),
                ))
            }
        },
    }
    let table = cluster
        .catalog()
        .existing_table(&schema_name, &table_name)
        .map_err(status)?;
    if let Some(stray) = schema
        .fields()
        .iter()
        .find(|field| !table.columns.iter().any(|c| &c.name == field.name()))
    {
        return Err(status_of(
            ErrorCode::UndefinedColumn,
            format!(
                "column \"{}\" of relation \"{schema_name}.{table_name}\" does not exist",
                stray.name()
            ),
        ));
    }
    let job = Arc::new(cluster.jobs().start(&format!(
        "INGEST INTO {}.{}",
        quoted(&schema_name),
        quoted(&table_name)
    )));
    let mut loader = BatchLoader::new(cluster.clone(), session.writes(), table, Some(job));
    let mut next = first;
    while let Some(batch) = next {
        if let Err(error) = loader.write(&batch).await {
            loader.abandon().await;
            return Err(status(error));
        }
        next = match batches.next().await.transpose() {
            Ok(batch) => batch,
            Err(error) => {
                loader.abandon().await;
                return Err(flight_status(error));
            }
        };
    }
    let written = loader.finish().await.map_err(status)?;
    Ok(written as i64)
}
