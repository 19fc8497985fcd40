//! Stopping a data node on SIGTERM without making its shards unavailable, as the cluster
//! settings say (`cluster.graceful_stop.*`, CrateDB's names):
//!
//! - `min_availability = 'primaries'` (default): the leader hands this node's primaries to
//!   in-sync replicas elsewhere (or copies them there first), and the node stops once it
//!   holds no primary; its replicas go with it and are rebuilt elsewhere (YELLOW meanwhile).
//! - `'full'`: every copy moves off first, as `ALTER CLUSTER DECOMMISSION`.
//! - `'none'`: the node stops at once.
//!
//! `timeout` (default `2h`) bounds the wait; when it passes, `force = true` stops the node
//! anyway and `false` (default) calls the stop off and keeps serving. A second signal stops
//! at once. This module decides when to stop; it never touches shards itself.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use creek_common::state::{
    ClusterState, NodeRole, GRACEFUL_STOP_FORCE, GRACEFUL_STOP_MIN_AVAILABILITY,
    GRACEFUL_STOP_TIMEOUT,
};
use creek_common::NodeId;
use creek_proto::v1::GracefulStopRequest;

use crate::node::DataNode;

/// How long a stop waits for a leader to take its request (an election takes seconds).
const NO_LEADER_PATIENCE: Duration = Duration::from_secs(5);

/// What the process should do after a graceful stop ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit.
    Stop,
    /// The stop timed out without `force`: keep serving.
    KeepRunning,
}

/// What must stay available before the node stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Availability {
    None,
    Primaries,
    Full,
}

/// The graceful-stop settings of `state`.
struct Settings {
    availability: Availability,
    timeout: Duration,
    force: bool,
}

fn settings(state: &ClusterState) -> Settings {
    let get = |key: &str| {
        state
            .settings
            .get(key)
            .map(|v| v.trim().trim_matches('\'').to_ascii_lowercase())
    };
    Settings {
        availability: match get(GRACEFUL_STOP_MIN_AVAILABILITY).as_deref() {
            Some("none") => Availability::None,
            Some("full") => Availability::Full,
            _ => Availability::Primaries,
        },
        timeout: get(GRACEFUL_STOP_TIMEOUT)
            .and_then(|v| creek_common::schema::parse_duration_ms(&v))
            .filter(|ms| *ms >= 0)
            .map_or(Duration::from_secs(2 * 3600), |ms| {
                Duration::from_millis(ms as u64)
            }),
        force: get(GRACEFUL_STOP_FORCE).is_some_and(|v| v == "true"),
    }
}

/// Whether nothing that `availability` protects is left on the node, or no other node could
/// take it (every data node stopping at once must not wait for each other).
fn done(node: &DataNode, availability: Availability) -> bool {
    let me = NodeId(node.node_id().to_string());
    let state = node.state();
    let held = state.shards_of_node(&me);
    let heir_exists = state.nodes.values().any(|n| {
        n.id != me
            && n.role == NodeRole::Data
            && n.alive
            && n.stopping.is_none()
            && !n.decommissioned
    });
    if !heir_exists {
        return true;
    }
    match availability {
        Availability::None => true,
        Availability::Full => held.is_empty() && node.recoveries.lock().is_empty(),
        Availability::Primaries => held.iter().all(|(table, shards)| {
            shards.iter().all(|shard| {
                state
                    .shard_routing(table.id, *shard)
                    .and_then(|routing| routing.copy_on(&me))
                    .is_none_or(|copy| !copy.primary)
            })
        }),
    }
}

/// Runs the graceful stop the settings ask for; `interrupted` resolves on a second signal.
pub async fn run(node: &Arc<DataNode>, interrupted: impl Future<Output = ()>) -> Outcome {
    let settings = settings(&node.state());
    tokio::pin!(interrupted);
    if done(node, settings.availability) {
        return Outcome::Stop;
    }
    let full = settings.availability == Availability::Full;
    tracing::info!(
        availability = ?settings.availability, timeout = ?settings.timeout,
        force = settings.force, "stopping gracefully (a second signal stops at once)"
    );
    let deadline = Instant::now() + settings.timeout;
    let request = GracefulStopRequest {
        node_id: node.node_id().to_string(),
        full,
        cancel: false,
        forwarded: false,
    };
    let cluster = node.cluster_client();
    let mut asked = false;
    let started = Instant::now();
    loop {
        if !asked {
            let answer = tokio::select! {
                answer = cluster.graceful_stop(request.clone()) => answer,
                _ = &mut interrupted => {
                    tracing::warn!("a second signal: stopping before the graceful stop completed");
                    return Outcome::Stop;
                }
            };
            match answer {
                Ok(()) => asked = true,
                // Without a leader nothing can move: waiting would only delay the stop.
                Err(status) if started.elapsed() >= NO_LEADER_PATIENCE => {
                    tracing::warn!(%status, "no leader to move copies off: stopping");
                    return Outcome::Stop;
                }
                Err(status) => tracing::warn!(%status, "asking the leader to move copies off"),
            }
        }
        if asked && done(node, settings.availability) {
            tracing::info!("graceful stop complete");
            return Outcome::Stop;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = &mut interrupted => {
                tracing::warn!("a second signal: stopping before the graceful stop completed");
                return Outcome::Stop;
            }
        }
    }
    if settings.force {
        tracing::warn!("the graceful stop timed out; stopping anyway (force = true)");
        return Outcome::Stop;
    }
    tracing::error!(
        "the graceful stop timed out; the node keeps running (cluster.graceful_stop.force = false)"
    );
    let cancel = GracefulStopRequest {
        cancel: true,
        ..request
    };
    // Until the leader has taken it, the node would stay out of every allocation.
    loop {
        let answer = tokio::select! {
            answer = cluster.graceful_stop(cancel.clone()) => answer,
            _ = &mut interrupted => return Outcome::Stop,
        };
        match answer {
            Ok(()) => return Outcome::KeepRunning,
            Err(status) => {
                tracing::error!(%status, "calling the graceful stop off failed; retrying")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = &mut interrupted => return Outcome::Stop,
        }
    }
}
