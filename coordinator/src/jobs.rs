//! The statements running on this coordinator, for `sys.jobs`: each statement registers
//! itself when it starts and is removed when its [`JobGuard`] drops (for a query, when its
//! rows stream is dropped, i.e. after the client has read them or gave up). A long statement
//! (COPY) reports its progress through the guard's [`JobProgress`].
//!
//! Bookkeeping, plus each job's cancellation token: `KILL` cancels the token here, and the
//! statement itself (`Session`) watches it and stops. It runs nothing, and knows nothing of
//! other coordinators (`Cluster::cluster_jobs` and `Cluster::kill_jobs` ask them over the
//! wire).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Longest statement text kept per job: a multi-megabyte INSERT is shown by its beginning.
const MAX_STATEMENT_CHARS: usize = 4096;

/// Ended jobs kept for `sys.jobs_log` per coordinator, newest last (CrateDB keeps 10,000).
pub const JOBS_LOG_SIZE: usize = 10_000;

/// One running statement, as `sys.jobs` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    pub id: String,
    /// The coordinator running it.
    pub node: String,
    /// Microseconds since the Unix epoch.
    pub started_micros: i64,
    pub stmt: String,
    /// Rows and bytes done so far, for statements that report progress (COPY).
    pub rows_done: Option<u64>,
    pub bytes_done: Option<u64>,
    /// For an ended job (`sys.jobs_log`): when it ended, in microseconds since the Unix
    /// epoch, and its error, if it failed.
    #[serde(default)]
    pub ended_micros: Option<i64>,
    #[serde(default)]
    pub error: Option<String>,
}

/// Progress a long statement reports as it goes.
#[derive(Debug, Default)]
pub struct JobProgress {
    /// Whether the statement reports progress at all (else `sys.jobs` shows NULL).
    reported: std::sync::atomic::AtomicBool,
    rows: AtomicU64,
    bytes: AtomicU64,
}

impl JobProgress {
    /// Adds rows and bytes done.
    pub fn add(&self, rows: u64, bytes: u64) {
        self.reported.store(true, Ordering::Relaxed);
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn figures(&self) -> (Option<u64>, Option<u64>) {
        if !self.reported.load(Ordering::Relaxed) {
            return (None, None);
        }
        (
            Some(self.rows.load(Ordering::Relaxed)),
            Some(self.bytes.load(Ordering::Relaxed)),
        )
    }
}

struct Job {
    started: SystemTime,
    /// The first error the statement reported, for the log.
    error: Option<String>,
    stmt: String,
    progress: Arc<JobProgress>,
    killed: CancellationToken,
    /// Whether the statement stops when killed: only reads do, since a write stopped halfway
    /// cannot be undone.
    cancellable: bool,
}

/// The registry of this coordinator's running statements.
pub struct Jobs {
    node: String,
    running: Mutex<HashMap<Uuid, Job>>,
    /// The last [`JOBS_LOG_SIZE`] ended jobs, oldest first.
    log: Mutex<std::collections::VecDeque<JobInfo>>,
}

impl Jobs {
    /// An empty registry for the coordinator `node`.
    pub fn new(node: impl Into<String>) -> Arc<Jobs> {
        Arc::new(Jobs {
            node: node.into(),
            running: Mutex::new(HashMap::new()),
            log: Mutex::default(),
        })
    }

    /// Registers a statement that runs to its end; it stays listed until the returned guard
    /// drops, and `KILL` passes it by.
    pub fn start(self: &Arc<Self>, stmt: &str) -> JobGuard {
        self.register(stmt, false)
    }

    /// Registers a statement that stops when killed (a query).
    pub fn start_cancellable(self: &Arc<Self>, stmt: &str) -> JobGuard {
        self.register(stmt, true)
    }

    fn register(self: &Arc<Self>, stmt: &str, cancellable: bool) -> JobGuard {
        let id = Uuid::new_v4();
        let progress = Arc::new(JobProgress::default());
        let killed = CancellationToken::new();
        let stmt = match stmt.char_indices().nth(MAX_STATEMENT_CHARS) {
            Some((end, _)) => format!("{}...", &stmt[..end]),
            None => stmt.to_string(),
        };
        self.running.lock().insert(
            id,
            Job {
                started: SystemTime::now(),
                error: None,
                stmt,
                progress: progress.clone(),
                killed: killed.clone(),
                cancellable,
            },
        );
        JobGuard {
            jobs: self.clone(),
            id,
            progress,
            killed,
        }
    }

    fn info(&self, id: &Uuid, job: &Job) -> JobInfo {
        let (rows_done, bytes_done) = job.progress.figures();
        JobInfo {
            id: id.to_string(),
            node: self.node.clone(),
            started_micros: micros(job.started),
            stmt: job.stmt.clone(),
            rows_done,
            bytes_done,
            ended_micros: None,
            error: None,
        }
    }

    /// The ended jobs kept, oldest first.
    pub fn log(&self) -> Vec<JobInfo> {
        self.log.lock().iter().cloned().collect()
    }

    /// Moves job `id` from the running ones to the log.
    fn end(&self, id: &Uuid) {
        let Some(job) = self.running.lock().remove(id) else {
            return;
        };
        let mut info = self.info(id, &job);
        info.ended_micros = Some(micros(SystemTime::now()));
        info.error = job.error;
        let mut log = self.log.lock();
        if log.len() == JOBS_LOG_SIZE {
            log.pop_front();
        }
        log.push_back(info);
    }

    /// Cancels job `id` if it runs here and stops when killed; whether it did.
    pub fn kill(&self, id: &str) -> bool {
        let Ok(id) = Uuid::parse_str(id) else {
            return false;
        };
        match self.running.lock().get(&id) {
            Some(job) if job.cancellable && !job.killed.is_cancelled() => {
                job.killed.cancel();
                true
            }
            _ => false,
        }
    }

    /// Cancels every job here that stops when killed but `except` (the KILL ALL statement's
    /// own); how many.
    pub fn kill_all(&self, except: &str) -> u64 {
        let mut killed = 0;
        for (id, job) in self.running.lock().iter() {
            if job.cancellable && id.to_string() != except && !job.killed.is_cancelled() {
                job.killed.cancel();
                killed += 1;
            }
        }
        killed
    }

    /// The statements running now, oldest first.
    pub fn list(&self) -> Vec<JobInfo> {
        let mut jobs: Vec<JobInfo> = self
            .running
            .lock()
            .iter()
            .map(|(id, job)| self.info(id, job))
            .collect();
        jobs.sort_by(|a, b| (a.started_micros, &a.id).cmp(&(b.started_micros, &b.id)));
        jobs
    }
}

/// Keeps a statement listed in `sys.jobs` while it lives.
pub struct JobGuard {
    jobs: Arc<Jobs>,
    id: Uuid,
    progress: Arc<JobProgress>,
    killed: CancellationToken,
}

impl JobGuard {
    /// The job's id, as `sys.jobs` shows it.
    pub fn id(&self) -> String {
        self.id.to_string()
    }

    /// Cancelled when the job is killed.
    pub fn killed(&self) -> &CancellationToken {
        &self.killed
    }

    /// Where the statement reports its progress.
    pub fn progress(&self) -> &Arc<JobProgress> {
        &self.progress
    }
}

impl JobGuard {
    /// Records that the statement failed with `message` (the first error is kept).
    pub fn failed(&self, message: &str) {
        if let Some(job) = self.jobs.running.lock().get_mut(&self.id) {
            job.error.get_or_insert_with(|| message.to_string());
        }
    }
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        self.jobs.end(&self.id);
    }
}

fn micros(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

impl std::fmt::Debug for JobGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JobGuard({})", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_listed_until_its_guard_drops() {
        let jobs = Jobs::new("c1");
        let first = jobs.start("SELECT 1");
        let second = jobs.start(&"x".repeat(MAX_STATEMENT_CHARS + 10));
        second.progress().add(10, 100);
        second.progress().add(5, 50);
        let listed = jobs.list();
        assert_eq!(listed.len(), 2);
        let copy = listed.iter().find(|j| j.stmt.starts_with('x')).unwrap();
        assert_eq!((copy.rows_done, copy.bytes_done), (Some(15), Some(150)));
        assert_eq!(copy.stmt.chars().count(), MAX_STATEMENT_CHARS + 3);
        let select = listed.iter().find(|j| j.stmt == "SELECT 1").unwrap();
        assert_eq!((select.rows_done, select.bytes_done), (None, None));
        assert_eq!(select.node, "c1");
        drop(first);
        assert_eq!(jobs.list().len(), 1);
        drop(second);
        assert!(jobs.list().is_empty());
    }

    #[test]
    fn ended_jobs_are_logged_with_their_error_and_the_log_is_bounded() {
        let jobs = Jobs::new("c1");
        let failing = jobs.start("SELECT 1/0");
        failing.failed("division by zero");
        failing.failed("a later error");
        drop(failing);
        drop(jobs.start("SELECT 2"));
        let log = jobs.log();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].stmt, "SELECT 1/0");
        assert_eq!(log[0].error.as_deref(), Some("division by zero"));
        assert!(log[0].ended_micros.unwrap() >= log[0].started_micros);
        assert_eq!(log[1].error, None);
        for _ in 0..JOBS_LOG_SIZE {
            drop(jobs.start("SELECT 3"));
        }
        let log = jobs.log();
        assert_eq!(log.len(), JOBS_LOG_SIZE);
        assert!(log.iter().all(|j| j.stmt == "SELECT 3"));
    }
}
