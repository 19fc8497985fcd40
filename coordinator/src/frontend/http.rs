//! CrateDB-compatible HTTP endpoint: `GET /` and `POST /_sql` with `args` or `bulk_args`.
//! Errors answer `{"error": {"message", "code"}}` with CrateDB's codes and an HTTP status.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use creek_common::ErrorCode;
use datafusion::arrow::json::ArrayWriter;
use datafusion::common::ScalarValue;
use futures::TryStreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::cluster::Cluster;
use crate::error::Error;
use crate::session::Session;
use crate::sql::Output;
use creek_proto::v1::RowStatus;

/// The largest request body accepted: CrateDB's default `http.max_content_length`, so bulk
/// requests sized for CrateDB also fit here. axum's own default (2 MiB) is far too small for
/// a `bulk_args` batch of wide rows.
pub const MAX_CONTENT_LENGTH: usize = 100 * 1024 * 1024;

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
) -> std::io::Result<()> {
    axum::serve(listener, router(cluster)).await
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
        | ErrorCode::InvalidEncoding
        | ErrorCode::DatatypeMismatch
        | ErrorCode::NumericOutOfRange
        | ErrorCode::CardinalityViolation
        | ErrorCode::DependentObjectsStillExist
        | ErrorCode::DivisionByZero
        | ErrorCode::NotNullViolation
        | ErrorCode::ProgramLimitExceeded => (4000, StatusCode::BAD_REQUEST),
        ErrorCode::UndefinedColumn => (4043, StatusCode::NOT_FOUND),
        ErrorCode::UndefinedTable => (4041, StatusCode::NOT_FOUND),
        ErrorCode::UndefinedSchema => (4045, StatusCode::NOT_FOUND),
        ErrorCode::UndefinedFunction | ErrorCode::UndefinedObject => (4046, StatusCode::NOT_FOUND),
        ErrorCode::DuplicateKey => (4091, StatusCode::CONFLICT),
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

/// Converts a JSON argument to a SQL parameter value.
fn json_to_scalar(value: &Value) -> ScalarValue {
    match value {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => ScalarValue::Int64(Some(i)),
            None => ScalarValue::Float64(n.as_f64()),
        },
        Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
        other => ScalarValue::Utf8(Some(other.to_string())),
    }
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
    axum::body::to_bytes(body, MAX_CONTENT_LENGTH)
        .await
        .map_err(|error| {
            let length_limit = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if length_limit {
                too_large()
            } else {
                error_response(
                    ErrorCode::SyntaxError,
                    format!("cannot read the request body: {error}"),
                )
            }
        })
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
    let session = Session::new(cluster);
    if let Some(bulk) = request.get("bulk_args") {
        let Some(rows) = bulk.as_array() else {
            return error_response(
                ErrorCode::SyntaxError,
                "\"bulk_args\" must be an array of arrays".into(),
            );
        };
        let parsed: Vec<Vec<ScalarValue>> = rows
            .iter()
            .map(|row| {
                row.as_array()
                    .map(|a| a.iter().map(json_to_scalar).collect())
                    .unwrap_or_default()
            })
            .collect();
        // One multi-row INSERT for the whole request; row by row only if that fails, to tell
        // which rows did.
        let batched = session.bulk_insert(stmt, &parsed).await;
        if let Err(error) = &batched {
            tracing::debug!(%error, "bulk_args as one INSERT failed; retrying row by row");
        }
        if let Ok(Some(statuses)) = batched {
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
                "duration": started.elapsed().as_secs_f64() * 1000.0,
                "results": results,
            }))
            .into_response();
        }
        let mut results = Vec::with_capacity(rows.len());
        for row in rows {
            let args: Vec<ScalarValue> = row
                .as_array()
                .map(|a| a.iter().map(json_to_scalar).collect())
                .unwrap_or_default();
            let count = match session.execute(stmt, &args).await {
                Ok(outputs) => match outputs.into_iter().last() {
                    Some(Output::Affected { count, .. }) => count as i64,
                    _ => -2,
                },
                Err(_) => -2,
            };
            results.push(json!({"rowcount": count}));
        }
        return Json(json!({
            "cols": [],
            "duration": started.elapsed().as_secs_f64() * 1000.0,
            "results": results,
        }))
        .into_response();
    }
    let args: Vec<ScalarValue> = match request.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(args)) => args.iter().map(json_to_scalar).collect(),
        Some(_) => {
            return error_response(ErrorCode::SyntaxError, "\"args\" must be an array".into())
        }
    };
    let outputs = match session.execute(stmt, &args).await {
        Ok(outputs) => outputs,
        Err(error) => return creek_error(&error),
    };
    let Some(output) = outputs.into_iter().last() else {
        return error_response(ErrorCode::SyntaxError, "empty statement".into());
    };
    let with_types = params.types.is_some();
    match output {
        Output::CopyIn(_) => error_response(
            ErrorCode::FeatureNotSupported,
            "COPY FROM STDIN needs the PostgreSQL protocol; over HTTP use bulk_args".into(),
        ),
        Output::Affected { count, .. } => Json(json!({
            "cols": [],
            "rows": [],
            "rowcount": count,
            "duration": started.elapsed().as_secs_f64() * 1000.0,
        }))
        .into_response(),
        Output::Rows { schema, stream } => {
            let batches: Vec<_> = match stream.try_collect().await {
                Ok(batches) => batches,
                Err(error) => return creek_error(&Error::DataFusion(error)),
            };
            let cols: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
            let mut rows: Vec<Value> = Vec::new();
            for batch in &batches {
                let batch = match crate::frontend::http_values::epoch_millis(batch) {
                    Ok(batch) => batch,
                    Err(error) => return error_response(ErrorCode::Internal, error.to_string()),
                };
                let mut writer = ArrayWriter::new(Vec::new());
                if let Err(error) = writer.write(&batch).and_then(|_| writer.finish()) {
                    return error_response(ErrorCode::Internal, error.to_string());
                }
                let objects: Vec<serde_json::Map<String, Value>> =
                    serde_json::from_slice(&writer.into_inner()).unwrap_or_default();
                for object in objects {
                    rows.push(Value::Array(
                        cols.iter()
                            .map(|c| object.get(c).cloned().unwrap_or(Value::Null))
                            .collect(),
                    ));
                }
            }
            let mut body = json!({
                "cols": cols,
                "rows": rows,
                "rowcount": rows.len(),
                "duration": started.elapsed().as_secs_f64() * 1000.0,
            });
            if with_types {
                body["col_types"] = Value::Array(
                    schema
                        .fields()
                        .iter()
                        .map(|f| json!(crate::frontend::http_values::crate_type_id(f.data_type())))
                        .collect(),
                );
            }
            Json(body).into_response()
        }
    }
}
