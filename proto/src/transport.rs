//! What every node's transport shares: servers accept connections with `TCP_NODELAY`, and
//! clients dial peers through one endpoint configuration ([`peer_endpoint`]).
//!
//! tonic's own `tcp_nodelay` does not apply to a listener passed in; without it small
//! responses (a point lookup, a partial aggregate, a heartbeat answer) wait ~40 ms for
//! delayed ACKs.

use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Endpoint;

/// The connections `listener` accepts, each with `TCP_NODELAY` set.
pub fn nodelay_incoming(listener: TcpListener) -> impl Stream<Item = std::io::Result<TcpStream>> {
    TcpListenerStream::new(listener).map(|stream| {
        if let Ok(stream) = &stream {
            let _ = stream.set_nodelay(true);
        }
        stream
    })
}

/// How often a connection to a peer is pinged, and how long a ping may go unanswered
/// before the connection counts as broken. A peer behind a cut link sends no reset: without
/// pings a call to it would hang until TCP gives up (minutes), instead of failing over.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// See [`KEEPALIVE_INTERVAL`].
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The endpoint for a peer's transport address (`host:port`): `TCP_NODELAY`, a connect
/// timeout, and HTTP/2 pings that fail every call on a connection whose peer stopped
/// answering (the calls' errors then say Unavailable, which callers retry elsewhere).
pub fn peer_endpoint(address: &str, connect_timeout: Duration) -> Result<Endpoint, String> {
    Ok(Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| format!("bad peer address {address}: {e}"))?
        .tcp_nodelay(true)
        .connect_timeout(connect_timeout)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true))
}

/// A lazily connected channel to `address` (see [`peer_endpoint`]); the name is resolved
/// again on every connection attempt, so a DNS name that moves keeps working.
pub fn peer_channel(
    address: &str,
    connect_timeout: Duration,
) -> Result<crate::cluster_auth::SignedChannel, String> {
    Ok(crate::cluster_auth::signed(
        peer_endpoint(address, connect_timeout)?.connect_lazy(),
    ))
}
