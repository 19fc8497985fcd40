//! A shard copy's place in its replication group, as the cluster state the node applied last
//! says: its allocation id, whether it is the primary, the primary term it knows, and the
//! other copies a primary forwards its writes to.

use creek_common::NodeId;

/// Another copy of the same shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The node holding it.
    pub node: NodeId,
    /// Its transport address.
    pub address: String,
    /// Its allocation id.
    pub allocation_id: String,
    /// Whether it is in the in-sync set: a write is acknowledged only once every in-sync
    /// copy has it (or has been failed through the leader).
    pub in_sync: bool,
}

/// What this copy is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyRole {
    /// This copy's allocation id.
    pub allocation_id: String,
    /// Whether this copy is the primary.
    pub primary: bool,
    /// The shard's primary term as this copy knows it.
    pub primary_term: u64,
    /// The other copies that receive writes: started ones (from the state) and, on a
    /// primary, recovering ones that reached their last recovery phase (see `tracking`).
    pub peers: Vec<Peer>,
}
