//! Arrow Flight SQL on the coordinator's `--flight-port`: statements, prepared statements with
//! bound parameters, metadata, and bulk ingest, all run through the same [`Session`] as pgwire
//! and HTTP. Each call gets a fresh session (Flight SQL has no connection state), as HTTP does.
//!
//! A query that is a plain scan (`Session::export`) is not run here: `GetFlightInfo` answers
//! one endpoint per data node, each with that node's client Flight address and a ticket for
//! its fragment signed with the cluster's ticket key (`creek_proto::ticket`), so the client
//! pulls the batches from the data nodes in parallel. Anything else runs when `GetFlightInfo`
//! asks (errors are answered there) and its rows wait, under a random handle, for the
//! client's `DoGet` on this coordinator. Both kinds of ticket expire after `--flight-ticket-ttl`.

mod ingest;
mod metadata;
mod params;
mod results;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandGetXdbcTypeInfo, CommandPreparedStatementQuery, CommandPreparedStatementUpdate,
    CommandStatementIngest, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use creek_common::ErrorCode;
use creek_proto::v1::{ClientTicket, RowStatus};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use prost::Message;
use sqlparser::ast::Statement;
use tonic::{Request, Response, Status};

use results::{flight_stream, relaxed, status, status_of, PendingResults};

use crate::cluster::Cluster;
use crate::session::{Export, PreparedQuery, ScanExport, Session};
use crate::sql::parse::{parse_sql, ParsedStatement};
use crate::sql::Output;

/// The largest message accepted: an ingest or parameter batch. Larger tables are sent as
/// several batches (every Arrow writer can split them).
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// The call header that asks for a coordinator endpoint even for a scan (`coordinator`).
pub const ENDPOINTS_HEADER: &str = "x-creek-endpoints";

/// Prepared statements kept per coordinator; one unused for [`PREPARED_IDLE`] is closed.
const MAX_PREPARED: usize = 10_000;
const PREPARED_IDLE: Duration = Duration::from_secs(3600);

/// A prepared statement and the parameters bound to it.
struct Prepared {
    query: PreparedQuery,
    bound: Mutex<Vec<Vec<ScalarValue>>>,
    used: Mutex<Instant>,
}

/// The Flight SQL service of one coordinator.
pub struct FlightSqlFrontEnd {
    cluster: Arc<Cluster>,
    results: PendingResults,
    prepared: Mutex<HashMap<Vec<u8>, Arc<Prepared>>>,
    ticket_ttl: Duration,
}

/// Serves Flight SQL on `listener` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cluster: Arc<Cluster>,
    ticket_ttl: Duration,
) -> Result<(), tonic::transport::Error> {
    let front_end = Arc::new(FlightSqlFrontEnd::new(cluster, ticket_ttl));
    let sweeper = {
        let front_end = Arc::downgrade(&front_end);
        tokio::spawn(async move {
            loop {
                let Some(front_end) = front_end.upgrade() else {
                    return;
                };
                let interval = front_end.results.sweep_interval();
                front_end.results.sweep();
                drop(front_end);
                tokio::time::sleep(interval).await;
            }
        })
    };
    let service = FlightServiceServer::from_arc(front_end)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let served = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming(creek_proto::transport::nodelay_incoming(listener))
        .await;
    sweeper.abort();
    served
}

impl FlightSqlFrontEnd {
    /// Creates the service; tickets it hands out are good for `ticket_ttl`.
    pub fn new(cluster: Arc<Cluster>, ticket_ttl: Duration) -> FlightSqlFrontEnd {
        FlightSqlFrontEnd {
            cluster,
            results: PendingResults::new(ticket_ttl),
            prepared: Mutex::default(),
            ticket_ttl,
        }
    }

    fn session(&self) -> Session {
        Session::new(self.cluster.clone())
    }

    fn prepared(&self, handle: &[u8]) -> Result<Arc<Prepared>, Status> {
        let prepared = self.prepared.lock().get(handle).cloned().ok_or_else(|| {
            status_of(
                ErrorCode::UndefinedPreparedStatement,
                "prepared statement does not exist (closed, or idle for an hour)".into(),
            )
        })?;
        *prepared.used.lock() = Instant::now();
        Ok(prepared)
    }

    /// Runs `statements` (or, for a scan, only plans it) and describes where its result is.
    async fn flight_info(
        &self,
        statements: &[ParsedStatement],
        params: &[ScalarValue],
        coordinator_only: bool,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        refuse_lost_settings(statements)?;
        self.results.ensure_room()?;
        let session = self.session();
        let export = if coordinator_only {
            None
        } else {
            match session.export(statements, params).await.map_err(status)? {
                Export::Scan(scan) => match self.scan_info(&scan, descriptor.clone())? {
                    Some(info) => return Ok(info),
                    None => None,
                },
                Export::Output(output) => Some(output),
            }
        };
        let output = match export {
            Some(output) => output,
            None => session
                .execute_statements(statements, params)
                .await
                .map_err(status)?
                .pop()
                .ok_or_else(|| status_of(ErrorCode::SyntaxError, "empty statement".into()))?,
        };
        let (schema, rows, count) = match output {
            Output::Rows { schema, stream } => (relaxed(&schema), Some(stream), -1),
            Output::Affected { count, .. } => (Arc::new(Schema::empty()), None, count as i64),
            Output::CopyIn(_) => return Err(copy_in_refused()),
        };
        let handle = self.results.insert(schema.clone(), rows);
        let ticket = TicketStatementQuery {
            statement_handle: handle.into(),
        };
        let endpoint = FlightEndpoint::new()
            .with_ticket(Ticket::new(ticket.as_any().encode_to_vec()))
            .with_expiration_time(self.expiration());
        Ok(FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor)
            .with_total_records(count)
            .with_ordered(true))
    }

    fn expiration(&self) -> prost_types::Timestamp {
        let at = std::time::SystemTime::now() + self.ticket_ttl;
        let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        prost_types::Timestamp {
            seconds: since.as_secs() as i64,
            nanos: since.subsec_nanos() as i32,
        }
    }

    /// One endpoint per data node of a scan, or `None` if some node cannot serve clients (it
    /// has no client Flight address) or the cluster has no ticket key yet: the query then
    /// runs on this coordinator.
    fn scan_info(
        &self,
        scan: &ScanExport,
        descriptor: FlightDescriptor,
    ) -> Result<Option<FlightInfo>, Status> {
        let state = self.cluster.catalog().state();
        let key = creek_proto::ticket::key_bytes(state.ticket_key.expose());
        if key.is_empty() {
            return Ok(None);
        }
        let schema_bytes = creek_proto::ipc::schema_to_ipc(&scan.schema)
            .map_err(|e| Status::internal(e.to_string()))?;
        let query_id = uuid::Uuid::new_v4().to_string();
        let expires_at_ms = creek_proto::ticket::now_ms() + self.ticket_ttl.as_millis() as u64;
        let mut info = FlightInfo::new()
            .try_with_schema(&scan.schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_descriptor(descriptor)
            .with_total_records(-1)
            .with_ordered(false);
        for (node, fragment) in &scan.fragments {
            let Some(address) = state
                .nodes
                .get(node)
                .and_then(|info| info.flight_address.clone())
            else {
                return Ok(None);
            };
            let ticket = creek_proto::ticket::sign(
                &key,
                &ClientTicket {
                    fragment: fragment.clone(),
                    expires_at_ms,
                    query_id: query_id.clone(),
                    schema: schema_bytes.clone(),
                    node_id: node.0.clone(),
                },
            );
            info = info.with_endpoint(
                FlightEndpoint::new()
                    .with_ticket(Ticket::new(ticket))
                    .with_location(format!("grpc+tcp://{address}"))
                    .with_expiration_time(self.expiration()),
            );
        }
        Ok(Some(info))
    }

    /// A metadata command's `FlightInfo`: one endpoint here whose ticket is the command.
    fn metadata_info(
        &self,
        command: impl ProstMessageExt,
        schema: &Schema,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let endpoint =
            FlightEndpoint::new().with_ticket(Ticket::new(command.as_any().encode_to_vec()));
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    /// Runs an update statement once per parameter row (once if none are bound); returns the
    /// rows it changed (-1 if it is a statement that changes none but returns rows). A one-row
    /// `INSERT ... VALUES` runs as one multi-row INSERT per group of rows.
    async fn update(
        &self,
        query: &PreparedQuery,
        batches: impl Stream<Item = Result<RecordBatch, Status>>,
    ) -> Result<i64, Status> {
        let session = self.session();
        refuse_lost_settings(&query.statements)?;
        let mut changed = Changed::default();
        let mut any = false;
        let mut batches = std::pin::pin!(batches);
        while let Some(batch) = batches.next().await {
            let batch = batch?;
            // Converted a group at a time: a value is far bigger as a ScalarValue (and a
            // placeholder of the multi-row INSERT) than in its Arrow column.
            let mut offset = 0;
            while offset < batch.num_rows() {
                let length = UPDATE_ROWS_PER_GROUP.min(batch.num_rows() - offset);
                let rows = params::rows(&batch.slice(offset, length), &query.param_types)?;
                offset += length;
                any = true;
                match session
                    .bulk_insert(&query.sql, &rows)
                    .await
                    .map_err(status)?
                {
                    Some(statuses) => {
                        let written =
                            statuses.iter().filter(|s| **s == RowStatus::Ok).count() as u64;
                        changed.add(Some(written));
                        let duplicates = statuses
                            .iter()
                            .filter(|s| **s == RowStatus::Duplicate)
                            .count();
                        if duplicates > 0 {
                            return Err(status_of(
                                ErrorCode::DuplicateKey,
                                format!(
                                    "duplicate key value violates unique constraint \
                                     ({duplicates} row(s) rejected, {} written)",
                                    changed.rows
                                ),
                            ));
                        }
                    }
                    None => {
                        for row in rows {
                            changed.add(affected(
                                session.execute_statements(&query.statements, &row).await,
                            )?);
                        }
                    }
                }
            }
        }
        if !any {
            changed.add(affected(
                session.execute_statements(&query.statements, &[]).await,
            )?);
        }
        Ok(changed.count())
    }
}

/// Parameter rows converted and run at a time by a prepared update.
const UPDATE_ROWS_PER_GROUP: usize = 10_000;

/// Rows changed by the runs of an update, and whether any run was a statement that changes
/// rows at all.
#[derive(Default)]
struct Changed {
    rows: u64,
    counted: bool,
}

impl Changed {
    fn add(&mut self, rows: Option<u64>) {
        if let Some(rows) = rows {
            self.rows += rows;
            self.counted = true;
        }
    }

    /// The count Flight SQL answers: -1 when no run changed rows (a query).
    fn count(&self) -> i64 {
        if self.counted {
            i64::try_from(self.rows).unwrap_or(i64::MAX)
        } else {
            -1
        }
    }
}

/// The rows a statement changed (`None` for one that returns rows).
fn affected(outputs: crate::error::Result<Vec<Output>>) -> Result<Option<u64>, Status> {
    match outputs.map_err(status)?.pop() {
        Some(Output::Affected { count, .. }) => Ok(Some(count)),
        Some(Output::CopyIn(_)) => Err(copy_in_refused()),
        _ => Ok(None),
    }
}

fn copy_in_refused() -> Status {
    status_of(
        ErrorCode::FeatureNotSupported,
        "COPY FROM STDIN needs the PostgreSQL protocol; over Flight SQL use bulk ingest".into(),
    )
}

/// Refuses statements whose last one only changes the session (a setting, a SQL prepared
/// statement): every Flight SQL call has a session of its own, so the change would be gone
/// before the next call. A `SET` followed by the query it is for, in one text, works.
fn refuse_lost_settings(statements: &[ParsedStatement]) -> Result<(), Status> {
    if let Some(ParsedStatement::Sql(statement, _)) = statements.last() {
        if matches!(
            statement.as_ref(),
            Statement::Set(_) | Statement::Prepare { .. } | Statement::Deallocate { .. }
        ) {
            return Err(status_of(
                ErrorCode::FeatureNotSupported,
                "session settings do not outlive a Flight SQL call; send the SET and the \
                 statement it is for as one text (SET ...; SELECT ...)"
                    .into(),
            ));
        }
    }
    Ok(())
}

fn parse(sql: &str) -> Result<Vec<ParsedStatement>, Status> {
    parse_sql(sql).map_err(status)
}

/// Whether the call asks for a coordinator endpoint even for a scan.
fn coordinator_only<T>(request: &Request<T>) -> bool {
    request
        .metadata()
        .get(ENDPOINTS_HEADER)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"coordinator"))
}

fn one_batch(
    schema: SchemaRef,
    batch: Result<RecordBatch, Status>,
) -> Result<Response<<FlightSqlFrontEnd as FlightService>::DoGetStream>, Status> {
    let batch = batch?;
    let stream = datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
        schema.clone(),
        futures::stream::once(async move { Ok(batch) }),
    );
    Ok(Response::new(flight_stream(schema, Some(Box::pin(stream)))))
}

type DoGetStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;

#[tonic::async_trait]
impl FlightSqlService for FlightSqlFrontEnd {
    type FlightService = FlightSqlFrontEnd;

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        if query.transaction_id.is_some() {
            return Err(status_of(
                ErrorCode::FeatureNotSupported,
                "transactions are not supported".into(),
            ));
        }
        let statements = parse(&query.query)?;
        let coordinator_only = coordinator_only(&request);
        let info = self
            .flight_info(&statements, &[], coordinator_only, request.into_inner())
            .await?;
        Ok(Response::new(info))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let prepared = self.prepared(&query.prepared_statement_handle)?;
        let params = {
            let bound = prepared.bound.lock();
            match bound.as_slice() {
                [] => Vec::new(),
                [row] => row.clone(),
                rows => {
                    return Err(status_of(
                        ErrorCode::InvalidParameterValue,
                        format!(
                            "a query takes one row of parameters, {} are bound",
                            rows.len()
                        ),
                    ))
                }
            }
        };
        let coordinator_only = coordinator_only(&request);
        let info = self
            .flight_info(
                &prepared.query.statements,
                &params,
                coordinator_only,
                request.into_inner(),
            )
            .await?;
        Ok(Response::new(info))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query
            .clone()
            .into_builder(metadata::sql_info_data())
            .schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(
            query,
            &metadata::primary_keys_schema(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder(metadata::xdbc_data()).schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let (schema, rows) = self.results.take(&ticket.statement_handle)?;
        Ok(Response::new(flight_stream(schema, rows)))
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let schema = query.into_builder().schema();
        one_batch(schema, metadata::catalogs(query))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let schema = query.clone().into_builder().schema();
        one_batch(schema, metadata::schemas(&self.session(), query).await)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let schema = query.clone().into_builder().schema();
        one_batch(schema, metadata::tables(&self.session(), query).await)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let schema = query.into_builder().schema();
        one_batch(schema, metadata::table_types(query))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let schema = query
            .clone()
            .into_builder(metadata::sql_info_data())
            .schema();
        one_batch(schema, metadata::sql_info(query))
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        one_batch(
            metadata::primary_keys_schema(),
            metadata::primary_keys(&self.cluster, &query),
        )
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let schema = query.into_builder(metadata::xdbc_data()).schema();
        one_batch(schema, metadata::xdbc_type_info(query))
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        if command.transaction_id.is_some() {
            return Err(status_of(
                ErrorCode::FeatureNotSupported,
                "transactions are not supported".into(),
            ));
        }
        let statements = parse(&command.query)?;
        refuse_lost_settings(&statements)?;
        let changed = affected(self.session().execute_statements(&statements, &[]).await)?;
        Ok(changed.map_or(-1, |rows| i64::try_from(rows).unwrap_or(i64::MAX)))
    }

    async fn do_put_statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        ingest::ingest(
            &self.cluster,
            &self.session(),
            command,
            request.into_inner(),
        )
        .await
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let prepared = self.prepared(&query.prepared_statement_handle)?;
        let mut bound = Vec::new();
        let mut batches = std::pin::pin!(params::batches(request.into_inner()));
        while let Some(batch) = batches.next().await {
            let batch = batch?;
            // Counted before converting: a value is far bigger as a ScalarValue.
            if bound.len() + batch.num_rows() > params::MAX_BOUND_ROWS {
                return Err(status_of(
                    ErrorCode::ProgramLimitExceeded,
                    format!(
                        "at most {} parameter rows can be bound to a query",
                        params::MAX_BOUND_ROWS
                    ),
                ));
            }
            bound.extend(params::rows(&batch, &prepared.query.param_types)?);
        }
        *prepared.bound.lock() = bound;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(query.prepared_statement_handle),
        })
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let prepared = self.prepared(&query.prepared_statement_handle)?;
        self.update(&prepared.query, params::batches(request.into_inner()))
            .await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        if query.transaction_id.is_some() {
            return Err(status_of(
                ErrorCode::FeatureNotSupported,
                "transactions are not supported".into(),
            ));
        }
        let prepared = self.session().prepare(&query.query).await.map_err(status)?;
        let dataset = match &prepared.schema {
            Some(schema) => relaxed(schema),
            None => Arc::new(Schema::empty()),
        };
        let dataset_schema = creek_proto::ipc::schema_to_ipc(&dataset)
            .map_err(|e| Status::internal(e.to_string()))?;
        let parameter_schema =
            creek_proto::ipc::schema_to_ipc(&params::parameter_schema(&prepared.param_types))
                .map_err(|e| Status::internal(e.to_string()))?;
        let handle = uuid::Uuid::new_v4().as_bytes().to_vec();
        {
            let mut all = self.prepared.lock();
            all.retain(|_, prepared| prepared.used.lock().elapsed() < PREPARED_IDLE);
            if all.len() >= MAX_PREPARED {
                return Err(status_of(
                    ErrorCode::ProgramLimitExceeded,
                    format!("{MAX_PREPARED} prepared statements are open; close some"),
                ));
            }
            all.insert(
                handle.clone(),
                Arc::new(Prepared {
                    query: prepared,
                    bound: Mutex::default(),
                    used: Mutex::new(Instant::now()),
                }),
            );
        }
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into(),
            dataset_schema: dataset_schema.into(),
            parameter_schema: parameter_schema.into(),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        self.prepared
            .lock()
            .remove(query.prepared_statement_handle.as_ref());
        Ok(())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
