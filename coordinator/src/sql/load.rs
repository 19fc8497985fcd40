//! Bulk loading: writes batches of a table's rows through the INSERT path (conformed to the
//! table's types, NOT NULL and duplicate keys checked), one write in flight while the caller
//! prepares the next batch, so the network, the coordinator's conversion and the data nodes'
//! indexing overlap. COPY FROM STDIN (rows parsed from text) and Flight SQL ingest (Arrow
//! batches) both load through here; neither protocol's framing is seen here.

use std::sync::Arc;

use creek_common::error::ErrorCode;
use creek_common::schema::TableSchema;
use creek_proto::v1::{RowStatus, WriteMode};
use datafusion::arrow::record_batch::RecordBatch;

use super::dml::{conform_batch, write_batch};
use crate::cluster::{Cluster, SessionWrites, Visibility};
use crate::error::{Error, Result};
use crate::jobs::JobGuard;

/// Writes batches into one table.
pub struct BatchLoader {
    cluster: Arc<Cluster>,
    /// The session loading: it sees the rows written even if the load fails later.
    session_writes: Arc<SessionWrites>,
    table: TableSchema,
    /// The statement's entry in `sys.jobs`, which counts the rows written.
    job: Option<Arc<JobGuard>>,
    written: u64,
    in_flight: Option<tokio::task::JoinHandle<Result<Vec<RowStatus>>>>,
}

impl BatchLoader {
    /// Creates a loader into `table`.
    pub fn new(
        cluster: Arc<Cluster>,
        session_writes: Arc<SessionWrites>,
        table: TableSchema,
        job: Option<Arc<JobGuard>>,
    ) -> BatchLoader {
        BatchLoader {
            cluster,
            session_writes,
            table,
            job,
            written: 0,
            in_flight: None,
        }
    }

    /// The table as the loader knows it (widened by the objects' new keys).
    pub fn table(&self) -> &TableSchema {
        &self.table
    }

    /// Rows written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Converts `batch` (columns named as the table's, in any order, any subset) to the
    /// table's types and starts writing it once the previous write has ended. A failure of
    /// the previous write is returned here.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        // New keys of dynamic objects join the table before its rows are converted.
        if let Some(widened) =
            super::dml::objects::ensure_object_keys(&self.cluster, &self.table, batch).await?
        {
            self.table = widened;
        }
        let batch = conform_batch(&self.table, batch)?;
        self.settle().await?;
        let cluster = self.cluster.clone();
        let table = self.table.clone();
        let session = self.session_writes.clone();
        self.in_flight = Some(tokio::spawn(async move {
            let visibility = Visibility {
                session: &session,
                refresh: false,
            };
            let (statuses, _) =
                write_batch(&cluster, &table, &batch, WriteMode::Insert, visibility).await?;
            Ok(statuses)
        }));
        Ok(())
    }

    /// Waits for the last write and makes the rows visible to every session's next query, as
    /// users of PostgreSQL expect of a bulk load: one refresh per load, not per batch.
    /// Returns the rows written.
    pub async fn finish(mut self) -> Result<u64> {
        self.settle().await?;
        self.cluster.refresh_table(&self.table).await?;
        Ok(self.written)
    }

    /// Gives the load up: returns once the write in flight, if any, has ended, so that no
    /// write of it is still running when the client is answered. Rows already written stay,
    /// as for a multi-row INSERT that fails part way.
    pub async fn abandon(mut self) {
        if let Some(write) = self.in_flight.take() {
            let _ = write.await;
        }
    }

    /// Waits for the write in flight and counts its rows; a duplicate key fails the load.
    async fn settle(&mut self) -> Result<()> {
        let Some(write) = self.in_flight.take() else {
            return Ok(());
        };
        let statuses = write.await.map_err(|e| {
            Error::new(
                ErrorCode::Internal,
                format!("a bulk write task failed: {e}"),
            )
        })??;
        let duplicates = statuses
            .iter()
            .filter(|s| **s == RowStatus::Duplicate)
            .count();
        let ok = statuses.iter().filter(|s| **s == RowStatus::Ok).count() as u64;
        self.written += ok;
        if let Some(job) = &self.job {
            job.progress().add(ok, 0);
        }
        if duplicates > 0 {
            return Err(Error::new(
                ErrorCode::DuplicateKey,
                format!(
                    "duplicate key value violates unique constraint \"{}_pkey\" ({duplicates} row(s) rejected, {} written)",
                    self.table.name, self.written
                ),
            ));
        }
        Ok(())
    }
}
