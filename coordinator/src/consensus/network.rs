//! Raft messages between voters: openraft's request and response types as JSON inside the
//! `ClusterService.Raft*` gRPC calls on each voter's transport port. A call that does not reach
//! the peer is `Unreachable`, so openraft backs off; an error the peer's Raft returned is
//! passed back as a remote error.

use creek_proto::cluster_auth::SignedChannel;
use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::AnyError;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{peer_channel, RaftNodeId, RaftPeer, TypeConfig};
use creek_proto::v1::cluster_service_client::ClusterServiceClient;
use creek_proto::v1::RaftMessage;

/// Creates a [`PeerClient`] per voter openraft talks to.
pub struct Network;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: RaftNodeId, node: &RaftPeer) -> PeerClient {
        PeerClient {
            target,
            peer: node.clone(),
            client: peer_channel(&node.address).map(ClusterServiceClient::new),
        }
    }
}

/// The connection to one voter.
pub struct PeerClient {
    target: RaftNodeId,
    peer: RaftPeer,
    client: Option<ClusterServiceClient<SignedChannel>>,
}

#[derive(Clone, Copy)]
enum Rpc {
    Vote,
    Append,
    Snapshot,
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<RaftNodeId, RaftPeer, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let unreachable = |message: String| {
            RPCError::Unreachable(Unreachable::new(&AnyError::error(format!(
                "voter {} at {}: {message}",
                self.peer.name, self.peer.address
            ))))
        };
        let Some(client) = self.client.as_mut() else {
            return Err(unreachable("bad address".to_string()));
        };
        let message = RaftMessage {
            json: serde_json::to_vec(request).expect("raft request serialises"),
        };
        let call = async {
            match rpc {
                Rpc::Vote => client.raft_vote(message).await,
                Rpc::Append => client.raft_append(message).await,
                Rpc::Snapshot => client.raft_snapshot(message).await,
            }
        };
        let response = match tokio::time::timeout(option.hard_ttl(), call).await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => return Err(unreachable(status.message().to_string())),
            Err(_) => return Err(unreachable("timed out".to_string())),
        };
        let result: Result<Resp, E> = serde_json::from_slice(&response.json)
            .map_err(|e| unreachable(format!("bad raft response: {e}")))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        AppendEntriesResponse<RaftNodeId>,
        RPCError<RaftNodeId, RaftPeer, RaftError<RaftNodeId>>,
    > {
        self.call(Rpc::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<RaftNodeId>,
        RPCError<RaftNodeId, RaftPeer, RaftError<RaftNodeId, InstallSnapshotError>>,
    > {
        self.call(Rpc::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<RaftNodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<RaftNodeId>, RPCError<RaftNodeId, RaftPeer, RaftError<RaftNodeId>>>
    {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}
