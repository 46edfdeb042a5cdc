//! TCP helpers shared by the outbound and inbound paths.

use std::{io, net::SocketAddr, time::Duration};

use tokio::net::TcpStream;

/// Dials `addr` with a deadline and TCP_NODELAY: tunnels carry interactive traffic, and Nagle
/// plus delayed ACKs would add ~40 ms stalls.
pub(crate) async fn dial(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, io::Error> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {timeout:?}"),
            )
        })??;
    stream.set_nodelay(true)?;
    Ok(stream)
}
