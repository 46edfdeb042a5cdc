//! Connections that do not start with TLS, for peer authentication's PERMISSIVE and DISABLE
//! modes: the HBONE port then serves plaintext peers next to mTLS ones.
//!
//! Without a [`PlaintextHandler`] (the default) the server reads nothing before the TLS
//! handshake and a plaintext client simply fails it. With one, the server first peeks at the
//! connection's first bytes: a TLS handshake record (`0x16`, then version major `0x03`) goes
//! on to mTLS and HBONE; anything else, or nothing within [`DETECTION_TIMEOUT`] (a
//! server-first protocol such as MySQL), is handed to the handler, which serves it or refuses
//! it (the connection is then closed).

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// How long the server waits for a client's first bytes before treating the connection as
/// plaintext (TLS clients speak first, immediately).
pub const DETECTION_TIMEOUT: Duration = Duration::from_secs(1);

/// A connection that did not start with a TLS handshake.
#[derive(Debug)]
#[non_exhaustive]
pub struct PlaintextConnection {
    /// The connection, with nothing read from it yet.
    pub stream: TcpStream,
    /// The client's address.
    pub peer_addr: SocketAddr,
    /// Our address it arrived on (the listener's port).
    pub local_addr: SocketAddr,
    /// Cancelled when the server drains: finish gracefully.
    pub drain: CancellationToken,
}

/// The future serving an accepted plaintext connection; it runs on the connection's task and
/// is cancelled when the server shuts down.
pub type PlaintextServe = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Decides about each plaintext connection: `Some` serves it, `None` refuses it (closed at
/// once). It runs on the connection's task, so it must not block.
pub type PlaintextHandler =
    Arc<dyn Fn(PlaintextConnection) -> Option<PlaintextServe> + Send + Sync>;

/// What a connection's first bytes say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FirstBytes {
    /// A TLS handshake record.
    Tls,
    /// Anything else, or silence.
    Plaintext,
    /// The client closed (or failed) before sending anything.
    Closed,
}

/// Peeks at the first bytes without consuming them.
pub(crate) async fn sniff(tcp: &TcpStream) -> FirstBytes {
    let mut buf = [0u8; 2];
    match tokio::time::timeout(DETECTION_TIMEOUT, tcp.peek(&mut buf)).await {
        Err(_) => FirstBytes::Plaintext,
        Ok(Err(_) | Ok(0)) => FirstBytes::Closed,
        // A record header arrives whole in practice; with one byte, 0x16 (a control
        // character no text protocol starts with) is enough.
        Ok(Ok(1)) if buf[0] == 0x16 => FirstBytes::Tls,
        Ok(Ok(_)) if buf == [0x16, 0x03] => FirstBytes::Tls,
        Ok(Ok(_)) => FirstBytes::Plaintext,
    }
}
