//! How a data node talks to the coordinators outside of membership: reporting a shard copy
//! that failed or finished recovering, answered once the leader has committed the change.
//! It tries the leader it last heard of first, then every `--join` address.

use std::collections::HashMap;
use std::time::Duration;

use creek_proto::v1::cluster_service_client::ClusterServiceClient;
use creek_proto::v1::ShardCopyEventRequest;
use parking_lot::RwLock;
use tonic::transport::Channel;
use tonic::Status;

/// How long one report may take (a commit and the publishing of the new state).
const REPORT_TIMEOUT: Duration = Duration::from_secs(20);

/// The coordinators a data node reports to.
#[derive(Default)]
pub struct ClusterClient {
    join: RwLock<Vec<String>>,
    leader: RwLock<Option<String>>,
    channels: RwLock<HashMap<String, Channel>>,
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

    fn channel(&self, address: &str) -> Option<Channel> {
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
            let mut client = ClusterServiceClient::new(channel);
            match tokio::time::timeout(REPORT_TIMEOUT, client.shard_copy_event(request.clone()))
                .await
            {
                Ok(Ok(response)) if !response.get_ref().refused.is_empty() => {
                    return Err(Status::failed_precondition(response.into_inner().refused))
                }
                Ok(Ok(_)) => return Ok(()),
                // The leader refused the change itself: asking another coordinator won't help.
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
