//! Where query execution runs: a tokio runtime of its own, apart from the one serving the
//! network, Raft and heartbeats. A CPU-heavy plan (a large join, a big aggregate) then competes
//! for the cores through the OS scheduler instead of starving the control plane: heartbeats,
//! cancel requests and other sessions stay responsive while it runs.
//!
//! Both roles execute DataFusion plans, so the handoff lives here, once.

use std::sync::{Arc, OnceLock};

use datafusion::error::Result as DfResult;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use futures::StreamExt;

/// The stack of every thread that plans or runs a query (the query runtime's and the process's
/// main runtime's): expressions are trees that planning and evaluation walk recursively, and
/// 2 MiB (tokio's default) overflowed on chains of a few hundred operators in a debug build,
/// which aborts the process. `sql::parse` bounds the chains; this leaves room for the bound.
/// The memory is reserved, not used, until a deep statement needs it.
pub const THREAD_STACK_BYTES: usize = 64 << 20;

/// Batches buffered between the query runtime and the consumer.
const BUFFERED_BATCHES: usize = 2;

fn query_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
            .thread_name("creek-query")
            .thread_stack_size(THREAD_STACK_BYTES)
            .enable_all()
            .build()
            .expect("the query runtime starts")
    })
}

/// Executes `partition` of `plan` (or, for `None`, all partitions merged) on the query
/// runtime and returns a stream the caller can poll from any runtime. Dropping the returned
/// stream stops the execution.
pub fn execute_stream(
    plan: Arc<dyn ExecutionPlan>,
    partition: Option<usize>,
    context: Arc<TaskContext>,
) -> DfResult<SendableRecordBatchStream> {
    let runtime = query_runtime();
    // Operators spawn their tasks on the runtime current at `execute`: make it this one.
    let stream = {
        let _entered = runtime.enter();
        match partition {
            Some(partition) => plan.execute(partition, context)?,
            None => datafusion::physical_plan::execute_stream(plan, context)?,
        }
    };
    let schema = stream.schema();
    let (sender, receiver) = tokio::sync::mpsc::channel(BUFFERED_BATCHES);
    runtime.spawn(async move {
        let mut stream = stream;
        loop {
            tokio::select! {
                _ = sender.closed() => break,
                next = stream.next() => match next {
                    Some(batch) => {
                        if sender.send(batch).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
            }
        }
    });
    let batches = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|batch| (batch, receiver))
    });
    Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
}
