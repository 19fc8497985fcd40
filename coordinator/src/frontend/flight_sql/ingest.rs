//! `CommandStatementIngest`: ADBC's bulk ingest of Arrow batches into a table, created from
//! the batches' schema when asked, appended to or replaced. The rows go through the same bulk
//! loader as COPY FROM STDIN (`sql::load`): table types, NOT NULL and duplicate keys are
//! checked as for an INSERT.

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{CommandStatementIngest, TableExistsOption, TableNotExistOption};
use creek_common::types::ColumnType;
use creek_common::ErrorCode;
use datafusion::arrow::datatypes::Schema;
use futures::{StreamExt, TryStreamExt};
use tonic::Status;

use super::metadata::unknown_catalog;
use super::results::{status, status_of};
use crate::catalog::pg_catalog::DATABASE_NAME;
use crate::cluster::Cluster;
use crate::session::Session;
use crate::sql::load::BatchLoader;
use std::sync::Arc;

fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn unsupported(message: String) -> Status {
    status_of(ErrorCode::FeatureNotSupported, message)
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

    let mut batches = FlightRecordBatchStream::new_from_flight_data(
        request.map_err(|status| FlightError::Tonic(Box::new(status))),
    );
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

fn flight_status(error: FlightError) -> Status {
    match error {
        FlightError::Tonic(status) => *status,
        other => status_of(
            ErrorCode::InvalidParameterValue,
            format!("bad Arrow data: {other}"),
        ),
    }
}
