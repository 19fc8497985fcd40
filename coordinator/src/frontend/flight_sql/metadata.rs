//! Flight SQL's metadata commands: catalogs, schemas, tables (with their Arrow schemas), table
//! types, primary keys, SQL info and XDBC type info. Relations are listed by querying
//! `information_schema` through a [`Session`], so a client sees here exactly what it sees in
//! SQL.

use std::sync::{Arc, OnceLock};

use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetSqlInfo,
    CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo, Nullable, Searchable, SqlInfo,
    SqlSupportedTransaction, XdbcDataType,
};
use creek_common::ErrorCode;
use datafusion::arrow::array::{Array, ArrayRef, Int32Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use futures::TryStreamExt;
use tonic::Status;

use super::results::{status, status_of};
use crate::catalog::pg_catalog::DATABASE_NAME;
use crate::cluster::Cluster;
use crate::error::Error;
use crate::session::Session;
use crate::sql::Output;

/// The relation types `GetTables` reports, as `information_schema.tables` names them.
const TABLE_TYPES: [&str; 2] = ["BASE TABLE", "VIEW"];

/// Rows of a query of text columns.
async fn text_rows(
    session: &Session,
    sql: &str,
    params: &[ScalarValue],
) -> Result<Vec<Vec<Option<String>>>, Status> {
    let outputs = session.execute(sql, params).await.map_err(status)?;
    let Some(Output::Rows { stream, .. }) = outputs.into_iter().last() else {
        return Err(Status::internal("a metadata query returned no rows"));
    };
    let batches: Vec<RecordBatch> = stream
        .try_collect()
        .await
        .map_err(|e| status(Error::from(e)))?;
    let mut rows = Vec::new();
    for batch in batches {
        let columns = batch
            .columns()
            .iter()
            .map(|column| datafusion::arrow::compute::cast(column, &DataType::Utf8))
            .collect::<Result<Vec<ArrayRef>, _>>()
            .map_err(|e| status(Error::from(e)))?;
        for row in 0..batch.num_rows() {
            rows.push(
                columns
                    .iter()
                    .map(|column| {
                        let strings = column.as_any().downcast_ref::<StringArray>()?;
                        (!strings.is_null(row)).then(|| strings.value(row).to_string())
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

fn flight_error(error: arrow_flight::error::FlightError) -> Status {
    Status::internal(error.to_string())
}

fn text(value: Option<&str>) -> ScalarValue {
    ScalarValue::Utf8(value.map(str::to_string))
}

/// `identifier` as a quoted SQL identifier.
pub fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// `GetCatalogs`: Creek has one, `crate`.
pub fn catalogs(query: CommandGetCatalogs) -> Result<RecordBatch, Status> {
    let mut builder = query.into_builder();
    builder.append(DATABASE_NAME);
    builder.build().map_err(flight_error)
}

/// `GetDbSchemas`: every schema holding a relation, and the empty schemata listed.
pub async fn schemas(session: &Session, query: CommandGetDbSchemas) -> Result<RecordBatch, Status> {
    let rows = text_rows(
        session,
        "SELECT DISTINCT table_schema FROM information_schema.tables \
         UNION SELECT schema_name FROM information_schema.schemata ORDER BY 1",
        &[],
    )
    .await?;
    let mut builder = query.into_builder();
    for row in rows {
        if let Some(Some(schema)) = row.into_iter().next() {
            builder.append(DATABASE_NAME, schema);
        }
    }
    builder.build().map_err(flight_error)
}

/// `GetTables`, with each table's Arrow schema (the columns `SELECT *` returns) if asked.
pub async fn tables(session: &Session, query: CommandGetTables) -> Result<RecordBatch, Status> {
    let wrong_catalog = query
        .catalog
        .as_deref()
        .is_some_and(|catalog| !catalog.is_empty() && catalog != DATABASE_NAME);
    // The filters go into the query, so that only the tables listed get their schema read.
    let rows = if wrong_catalog {
        Vec::new()
    } else {
        text_rows(
            session,
            "SELECT table_schema, table_name, table_type FROM information_schema.tables \
             WHERE ($1 IS NULL OR table_schema LIKE $1) AND ($2 IS NULL OR table_name LIKE $2) \
             ORDER BY 1, 2",
            &[
                text(query.db_schema_filter_pattern.as_deref()),
                text(query.table_name_filter_pattern.as_deref()),
            ],
        )
        .await?
    };
    let include_schema = query.include_schema;
    let types = query.table_types.clone();
    let mut builder = query.into_builder();
    for row in rows {
        let [Some(schema), Some(name), Some(table_type)] = <[Option<String>; 3]>::try_from(row)
            .map_err(|_| Status::internal("information_schema.tables changed shape"))?
        else {
            continue;
        };
        if !types.is_empty() && !types.contains(&table_type) {
            continue;
        }
        let columns = if include_schema {
            relation_schema(session, &schema, &name).await?
        } else {
            Arc::new(Schema::empty())
        };
        builder
            .append(DATABASE_NAME, &schema, &name, &table_type, &columns)
            .map_err(flight_error)?;
    }
    builder.build().map_err(flight_error)
}

/// The columns `SELECT *` of a relation returns.
async fn relation_schema(session: &Session, schema: &str, name: &str) -> Result<SchemaRef, Status> {
    let sql = format!("SELECT * FROM {}.{} LIMIT 0", quoted(schema), quoted(name));
    let outputs = session.execute(&sql, &[]).await.map_err(status)?;
    match outputs.into_iter().last() {
        Some(Output::Rows { schema, .. }) => Ok(super::results::relaxed(&schema)),
        _ => Err(Status::internal(
            "a relation's schema query returned no rows",
        )),
    }
}

/// `GetTableTypes`.
pub fn table_types(query: CommandGetTableTypes) -> Result<RecordBatch, Status> {
    let mut builder = query.into_builder();
    for table_type in TABLE_TYPES {
        builder.append(table_type);
    }
    builder.build().map_err(flight_error)
}

/// The schema of `GetPrimaryKeys` results (fixed by the Flight SQL specification).
pub fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// `GetPrimaryKeys` of one table; its schema defaults to any schema holding a table of that
/// name.
pub fn primary_keys(
    cluster: &Cluster,
    query: &CommandGetPrimaryKeys,
) -> Result<RecordBatch, Status> {
    if query
        .catalog
        .as_deref()
        .is_some_and(|catalog| !catalog.is_empty() && catalog != DATABASE_NAME)
    {
        return RecordBatch::try_new(primary_keys_schema(), empty_columns())
            .map_err(|e| status(Error::from(e)));
    }
    let state = cluster.catalog().state();
    let mut schemas = Vec::new();
    let mut tables = Vec::new();
    let mut columns = Vec::new();
    let mut keys = Vec::new();
    let mut sequence = Vec::new();
    for table in state.tables.values().filter(|table| {
        table.name == query.table
            && query
                .db_schema
                .as_deref()
                .is_none_or(|schema| schema == table.schema_name)
    }) {
        for (index, column) in table.primary_key.iter().enumerate() {
            schemas.push(table.schema_name.clone());
            tables.push(table.name.clone());
            columns.push(column.clone());
            keys.push(format!("{}_pkey", table.name));
            sequence.push(index as i32 + 1);
        }
    }
    let catalogs = vec![DATABASE_NAME; schemas.len()];
    RecordBatch::try_new(
        primary_keys_schema(),
        vec![
            Arc::new(StringArray::from(catalogs)),
            Arc::new(StringArray::from(schemas)),
            Arc::new(StringArray::from(tables)),
            Arc::new(StringArray::from(columns)),
            Arc::new(StringArray::from(keys)),
            Arc::new(Int32Array::from(sequence)),
        ],
    )
    .map_err(|e| status(Error::from(e)))
}

fn empty_columns() -> Vec<ArrayRef> {
    primary_keys_schema()
        .fields()
        .iter()
        .map(|field| datafusion::arrow::array::new_empty_array(field.data_type()))
        .collect()
}

/// What `GetSqlInfo` answers.
pub fn sql_info_data() -> &'static SqlInfoData {
    static DATA: OnceLock<SqlInfoData> = OnceLock::new();
    DATA.get_or_init(|| {
        let mut builder = SqlInfoDataBuilder::new();
        builder.append(SqlInfo::FlightSqlServerName, "Creek");
        builder.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        // The Arrow format version (Schema.fbs), not the library's.
        builder.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
        builder.append(SqlInfo::FlightSqlServerReadOnly, false);
        builder.append(SqlInfo::FlightSqlServerSql, true);
        builder.append(SqlInfo::FlightSqlServerSubstrait, false);
        builder.append(
            SqlInfo::FlightSqlServerTransaction,
            SqlSupportedTransaction::None as i32,
        );
        builder.append(SqlInfo::FlightSqlServerCancel, false);
        builder.append(SqlInfo::FlightSqlServerBulkIngestion, true);
        builder.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
        builder.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
        builder.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
        builder.append(SqlInfo::SqlDdlCatalog, false);
        builder.append(SqlInfo::SqlDdlSchema, false);
        builder.append(SqlInfo::SqlDdlTable, true);
        builder.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        builder.build().expect("the SQL info is well-formed")
    })
}

/// `GetSqlInfo`.
pub fn sql_info(query: CommandGetSqlInfo) -> Result<RecordBatch, Status> {
    query
        .into_builder(sql_info_data())
        .build()
        .map_err(flight_error)
}

fn type_info(
    name: &str,
    data_type: XdbcDataType,
    column_size: Option<i32>,
    create_params: Option<Vec<String>>,
) -> XdbcTypeInfo {
    let text = matches!(data_type, XdbcDataType::XdbcVarchar);
    let numeric = matches!(
        data_type,
        XdbcDataType::XdbcSmallint
            | XdbcDataType::XdbcInteger
            | XdbcDataType::XdbcBigint
            | XdbcDataType::XdbcReal
            | XdbcDataType::XdbcDouble
            | XdbcDataType::XdbcNumeric
    );
    XdbcTypeInfo {
        type_name: name.to_string(),
        data_type,
        column_size,
        literal_prefix: text.then(|| "'".to_string()),
        literal_suffix: text.then(|| "'".to_string()),
        create_params,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: text,
        searchable: Searchable::Full,
        unsigned_attribute: numeric.then_some(false),
        fixed_prec_scale: false,
        auto_increment: numeric.then_some(false),
        local_type_name: Some(name.to_string()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: data_type,
        datetime_subcode: None,
        num_prec_radix: numeric.then_some(10),
        interval_precision: None,
    }
}

/// What `GetXdbcTypeInfo` answers: the column types `CREATE TABLE` takes.
pub fn xdbc_data() -> &'static XdbcTypeInfoData {
    static DATA: OnceLock<XdbcTypeInfoData> = OnceLock::new();
    DATA.get_or_init(|| {
        let mut builder = XdbcTypeInfoDataBuilder::new();
        let other = XdbcDataType::XdbcUnknownType;
        for info in [
            type_info("boolean", XdbcDataType::XdbcBit, Some(1), None),
            type_info("smallint", XdbcDataType::XdbcSmallint, Some(5), None),
            type_info("integer", XdbcDataType::XdbcInteger, Some(10), None),
            type_info("bigint", XdbcDataType::XdbcBigint, Some(19), None),
            type_info("real", XdbcDataType::XdbcReal, Some(24), None),
            type_info("double precision", XdbcDataType::XdbcDouble, Some(53), None),
            type_info(
                "numeric",
                XdbcDataType::XdbcNumeric,
                Some(38),
                Some(vec!["precision".into(), "scale".into()]),
            ),
            type_info("text", XdbcDataType::XdbcVarchar, None, None),
            type_info(
                "varchar",
                XdbcDataType::XdbcVarchar,
                None,
                Some(vec!["length".into()]),
            ),
            type_info(
                "timestamp without time zone",
                XdbcDataType::XdbcTimestamp,
                None,
                None,
            ),
            type_info(
                "timestamp with time zone",
                XdbcDataType::XdbcTimestamp,
                None,
                None,
            ),
            type_info("date", XdbcDataType::XdbcDate, None, None),
            type_info("ip", other, None, None),
            type_info("geo_point", other, None, None),
            type_info("geo_shape", other, None, None),
            type_info("object", other, None, None),
            type_info("array", other, None, Some(vec!["element type".into()])),
        ] {
            builder.append(info);
        }
        builder.build().expect("the type info is well-formed")
    })
}

/// `GetXdbcTypeInfo`.
pub fn xdbc_type_info(query: CommandGetXdbcTypeInfo) -> Result<RecordBatch, Status> {
    query
        .into_builder(xdbc_data())
        .build()
        .map_err(flight_error)
}

/// A catalog the client named that is not Creek's.
pub fn unknown_catalog(catalog: &str) -> Status {
    status_of(
        ErrorCode::UndefinedObject,
        format!("catalog \"{catalog}\" does not exist; Creek's catalog is \"{DATABASE_NAME}\""),
    )
}
