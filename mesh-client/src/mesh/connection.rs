//! Raw inbound connections from both kinds of peers, for applications served with
//! [`InboundApp::Connections`](super::InboundApp::Connections): HBONE tunnels (verified
//! principal) and, where PeerAuthentication lets them in, plaintext TCP peers (none).

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::HeaderMap;
use mesh_core::SpiffeId;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

use crate::hbone::{H2Stream, InboundTunnel};

/// The bytes of an inbound connection: an HBONE tunnel or a plaintext TCP connection. Both
/// read and write the same way; end of stream and resets map as for each transport.
#[derive(Debug)]
#[non_exhaustive]
pub enum InboundStream {
    /// A tunnel inside an mTLS HTTP/2 connection.
    Hbone(H2Stream),
    /// A plaintext TCP connection (PeerAuthentication PERMISSIVE or DISABLE).
    Plaintext(TcpStream),
}

/// One inbound connection handed to an [`InboundApp::Connections`](super::InboundApp::Connections)
/// handler, after peer authentication and L4 authorization allowed it.
#[derive(Debug)]
#[non_exhaustive]
pub struct InboundConnection {
    /// The peer's verified SPIFFE ID, or `None` for a plaintext peer.
    pub principal: Option<SpiffeId>,
    /// The peer's TCP address.
    pub peer_addr: SocketAddr,
    /// Our side: the tunnel's target (our IP and the application port) for HBONE, the
    /// listener's address for plaintext.
    pub target: SocketAddr,
    /// The CONNECT request headers for HBONE; empty for plaintext.
    pub headers: HeaderMap,
    /// The bytes.
    pub stream: InboundStream,
}

/// Receives inbound connections; it runs on the accepting task, so it should spawn.
pub type ConnectionHandler = Arc<dyn Fn(InboundConnection) + Send + Sync>;

impl From<InboundTunnel> for InboundConnection {
    fn from(tunnel: InboundTunnel) -> Self {
        Self {
            principal: Some(tunnel.peer),
            peer_addr: tunnel.peer_addr,
            target: tunnel.target,
            headers: tunnel.headers,
            stream: InboundStream::Hbone(tunnel.stream),
        }
    }
}

impl InboundConnection {
    /// A plaintext peer's connection.
    pub(super) fn plaintext(stream: TcpStream, peer_addr: SocketAddr, target: SocketAddr) -> Self {
        Self {
            principal: None,
            peer_addr,
            target,
            headers: HeaderMap::new(),
            stream: InboundStream::Plaintext(stream),
        }
    }
}

impl AsyncRead for InboundStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Hbone(s) => Pin::new(s).poll_read(cx, buf),
            Self::Plaintext(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for InboundStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Hbone(s) => Pin::new(s).poll_write(cx, buf),
            Self::Plaintext(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Hbone(s) => Pin::new(s).poll_flush(cx),
            Self::Plaintext(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Hbone(s) => Pin::new(s).poll_shutdown(cx),
            Self::Plaintext(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Hbone(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Plaintext(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Hbone(s) => s.is_write_vectored(),
            Self::Plaintext(s) => s.is_write_vectored(),
        }
    }
}
