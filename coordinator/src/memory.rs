//! Memory limits of the queries a coordinator runs: each session gets a pool of its own,
//! capped at the per-query limit (a session runs one statement at a time; HTTP and Flight SQL
//! make a session per request), that draws on one pool for the whole node. DataFusion's operators
//! that hold rows (hash aggregates, joins, sorts) reserve what they hold from it; a
//! reservation past either limit fails that query with a clear error (54000), or makes the
//! operator spill to disk where it can, and the node and its other queries go on.
//!
//! Only the accounting lives here; which queries run under it is `Session`'s business.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryLimit, MemoryPool, MemoryReservation,
};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};

/// The limits, and the node-wide pool every query draws on.
#[derive(Debug, Clone)]
pub struct QueryMemory {
    per_query: usize,
    node_limit: usize,
    node: Arc<GreedyMemoryPool>,
}

impl QueryMemory {
    /// Limits of `per_query` bytes per query and `node` bytes for all queries together.
    pub fn new(per_query: usize, node: usize) -> QueryMemory {
        QueryMemory {
            per_query: per_query.min(node),
            node_limit: node,
            node: Arc::new(GreedyMemoryPool::new(node)),
        }
    }

    /// A runtime with a fresh pool, for one session's queries.
    pub fn session_runtime(&self) -> Arc<RuntimeEnv> {
        let pool = Arc::new(QueryPool {
            limit: self.per_query,
            node_limit: self.node_limit,
            used: AtomicUsize::new(0),
            node: self.node.clone(),
        });
        Arc::new(
            RuntimeEnvBuilder::new()
                .with_memory_pool(pool)
                .build()
                .expect("a runtime with a memory pool and default disk manager builds"),
        )
    }

    /// Bytes all running queries hold now.
    pub fn node_reserved(&self) -> usize {
        self.node.reserved()
    }
}

fn mib(bytes: usize) -> String {
    format!("{} MiB", bytes >> 20)
}

/// One query's pool.
#[derive(Debug)]
struct QueryPool {
    limit: usize,
    node_limit: usize,
    used: AtomicUsize,
    node: Arc<GreedyMemoryPool>,
}

impl fmt::Display for QueryPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "query pool ({} of {})", self.reserved(), self.limit)
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "creek_query"
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.used.fetch_add(additional, Ordering::Relaxed);
        self.node.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.used.fetch_sub(shrink, Ordering::Relaxed);
        self.node.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(additional)
                    .filter(|total| *total <= self.limit)
            })
            .map_err(|used| {
                DataFusionError::ResourcesExhausted(format!(
                    "query needs more than its memory limit of {} (holds {}, asked for {} more; \
                     see --query-memory-limit)",
                    mib(self.limit),
                    mib(used),
                    mib(additional)
                ))
            })?;
        if self.node.try_grow(reservation, additional).is_err() {
            self.used.fetch_sub(additional, Ordering::Relaxed);
            return Err(DataFusionError::ResourcesExhausted(format!(
                "the queries running on this coordinator hold its memory limit of {} (see \
                 --memory-limit); this query asked for {} more",
                mib(self.node_limit),
                mib(additional)
            )));
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::MemoryConsumer;

    #[test]
    fn a_query_is_held_to_its_limit_and_the_node_to_its_own() {
        let memory = QueryMemory::new(100, 150);
        let (first, second) = (memory.session_runtime(), memory.session_runtime());
        let a = MemoryConsumer::new("a").register(&first.memory_pool);
        let b = MemoryConsumer::new("b").register(&second.memory_pool);
        a.try_grow(100).unwrap();
        let over = a.try_grow(1).unwrap_err().to_string();
        assert!(over.contains("--query-memory-limit"), "{over}");
        // The node has 50 left: the second query gets them and no more.
        b.try_grow(50).unwrap();
        let node = b.try_grow(1).unwrap_err().to_string();
        assert!(node.contains("--memory-limit"), "{node}");
        assert_eq!(memory.node_reserved(), 150);
        drop(a);
        assert_eq!(memory.node_reserved(), 50);
        b.try_grow(50).unwrap();
        assert!(b
            .try_grow(1)
            .unwrap_err()
            .to_string()
            .contains("--query-memory-limit"));
        assert_eq!(second.memory_pool.reserved(), 100);
    }
}
