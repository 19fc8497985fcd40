//! CrateDB-compatible HTTP endpoint: `GET /` and `POST /_sql` with `args` or `bulk_args`.
//! Errors answer `{"error": {"message", "code"}}` with CrateDB's codes and an HTTP status.
//! Arguments become parameter values in `http/args.rs`, result rows JSON in `http/rows.rs`.
//!
//! A result is encoded as it streams from the query. Up to [`BUFFERED_RESPONSE_BYTES`] of it
//! is held back, so a result that fits (nearly all) is answered whole with its length and an
//! error anywhere in it is answered as an error, as CrateDB does. A larger result is sent on
//! in chunks as it is produced, holding no more than one batch; an error after that point
//! can no longer change the status already sent, so the response is cut off mid-body and
//! the client sees a truncated response, never a complete-looking wrong one.

mod args;
mod rows;

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use creek_common::ErrorCode;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::cluster::Cluster;
use crate::error::Error;
use crate::plan::output_names::NamingRules;
use crate::session::Session;
use crate::sql::Output;
use creek_proto::v1::RowStatus;

/// The largest request body accepted: CrateDB's default `http.max_content_length`, so bulk
/// requests sized for CrateDB also fit here. axum's own default (2 MiB) is far too small for
/// a `bulk_args` batch of wide rows.
pub const MAX_CONTENT_LENGTH: usize = 100 * 1024 * 1024;

/// How much of an encoded result is held back before the response starts (see the module
/// documentation).
pub const BUFFERED_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// Builds the HTTP router.
pub fn router(cluster: Arc<Cluster>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/_sql", post(sql))
        .with_state(cluster)
}

/// Serves HTTP on `listener` forever.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cluster: Arc<Cluster>,
    max_connections: usize,
) -> std::io::Result<()> {
    let app = router(cluster);
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting an HTTP connection failed");
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max_connections, "refusing an HTTP connection: too many clients");
            tokio::spawn(refuse_connection(socket));
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let _ = socket.set_nodelay(true);
            let mut builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            // A client that trickles its request head (slow-loris) is dropped rather than
            // holding a connection slot for ever.
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let io = hyper_util::rt::TokioIo::new(socket);
            if let Err(error) = builder.serve_connection_with_upgrades(io, service).await {
                tracing::debug!(%error, "HTTP connection ended with an error");
            }
        });
    }
}

/// How long a client may take to send a request's head.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Answers a connection past `max_connections` with 503 and CrateDB's error body.
async fn refuse_connection(mut socket: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = r#"{"error":{"code":5030,"message":"too many HTTP connections"}}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        // Read what the client sent first, so closing does not reset the connection before
        // it has read the answer.
        let mut request = [0u8; 4096];
        let _ = socket.read(&mut request).await;
        let _ = socket.write_all(response.as_bytes()).await;
        let _ = socket.shutdown().await;
    })
    .await;
}

async fn root(State(cluster): State<Arc<Cluster>>) -> Json<Value> {
    let state = cluster.catalog().state();
    Json(json!({
        "ok": true,
        "status": 200,
        "name": cluster.node_id().to_string(),
        "cluster_name": state.cluster_name,
        "version": {"number": super::CRATE_VERSION, "build_snapshot": false, "creek": env!("CARGO_PKG_VERSION")},
    }))
}

#[derive(Deserialize)]
struct SqlParams {
    types: Option<String>,
}

/// Maps a Creek error code to CrateDB's HTTP error code and status.
pub fn crate_error_code(code: ErrorCode) -> (u32, StatusCode) {
    match code {
        ErrorCode::SyntaxError => (4000, StatusCode::BAD_REQUEST),
        ErrorCode::InvalidParameterValue
        | ErrorCode::InvalidTextRepresentation
        | ErrorCode::BadCopyFileFormat
        | ErrorCode::InvalidEncoding
        | ErrorCode::DatatypeMismatch
        | ErrorCode::NumericOutOfRange
        | ErrorCode::CardinalityViolation
        | ErrorCode::DependentObjectsStillExist
        | ErrorCode::DivisionByZero
        | ErrorCode::NotNullViolation
        | ErrorCode::ProgramLimitExceeded
        | ErrorCode::UndefinedParameter
        | ErrorCode::DatetimeOverflow => (4000, StatusCode::BAD_REQUEST),
        ErrorCode::UndefinedPreparedStatement => (4046, StatusCode::NOT_FOUND),
        ErrorCode::DuplicatePreparedStatement => (4093, StatusCode::CONFLICT),
        ErrorCode::UndefinedColumn => (4043, StatusCode::NOT_FOUND),
        ErrorCode::UndefinedTable => (4041, StatusCode::NOT_FOUND),
        ErrorCode::UndefinedSchema => (4045, StatusCode::NOT_FOUND),
        ErrorCode::UndefinedFunction | ErrorCode::UndefinedObject => (4046, StatusCode::NOT_FOUND),
        ErrorCode::DuplicateKey | ErrorCode::SerializationFailure => (4091, StatusCode::CONFLICT),
        ErrorCode::DuplicateObject => (4093, StatusCode::CONFLICT),
        ErrorCode::FeatureNotSupported => (4004, StatusCode::BAD_REQUEST),
        ErrorCode::QueryCanceled => (5030, StatusCode::INTERNAL_SERVER_ERROR),
        ErrorCode::Unavailable => (5030, StatusCode::SERVICE_UNAVAILABLE),
        ErrorCode::DataCorrupted | ErrorCode::Internal => (5000, StatusCode::INTERNAL_SERVER_ERROR),
    }
}

fn error_response(code: ErrorCode, message: String) -> Response {
    let (crate_code, status) = crate_error_code(code);
    (
        status,
        Json(json!({"error": {"message": message, "code": crate_code}})),
    )
        .into_response()
}

fn creek_error(error: &Error) -> Response {
    error_response(error.code(), error.client_message())
}

/// Reads the request body up to [`MAX_CONTENT_LENGTH`]. A body announced as larger is refused
/// from its `Content-Length` before any of it is read, so the client gets the error instead
/// of a connection closed under its upload.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    let too_large = || {
        let mut response = error_response(
            ErrorCode::ProgramLimitExceeded,
            format!("request body is larger than the {MAX_CONTENT_LENGTH} bytes allowed"),
        );
        *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        response
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|length| length > MAX_CONTENT_LENGTH as u64) {
        return Err(too_large());
    }
    use http_body_util::BodyExt;
    let mut body = http_body_util::Limited::new(body, MAX_CONTENT_LENGTH);
    let mut bytes = Vec::new();
    loop {
        // A client that stops sending its body (a slow-loris past the request head) is
        // answered and dropped instead of holding its connection.
        let frame = match tokio::time::timeout(BODY_IDLE_TIMEOUT, body.frame()).await {
            Err(_) => {
                let mut response = error_response(
                    ErrorCode::QueryCanceled,
                    format!(
                        "no request body bytes for {} s",
                        BODY_IDLE_TIMEOUT.as_secs()
                    ),
                );
                *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
                return Err(response);
            }
            Ok(None) => break,
            Ok(Some(frame)) => frame,
        };
        let frame = frame.map_err(|error| {
            if error.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                error_response(
                    ErrorCode::SyntaxError,
                    format!("cannot read the request body: {error}"),
                )
            }
        })?;
        if let Ok(data) = frame.into_data() {
            bytes.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(bytes))
}

/// How long a request body may pause between two of its pieces.
const BODY_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The parameter types of `stmt`, if any argument's meaning depends on them and the
/// statement plans; otherwise none (every argument is then read by its JSON type alone).
async fn parameter_hints<'a>(
    session: &Session,
    stmt: &str,
    mut args: impl Iterator<Item = &'a Value>,
) -> Option<crate::session::PreparedQuery> {
    if !args.any(args::needs_parameter_types) {
        return None;
    }
    session.prepare(stmt).await.ok()
}

fn scalars(
    values: &[Value],
    hints: Option<&crate::session::PreparedQuery>,
) -> Result<Vec<ScalarValue>, Error> {
    values
        .iter()
        .enumerate()
        .map(|(index, value)| {
            let hint = hints
                .and_then(|prepared| prepared.param_types.get(index))
                .and_then(Option::as_ref);
            args::json_to_scalar(value, hint)
        })
        .collect()
}

fn elapsed_ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

async fn sql(
    State(cluster): State<Arc<Cluster>>,
    Query(params): Query<SqlParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let body = match read_body(&headers, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let request: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(error) => {
            return error_response(
                ErrorCode::SyntaxError,
                format!("invalid JSON in request body: {error}"),
            )
        }
    };
    let Some(stmt) = request.get("stmt").and_then(Value::as_str) else {
        return error_response(
            ErrorCode::SyntaxError,
            "request body must have a \"stmt\" string".into(),
        );
    };
    let session = Session::with_naming(cluster, NamingRules::Crate);
    if let Some(bulk) = request.get("bulk_args") {
        return bulk_request(&session, stmt, bulk, started).await;
    }
    let args: &[Value] = match request.get("args") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(args)) => args,
        Some(_) => {
            return error_response(ErrorCode::SyntaxError, "\"args\" must be an array".into())
        }
    };
    let prepared = parameter_hints(&session, stmt, args.iter()).await;
    let values = match scalars(args, prepared.as_ref()) {
        Ok(values) => values,
        Err(error) => return creek_error(&error),
    };
    let outputs = match &prepared {
        Some(prepared) => {
            session
                .execute_statements(&prepared.statements, &values)
                .await
        }
        None => session.execute(stmt, &values).await,
    };
    let outputs = match outputs {
        Ok(outputs) => outputs,
        Err(error) => return creek_error(&error),
    };
    let Some(output) = outputs.into_iter().last() else {
        return error_response(ErrorCode::SyntaxError, "empty statement".into());
    };
    match output {
        Output::CopyIn(_) => error_response(
            ErrorCode::FeatureNotSupported,
            "COPY FROM STDIN needs the PostgreSQL protocol; over HTTP use bulk_args".into(),
        ),
        Output::Affected { count, .. } => Json(json!({
            "cols": [],
            "rows": [],
            "rowcount": count,
            "duration": elapsed_ms(started),
        }))
        .into_response(),
        Output::Rows { schema, stream } => {
            rows_response(schema, stream, params.types.is_some(), started).await
        }
    }
}

/// `bulk_args`: one multi-row INSERT for the whole request; row by row only if that fails, to
/// tell which rows did. Each row gets its own `rowcount` (-2 for a failed row).
async fn bulk_request(session: &Session, stmt: &str, bulk: &Value, started: Instant) -> Response {
    let Some(rows) = bulk.as_array() else {
        return error_response(
            ErrorCode::SyntaxError,
            "\"bulk_args\" must be an array of arrays".into(),
        );
    };
    let mut arg_rows: Vec<&[Value]> = Vec::with_capacity(rows.len());
    for row in rows {
        match row.as_array() {
            Some(values) => arg_rows.push(values),
            None => {
                return error_response(
                    ErrorCode::SyntaxError,
                    "\"bulk_args\" must be an array of arrays".into(),
                )
            }
        }
    }
    let prepared = parameter_hints(session, stmt, arg_rows.iter().flat_map(|row| row.iter())).await;
    let converted: Vec<Result<Vec<ScalarValue>, Error>> = arg_rows
        .iter()
        .map(|row| scalars(row, prepared.as_ref()))
        .collect();
    let all_converted: Option<Vec<Vec<ScalarValue>>> = converted
        .iter()
        .map(|row| row.as_ref().ok().cloned())
        .collect();
    if let Some(parsed) = &all_converted {
        match session.bulk_insert(stmt, parsed).await {
            Ok(Some(statuses)) => {
                let results: Vec<Value> = statuses
                    .iter()
                    .map(|status| match status {
                        RowStatus::Ok => json!({"rowcount": 1}),
                        // ON CONFLICT DO NOTHING skipped the row: nothing written, no failure.
                        RowStatus::Skipped => json!({"rowcount": 0}),
                        _ => json!({"rowcount": -2}),
                    })
                    .collect();
                return Json(json!({
                    "cols": [],
                    "duration": elapsed_ms(started),
                    "results": results,
                }))
                .into_response();
            }
            Ok(None) => {}
            Err(error) => {
                tracing::debug!(%error, "bulk_args as one INSERT failed; retrying row by row")
            }
        }
    }
    let mut results = Vec::with_capacity(rows.len());
    for row in converted {
        let outcome = match row {
            Ok(values) => match &prepared {
                Some(prepared) => {
                    session
                        .execute_statements(&prepared.statements, &values)
                        .await
                }
                None => session.execute(stmt, &values).await,
            },
            Err(error) => Err(error),
        };
        let result = match outcome {
            Ok(outputs) => match outputs.into_iter().last() {
                Some(Output::Affected { count, .. }) => json!({"rowcount": count}),
                _ => json!({"rowcount": -2}),
            },
            Err(error) => {
                let (code, _) = crate_error_code(error.code());
                json!({"rowcount": -2, "error": {"code": code, "message": error.client_message()}})
            }
        };
        results.push(result);
    }
    Json(json!({
        "cols": [],
        "duration": elapsed_ms(started),
        "results": results,
    }))
    .into_response()
}

/// The start of a result document: `{"cols":[...],["col_types":[...],]"rows":[`.
fn rows_prefix(schema: &SchemaRef, with_types: bool) -> Vec<u8> {
    let cols: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
    let mut out = br#"{"cols":"#.to_vec();
    serde_json::to_writer(&mut out, &cols).expect("writing to a Vec cannot fail");
    if with_types {
        let types: Vec<Value> = schema
            .fields()
            .iter()
            .map(|f| rows::crate_field_type_id(f))
            .collect();
        out.extend_from_slice(br#","col_types":"#);
        serde_json::to_writer(&mut out, &types).expect("writing to a Vec cannot fail");
    }
    out.extend_from_slice(br#","rows":["#);
    out
}

fn rows_suffix(count: usize, started: Instant) -> Vec<u8> {
    format!(
        r#"],"rowcount":{count},"duration":{}}}"#,
        elapsed_ms(started)
    )
    .into_bytes()
}

/// Encodes a result (see the module documentation for when it is buffered or streamed).
async fn rows_response(
    schema: SchemaRef,
    mut stream: SendableRecordBatchStream,
    with_types: bool,
    started: Instant,
) -> Response {
    let mut out = rows_prefix(&schema, with_types);
    let mut first_row = true;
    let mut count = 0usize;
    while out.len() < BUFFERED_RESPONSE_BYTES {
        match stream.next().await {
            Some(Ok(batch)) => {
                count += batch.num_rows();
                rows::write_rows(&mut out, &batch, &mut first_row);
            }
            Some(Err(error)) => return creek_error(&Error::DataFusion(error)),
            None => {
                out.extend_from_slice(&rows_suffix(count, started));
                return json_bytes_response(Body::from(out));
            }
        }
    }
    let head = futures::stream::once(async move { Ok::<_, Error>(Bytes::from(out)) });
    let rest = futures::stream::unfold(Some((stream, first_row, count)), move |state| async move {
        let (mut stream, mut first_row, mut count) = state?;
        match stream.next().await {
            Some(Ok(batch)) => {
                count += batch.num_rows();
                let mut chunk = Vec::new();
                rows::write_rows(&mut chunk, &batch, &mut first_row);
                Some((Ok(Bytes::from(chunk)), Some((stream, first_row, count))))
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "query failed after its result started streaming; cutting the response off");
                Some((Err(Error::DataFusion(error)), None))
            }
            None => Some((Ok(Bytes::from(rows_suffix(count, started))), None)),
        }
    });
    json_bytes_response(Body::from_stream(head.chain(rest)))
}

fn json_bytes_response(body: Body) -> Response {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
