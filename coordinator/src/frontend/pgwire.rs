//! PostgreSQL wire protocol (v3) through the `pgwire` crate: simple and extended query, text and
//! binary formats, cancel requests. Every statement goes through [`Session`].

pub mod copy;
pub mod encode;
pub mod error;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use copy::start_copy;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use futures::Sink;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DescribePortalResponse, DescribeStatementResponse, FieldInfo, Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, ConnectionManager, PgWireServerHandlers, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::PgWireFrontendMessage;
use tokio::net::TcpListener;

use crate::cluster::Cluster;
use crate::session::Session;
use crate::sql::Output;
use encode::{arrow_to_pg_type, encode_stream, fields_for_schema};
use error::to_pg_error;

/// Serves pgwire connections on `listener` forever.
pub async fn serve(listener: TcpListener, cluster: Arc<Cluster>) {
    let factory = Arc::new(PgHandlers::new(cluster));
    loop {
        match listener.accept().await {
            Ok((socket, _)) => {
                let factory = factory.clone();
                tokio::spawn(async move {
                    let _ = socket.set_nodelay(true);
                    if let Err(error) = pgwire::tokio::process_socket(socket, None, factory).await {
                        tracing::debug!(%error, "pgwire connection ended with an error");
                    }
                });
            }
            Err(error) => tracing::warn!(%error, "accepting a pgwire connection failed"),
        }
    }
}

/// Handlers shared by all connections.
pub struct PgHandlers {
    handler: Arc<PgHandler>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgHandlers {
    fn new(cluster: Arc<Cluster>) -> PgHandlers {
        let manager = Arc::new(ConnectionManager::new());
        PgHandlers {
            handler: Arc::new(PgHandler {
                cluster,
                manager: manager.clone(),
                parser: Arc::new(PgQueryParser),
            }),
            cancel: Arc::new(DefaultCancelHandler::new(manager)),
        }
    }
}

impl PgWireServerHandlers for PgHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.handler.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.handler.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.handler.clone()
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.handler.clone()
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}

/// The per-server handler; per-connection state lives in the client's session extensions.
pub struct PgHandler {
    pub(crate) cluster: Arc<Cluster>,
    manager: Arc<ConnectionManager>,
    parser: Arc<PgQueryParser>,
}

fn session_of<C: ClientInfo>(client: &C, cluster: &Arc<Cluster>) -> Arc<Session> {
    client
        .session_extensions()
        .get_or_insert_with(|| Session::new(cluster.clone()))
}

#[async_trait]
impl NoopStartupHandler for PgHandler {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.manager.clone())
    }

    async fn post_startup<C>(
        &self,
        client: &mut C,
        _message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(client, &self.cluster);
        let metadata = client.metadata().clone();
        if let Some(options) = metadata.get("options") {
            // `-c name=value` pairs, as libpq's PGOPTIONS sends them.
            let mut words = options.split_whitespace();
            while let Some(word) = words.next() {
                let pair = if word == "-c" {
                    words.next().unwrap_or("")
                } else {
                    word.trim_start_matches("--")
                };
                if let Some((name, value)) = pair.split_once('=') {
                    session.set(name, value).map_err(|e| to_pg_error(&e))?;
                }
            }
        }
        for key in [
            "search_path",
            "application_name",
            "datestyle",
            "timezone",
            "write_refresh",
        ] {
            if let Some(value) = metadata.get(key) {
                session.set(key, value).map_err(|e| to_pg_error(&e))?;
            }
        }
        Ok(())
    }
}

/// Rejects query text that held invalid UTF-8. pgwire decodes query strings lossily, so invalid
/// bytes arrive as U+FFFD; accepting them would store replacement characters instead of the
/// client's data. The price is that a literal U+FFFD in SQL text is refused too.
fn check_encoding(query: &str) -> PgWireResult<()> {
    if query.contains('\u{FFFD}') {
        return Err(to_pg_error(&crate::error::Error::new(
            creek_common::ErrorCode::InvalidEncoding,
            "invalid byte sequence for encoding \"UTF8\"",
        )));
    }
    Ok(())
}

fn output_to_response(output: Output) -> PgWireResult<Response> {
    Ok(match output {
        Output::CopyIn(_) => {
            return Err(PgWireError::ApiError(
                "COPY must be started with start_copy".into(),
            ))
        }
        Output::Rows { schema, stream } => {
            let fields = Arc::new(fields_for_schema(&schema, &Format::UnifiedText));
            Response::Query(encode_stream(fields, stream))
        }
        Output::Affected { tag, count } => {
            if tag.is_empty() {
                Response::EmptyQuery
            } else if matches!(
                tag.as_str(),
                "INSERT" | "UPDATE" | "DELETE" | "SELECT" | "COPY"
            ) {
                if tag == "INSERT" {
                    Response::Execution(Tag::new("INSERT").with_oid(0).with_rows(count as usize))
                } else {
                    Response::Execution(Tag::new(&tag).with_rows(count as usize))
                }
            } else if tag == "BEGIN" {
                Response::TransactionStart(Tag::new(&tag))
            } else if tag == "COMMIT" || tag == "ROLLBACK" {
                Response::TransactionEnd(Tag::new(&tag))
            } else {
                Response::Execution(Tag::new(&tag))
            }
        }
    })
}

#[async_trait]
impl SimpleQueryHandler for PgHandler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        check_encoding(query)?;
        let session = session_of(client, &self.cluster);
        let statements = crate::sql::parse::parse_sql(query).map_err(|e| to_pg_error(&e))?;
        let mut responses = Vec::with_capacity(statements.len());
        for statement in statements {
            match session.execute_one(statement, &[]).await {
                Ok(Output::CopyIn(copy)) => {
                    responses.push(start_copy(client, &self.cluster, copy));
                    // COPY takes over the connection until CopyDone; later statements do not run.
                    break;
                }
                Ok(output) => responses.push(output_to_response(output)?),
                Err(error) => {
                    // Later statements of a failed simple query are not run, as in PostgreSQL.
                    if responses.is_empty() {
                        return Err(to_pg_error(&error));
                    }
                    if let PgWireError::UserError(info) = to_pg_error(&error) {
                        responses.push(Response::Error(info));
                    }
                    break;
                }
            }
        }
        Ok(responses)
    }
}

/// A statement prepared through the extended protocol.
#[derive(Clone)]
pub struct PgStatement {
    sql: String,
    fields: Vec<(String, DataType)>,
    param_types: Vec<Option<DataType>>,
}

/// Plans statements at Parse time so Describe can answer without executing.
pub struct PgQueryParser;

#[async_trait]
impl QueryParser for PgQueryParser {
    type Statement = PgStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<PgStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let session = client
            .session_extensions()
            .get::<Session>()
            .ok_or_else(|| PgWireError::ApiError("session missing".into()))?;
        check_encoding(sql)?;
        let prepared = session.prepare(sql).await.map_err(|e| to_pg_error(&e))?;
        Ok(Some(PgStatement {
            sql: sql.to_string(),
            fields: prepared
                .schema
                .map(|schema| {
                    schema
                        .fields()
                        .iter()
                        .map(|f| (f.name().clone(), f.data_type().clone()))
                        .collect()
                })
                .unwrap_or_default(),
            param_types: prepared.param_types,
        }))
    }

    fn get_parameter_types(&self, stmt: &PgStatement) -> PgWireResult<Vec<Type>> {
        Ok(stmt
            .param_types
            .iter()
            .map(|t| t.as_ref().map(arrow_to_pg_type).unwrap_or(Type::UNKNOWN))
            .collect())
    }

    fn get_result_schema(
        &self,
        stmt: &PgStatement,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let schema = datafusion::arrow::datatypes::Schema::new(
            stmt.fields
                .iter()
                .map(|(name, t)| datafusion::arrow::datatypes::Field::new(name, t.clone(), true))
                .collect::<Vec<_>>(),
        );
        Ok(fields_for_schema(
            &schema,
            format.unwrap_or(&Format::UnifiedText),
        ))
    }
}

#[async_trait]
impl ExtendedQueryHandler for PgHandler {
    type Statement = PgStatement;
    type QueryParser = PgQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        target: &StoredStatement<PgStatement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let server_types = self.parser.get_parameter_types(&target.statement)?;
        let count = server_types.len().max(target.parameter_types.len());
        let param_types = (0..count)
            .map(|i| {
                target
                    .parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .filter(|t| *t != Type::UNKNOWN)
                    .or_else(|| server_types.get(i).cloned())
                    .map(|t| if t == Type::UNKNOWN { Type::TEXT } else { t })
                    .unwrap_or(Type::TEXT)
            })
            .collect();
        let fields = self.parser.get_result_schema(&target.statement, None)?;
        Ok(DescribeStatementResponse::new(param_types, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        portal: &Portal<PgStatement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let fields = self.parser.get_result_schema(
            &portal.statement.statement,
            Some(&portal.result_column_format),
        )?;
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<PgStatement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(client, &self.cluster);
        let statement = &portal.statement.statement;
        let params = decode_params(portal)?;
        let mut outputs = session
            .execute(&statement.sql, &params)
            .await
            .map_err(|e| to_pg_error(&e))?;
        let Some(output) = outputs.pop() else {
            return Ok(Response::EmptyQuery);
        };
        match output {
            Output::Rows { schema, stream } => {
                let fields = Arc::new(fields_for_schema(&schema, &portal.result_column_format));
                Ok(Response::Query(encode_stream(fields, stream)))
            }
            Output::CopyIn(copy) => Ok(start_copy(client, &self.cluster, copy)),
            other => output_to_response(other),
        }
    }
}

fn decode_params(portal: &Portal<PgStatement>) -> PgWireResult<Vec<ScalarValue>> {
    let statement = &portal.statement;
    let mut values = Vec::with_capacity(portal.parameter_len());
    for index in 0..portal.parameter_len() {
        let client_type = statement.parameter_types.get(index).cloned().flatten();
        let server_type = statement
            .statement
            .param_types
            .get(index)
            .cloned()
            .flatten();
        let pg_type = client_type
            .filter(|t| *t != Type::UNKNOWN)
            .or_else(|| server_type.as_ref().map(arrow_to_pg_type))
            .unwrap_or(Type::TEXT);
        let value = encode::decode_param(portal, index, &pg_type)?;
        values.push(value);
    }
    Ok(values)
}

impl Session {
    /// Executes one already-parsed statement (used by the simple query protocol).
    pub async fn execute_one(
        &self,
        statement: crate::sql::parse::ParsedStatement,
        params: &[ScalarValue],
    ) -> crate::Result<Output> {
        self.execute_parsed_statement(statement, params).await
    }
}
