//! PostgreSQL wire protocol (v3) through the `pgwire` crate: simple and extended query, text and
//! binary formats, cancel requests. Every statement goes through [`Session`].

pub mod copy;
pub mod encode;
pub mod error;

use std::fmt::Debug;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use copy::start_copy;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{DefaultServerParameterProvider, StartupHandler};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DescribePortalResponse, DescribeStatementResponse, FieldInfo, Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, PgWireServerHandlers, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator, Type,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::extendedquery::{Parse, ParseComplete};
use pgwire::messages::startup::SecretKey;
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::PgWireFrontendMessage;
use tokio::net::TcpListener;

use crate::cluster::Cluster;
use crate::session::{PreparedPlan, Session};
use crate::sql::parse::ParsedStatement;
use crate::sql::Output;
use encode::{arrow_to_pg_type, encode_stream, fields_for_schema};
use error::to_pg_error;

/// Serves pgwire connections on `listener` forever.
pub async fn serve(listener: TcpListener, cluster: Arc<Cluster>, max_connections: usize) {
    let factory = Arc::new(PgHandlers::new(cluster));
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    // Connections being told "too many clients" at once; past these a connection is closed
    // without an answer, so a flood cannot hold unbounded tasks and descriptors.
    let refusals = Arc::new(tokio::sync::Semaphore::new(64));
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                let factory = factory.clone();
                let slot = slots.clone().try_acquire_owned();
                let refusal = refusals.clone().try_acquire_owned();
                tokio::spawn(async move {
                    let _ = socket.set_nodelay(true);
                    let slot = match slot {
                        Ok(slot) => Some(slot),
                        // A cancel request is served at the limit too: that is when a runaway
                        // query most needs stopping.
                        Err(_) if is_cancel_request(&socket).await => None,
                        Err(_) => {
                            tracing::warn!(%peer, max_connections, "refusing a pgwire connection: too many clients");
                            if let Ok(_refusal) = refusal {
                                refuse_connection(socket).await;
                            }
                            return;
                        }
                    };
                    let _slot = slot;
                    if let Err(error) = pgwire::tokio::process_socket(socket, None, factory).await {
                        tracing::debug!(%error, "pgwire connection ended with an error");
                    }
                });
            }
            Err(error) => tracing::warn!(%error, "accepting a pgwire connection failed"),
        }
    }
}

/// Whether the connection opens with a CancelRequest (16 bytes, code 80877102), looked at
/// without reading it.
async fn is_cancel_request(socket: &tokio::net::TcpStream) -> bool {
    const CANCEL_REQUEST: [u8; 8] = [0, 0, 0, 16, 4, 210, 22, 46];
    let mut start = [0u8; 8];
    let peeked = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        loop {
            match socket.peek(&mut start).await {
                Ok(8) => return true,
                Ok(0) | Err(_) => return false,
                Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    peeked == Ok(true) && start == CANCEL_REQUEST
}

/// Answers a connection past `max_connections` with PostgreSQL's FATAL 53300 and closes it.
/// The client's startup packet is read first and thrown away, so closing does not reset the
/// connection before the client has read the error.
async fn refuse_connection(mut socket: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        let mut buffer = [0u8; 1024];
        let read = socket.read(&mut buffer).await.unwrap_or(0);
        // An SSL or GSS encryption request is declined, so that the client then sends its
        // startup packet and reads the error as a plain message.
        const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 210, 22, 47];
        const GSS_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 210, 22, 48];
        if read == 8 && (buffer[..8] == SSL_REQUEST || buffer[..8] == GSS_REQUEST) {
            let _ = socket.write_all(b"N").await;
            let _ = socket.read(&mut buffer).await;
        }
    })
    .await;
    let mut fields = Vec::new();
    for (code, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "53300"),
        (b'M', "sorry, too many clients already"),
    ] {
        fields.push(code);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(&(fields.len() as i32 + 4).to_be_bytes());
    message.extend_from_slice(&fields);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        let _ = socket.write_all(&message).await;
        let _ = socket.shutdown().await;
    })
    .await;
}

/// Handlers shared by all connections.
pub struct PgHandlers {
    handler: Arc<PgHandler>,
    cancel: Arc<PgCancelHandler>,
}

impl PgHandlers {
    fn new(cluster: Arc<Cluster>) -> PgHandlers {
        let manager = Arc::new(ConnectionManager::new());
        let sessions = SessionRegistry::default();
        PgHandlers {
            handler: Arc::new(PgHandler {
                cluster,
                manager: manager.clone(),
                parser: Arc::new(PgQueryParser),
                sessions: sessions.clone(),
                pid_generator: RandomPidSecretKeyGenerator::default(),
            }),
            cancel: Arc::new(PgCancelHandler {
                manager,
                sessions: sessions.clone(),
            }),
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
    sessions: SessionRegistry,
    pid_generator: RandomPidSecretKeyGenerator,
}

/// Sessions by the (process id, secret key) pair their connection was given at start-up, the
/// pair a CancelRequest names. Weak: a closed connection's session is gone.
type SessionRegistry = Arc<parking_lot::Mutex<Vec<(i32, SecretKey, Weak<Session>)>>>;

/// Cancels both what pgwire itself watches (the statement's execution until its first row) and
/// the session's row stream, which pgwire sends after the handler returned.
pub struct PgCancelHandler {
    manager: Arc<ConnectionManager>,
    sessions: SessionRegistry,
}

#[async_trait]
impl CancelHandler for PgCancelHandler {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let session = self
            .sessions
            .lock()
            .iter()
            .find(|(pid, key, _)| *pid == request.pid && key.eq_value(&request.secret_key))
            .and_then(|(_, _, session)| session.upgrade());
        if let Some(session) = session {
            session.cancel_query();
        }
        self.manager.cancel(request.pid, &request.secret_key).await;
    }
}

fn session_of<C: ClientInfo>(client: &C, cluster: &Arc<Cluster>) -> Arc<Session> {
    client
        .session_extensions()
        .get_or_insert_with(|| Session::new(cluster.clone()))
}

/// Names of the statements this connection prepared through the extended protocol, so SQL
/// `DEALLOCATE ALL` can remove them from the connection's statement store.
#[derive(Default)]
struct PreparedNames(parking_lot::Mutex<std::collections::BTreeSet<String>>);

fn prepared_names<C: ClientInfo>(client: &C) -> Arc<PreparedNames> {
    client
        .session_extensions()
        .get_or_insert_with(PreparedNames::default)
}

/// Runs `DEALLOCATE [PREPARE] name | ALL` against the connection's statement store and the
/// session's SQL-level prepared statements (one namespace, as in PostgreSQL); `None` if
/// `statement` is something else.
fn deallocate<C>(
    client: &C,
    session: &Session,
    statement: &ParsedStatement,
) -> Option<PgWireResult<Response>>
where
    C: ClientInfo + ClientPortalStore,
    C::PortalStore: PortalStore,
{
    let ParsedStatement::Sql(statement, _) = statement else {
        return None;
    };
    let sqlparser::ast::Statement::Deallocate { name, .. } = statement.as_ref() else {
        return None;
    };
    let names = prepared_names(client);
    let mut names = names.0.lock();
    if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all") {
        for name in std::mem::take(&mut *names) {
            client.portal_store().rm_statement(&name);
        }
        session.forget_prepared(None);
        return Some(Ok(Response::Execution(Tag::new("DEALLOCATE ALL"))));
    }
    let folded = crate::plan::identifiers::ident_name(name);
    let mut found = session.forget_prepared(Some(&folded));
    for candidate in [&name.value, &folded] {
        if names.remove(candidate.as_str()) {
            client.portal_store().rm_statement(candidate);
            found = true;
        }
    }
    if !found {
        return Some(Err(to_pg_error(&crate::error::Error::new(
            creek_common::ErrorCode::UndefinedPreparedStatement,
            format!("prepared statement \"{folded}\" does not exist"),
        ))));
    }
    Some(Ok(Response::Execution(Tag::new("DEALLOCATE"))))
}

/// Start-up without authentication (a later issue adds it): pgwire's protocol negotiation and
/// cancel-key registration, the client's `options` and parameters applied to the session, then
/// ParameterStatus with Creek's own values (pgwire's defaults name pgwire's version).
#[async_trait]
impl StartupHandler for PgHandler {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let PgWireFrontendMessage::Startup(startup) = &message else {
            return Ok(());
        };
        pgwire::api::auth::protocol_negotiation(client, startup).await?;
        pgwire::api::auth::save_startup_parameters_to_metadata(client, startup);
        let (pid, secret_key) = self.pid_generator.generate(client);
        client.set_pid_and_secret_key(pid, secret_key.clone());
        let (handle, guard) = self.manager.register(pid, secret_key);
        client.session_extensions().insert(handle);
        client.session_extensions().insert(guard);
        let session = self.apply_startup_parameters(client)?;
        let settings = session.settings();
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = crate::frontend::SERVER_VERSION.to_string();
        parameters.search_path = settings.schema.clone();
        parameters.time_zone = settings.get("timezone").unwrap_or_else(|| "UTC".into());
        parameters.date_style = settings
            .get("datestyle")
            .unwrap_or_else(|| "ISO, MDY".into());
        parameters.session_authorization = Some(crate::catalog::pg_catalog::SUPERUSER.to_string());
        pgwire::api::auth::finish_authentication(client, &parameters).await
    }
}

impl PgHandler {
    /// Creates the connection's session, registers it for cancel requests and applies the
    /// start-up `options` (`-c name=value`) and parameters to it.
    fn apply_startup_parameters<C: ClientInfo>(&self, client: &C) -> PgWireResult<Arc<Session>> {
        let session = session_of(client, &self.cluster);
        {
            let (pid, key) = client.pid_and_secret_key();
            let mut sessions = self.sessions.lock();
            sessions.retain(|(_, _, session)| session.strong_count() > 0);
            sessions.push((pid, key, Arc::downgrade(&session)));
        }
        let metadata = client.metadata().clone();
        if let Some(options) = metadata.get("options") {
            // `-c name=value` pairs, as libpq's PGOPTIONS sends them.
            let mut words = options.split_whitespace();
            while let Some(word) = words.next() {
                // `-c name=value`, `-cname=value` or `--name=value`.
                let pair = if word == "-c" {
                    words.next().unwrap_or("")
                } else if let Some(pair) = word.strip_prefix("--") {
                    pair
                } else {
                    word.strip_prefix("-c").unwrap_or(word)
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
            "extra_float_digits",
        ] {
            if let Some(value) = metadata.get(key) {
                session.set(key, value).map_err(|e| to_pg_error(&e))?;
            }
        }
        Ok(session)
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

fn output_to_response(output: Output, extra_float_digits: i32) -> PgWireResult<Response> {
    Ok(match output {
        Output::CopyIn(_) => {
            return Err(PgWireError::ApiError(
                "COPY must be started with start_copy".into(),
            ))
        }
        Output::Rows { schema, stream } => {
            let fields = Arc::new(fields_for_schema(&schema, &Format::UnifiedText));
            Response::Query(encode_stream(fields, stream, extra_float_digits))
        }
        Output::Affected { tag, count } => {
            if tag.is_empty() {
                Response::EmptyQuery
            } else if matches!(
                tag.as_str(),
                "INSERT" | "UPDATE" | "DELETE" | "SELECT" | "COPY" | "KILL"
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

/// Sends the warnings the session's last statement raised, before its result.
async fn send_notices<C>(client: &mut C, session: &Session) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for notice in session.take_notices() {
        let info = pgwire::error::ErrorInfo::new(
            notice.severity.to_string(),
            notice.sqlstate.to_string(),
            notice.message,
        );
        client
            .feed(PgWireBackendMessage::NoticeResponse(info.into()))
            .await?;
    }
    Ok(())
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
            match deallocate(client, &session, &statement) {
                Some(Ok(response)) => {
                    responses.push(response);
                    continue;
                }
                Some(Err(error)) if responses.is_empty() => return Err(error),
                Some(Err(error)) => {
                    if let PgWireError::UserError(info) = error {
                        responses.push(Response::Error(info));
                    }
                    break;
                }
                None => {}
            }
            let result = session.execute_one(statement, &[]).await;
            send_notices(client, &session).await?;
            match result {
                Ok(Output::CopyIn(copy)) => {
                    responses.push(start_copy(client, &self.cluster, session.writes(), *copy));
                    // COPY takes over the connection until CopyDone; later statements do not run.
                    break;
                }
                Ok(output) => responses.push(output_to_response(
                    output,
                    session.settings().extra_float_digits,
                )?),
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
    statements: Arc<Vec<ParsedStatement>>,
    /// The result's fields, metadata included (a geo_shape column is described as json).
    fields: Vec<datafusion::arrow::datatypes::FieldRef>,
    param_types: Vec<Option<DataType>>,
    /// The plan made at Parse, which Execute reuses while it is valid.
    plan: Option<Arc<PreparedPlan>>,
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
            statements: prepared.statements,
            fields: prepared
                .schema
                .map(|schema| schema.fields().iter().cloned().collect())
                .unwrap_or_default(),
            param_types: prepared.param_types,
            plan: prepared.plan,
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
        let schema = datafusion::arrow::datatypes::Schema::new(stmt.fields.clone());
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

    /// pgwire's own Parse handling, plus remembering the statement's name for `DEALLOCATE ALL`.
    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message
            .name
            .clone()
            .unwrap_or_else(|| pgwire::api::DEFAULT_NAME.to_owned());
        match StoredStatement::parse(client, &message, self.parser.clone()).await? {
            Some(statement) => client.portal_store().put_statement(Arc::new(statement)),
            None => client.portal_store().put_empty_statement(&name),
        }
        if name != pgwire::api::DEFAULT_NAME {
            prepared_names(client).0.lock().insert(name);
        }
        client
            .send(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
            .await?;
        Ok(())
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
        if let [parsed] = statement.statements.as_slice() {
            if let Some(response) = deallocate(client, &session, parsed) {
                return response;
            }
        }
        let params = decode_params(portal)?;
        let outputs = session
            .execute_prepared(&statement.statements, statement.plan.as_deref(), &params)
            .await;
        send_notices(client, &session).await?;
        let mut outputs = outputs.map_err(|e| to_pg_error(&e))?;
        let Some(output) = outputs.pop() else {
            return Ok(Response::EmptyQuery);
        };
        match output {
            Output::Rows { schema, stream } => {
                let fields = Arc::new(fields_for_schema(&schema, &portal.result_column_format));
                Ok(Response::Query(encode_stream(
                    fields,
                    stream,
                    session.settings().extra_float_digits,
                )))
            }
            Output::CopyIn(copy) => Ok(start_copy(client, &self.cluster, session.writes(), *copy)),
            other => output_to_response(other, session.settings().extra_float_digits),
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
