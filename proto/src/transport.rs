//! What every node's transport server shares: accepting connections with `TCP_NODELAY`.
//!
//! tonic's own `tcp_nodelay` does not apply to a listener passed in; without it small
//! responses (a point lookup, a partial aggregate, a heartbeat answer) wait ~40 ms for
//! delayed ACKs.

use futures::{Stream, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;

/// The connections `listener` accepts, each with `TCP_NODELAY` set.
pub fn nodelay_incoming(listener: TcpListener) -> impl Stream<Item = std::io::Result<TcpStream>> {
    TcpListenerStream::new(listener).map(|stream| {
        if let Ok(stream) = &stream {
            let _ = stream.set_nodelay(true);
        }
        stream
    })
}
