//! How a data node talks to the coordinators outside of membership: reporting a shard copy
//! that failed or finished recovering, and its own graceful stop, answered once the leader
//! has committed the change.
//! It tries the leader it last heard of first, then every `--join` address.

use std::collections::HashMap;
use std::time::Duration;

use creek_proto::cluster_auth::SignedChannel;
use creek_proto::v1::cluster_service_client::ClusterServiceClient;
use creek_proto::v1::{GracefulStopRequest, ShardCopyEventRequest};
use parking_lot::RwLock;
use tonic::Status;

/// How long one report may take (a commit and the publishing of the new state).
const REPORT_TIMEOUT: Duration = Duration::from_secs(20);

/// The coordinators a data node reports to.
#[derive(Default)]
pub struct ClusterClient {
    join: RwLock<Vec<String>>,
    leader: RwLock<Option<String>>,
    channels: RwLock<HashMap<String, SignedChannel>>,
}

impl ClusterClient {
    /// Sets the coordinators to try (`--join`).
    pub fn set_join(&self, addresses: Vec<String>) {
        *self.join.write() = addresses;
    }

    /// Records the leader's address, when membership learns it.
    pub fn set_leader(&self, address: Option<String>) {
        *self.leader.write() = address;
    }

    fn channel(&self, address: &str) -> Option<SignedChannel> {
        if let Some(channel) = self.channels.read().get(address) {
            return Some(channel.clone());
        }
        let channel = creek_proto::transport::peer_channel(address, Duration::from_secs(2)).ok()?;
        self.channels
            .write()
            .insert(address.to_string(), channel.clone());
        Some(channel)
    }

    /// Reports a copy event and waits until the leader has committed it. A refusal (a stale
    /// primary term) is returned as the leader's status; no coordinator answering is
    /// `Unavailable`.
    pub async fn shard_copy_event(&self, request: ShardCopyEventRequest) -> Result<(), Status> {
        self.call(|mut client| {
            let request = request.clone();
            async move {
                let response = client.shard_copy_event(request).await?.into_inner();
                if response.refused.is_empty() {
                    Ok(())
                } else {
                    Err(Status::failed_precondition(response.refused))
                }
            }
        })
        .await
    }

    /// Starts or calls off this node's graceful stop; waits until the leader committed it.
    pub async fn graceful_stop(&self, request: GracefulStopRequest) -> Result<(), Status> {
        self.call(|mut client| {
            let request = request.clone();
            async move { client.graceful_stop(request).await.map(|_| ()) }
        })
        .await
    }

    /// Runs `call` against the leader last heard of, then every `--join` address, until one
    /// answers. A `FailedPrecondition` (the leader refused the change itself) ends it: asking
    /// another coordinator won't help.
    async fn call<F, Fut>(&self, call: F) -> Result<(), Status>
    where
        F: Fn(ClusterServiceClient<SignedChannel>) -> Fut,
        Fut: std::future::Future<Output = Result<(), Status>>,
    {
        let mut targets: Vec<String> = self.leader.read().iter().cloned().collect();
        for address in self.join.read().iter() {
            if !targets.contains(address) {
                targets.push(address.clone());
            }
        }
        let mut last = Status::unavailable("no coordinator is known to this data node");
        for address in targets {
            let Some(channel) = self.channel(&address) else {
                continue;
            };
            match tokio::time::timeout(REPORT_TIMEOUT, call(ClusterServiceClient::new(channel)))
                .await
            {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(status)) if status.code() == tonic::Code::FailedPrecondition => {
                    return Err(status)
                }
                Ok(Err(status)) => last = status,
                Err(_) => last = Status::unavailable(format!("{address} did not answer in time")),
            }
        }
        Err(last)
    }
}
