//! The COPY sub-protocol: `COPY ... FROM STDIN` hands the connection to a [`CopyLoader`] kept
//! in the connection's session extensions until CopyDone or CopyFail.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::copy::CopyHandler;
use pgwire::api::results::{CopyResponse, Response, Tag};
use pgwire::api::ClientInfo;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::PgWireBackendMessage;

use super::error::to_pg_error;
use super::PgHandler;
use crate::cluster::{Cluster, SessionWrites};
use crate::sql::copy::{CopyFromStdin, CopyLoader};

/// The COPY in progress on a connection.
struct CopyState(tokio::sync::Mutex<Option<CopyLoader>>);

/// Starts a COPY on the connection and returns the CopyInResponse to send.
pub fn start_copy<C: ClientInfo>(
    client: &C,
    cluster: &Arc<Cluster>,
    session_writes: Arc<SessionWrites>,
    copy: CopyFromStdin,
) -> Response {
    let loader = CopyLoader::new(cluster.clone(), session_writes, copy);
    let columns = loader.column_count();
    client
        .session_extensions()
        .insert(CopyState(tokio::sync::Mutex::new(Some(loader))));
    Response::CopyIn(CopyResponse::new(0, columns, futures::stream::empty()))
}

async fn take_copy<C: ClientInfo>(client: &C) -> Option<CopyLoader> {
    let state = client.session_extensions().get::<CopyState>()?;
    let loader = state.0.lock().await.take();
    loader
}

#[async_trait]
impl CopyHandler for PgHandler {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(state) = client.session_extensions().get::<CopyState>() {
            if let Some(loader) = state.0.lock().await.as_mut() {
                loader.push(&copy_data.data).await;
            }
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(loader) = take_copy(client).await else {
            return Err(PgWireError::ApiError(
                "COPY data without a COPY statement".into(),
            ));
        };
        let rows = loader.finish().await.map_err(|e| to_pg_error(&e))?;
        client
            .send(PgWireBackendMessage::CommandComplete(
                Tag::new("COPY").with_rows(rows as usize).into(),
            ))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(loader) = take_copy(client).await {
            loader.abandon().await;
        }
        to_pg_error(&crate::error::Error::new(
            creek_common::ErrorCode::QueryCanceled,
            format!("COPY from stdin failed: {}", fail.message),
        ))
    }
}
