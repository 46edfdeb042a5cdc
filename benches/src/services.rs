//! The byte-stream services the data-path benchmarks talk to, and the client side of each.
//!
//! Every transport under test (plain TCP, plain rustls, an HBONE tunnel, a cleartext HTTP/2
//! stream) carries the *same* two services, written once over `AsyncRead + AsyncWrite`, so the
//! only difference between two benchmarks of a group is the transport:
//!
//! - [`Service::Echo`] writes back whatever it reads, until end-of-file.
//! - [`Service::Sink`] reads transfers framed as an 8-byte big-endian length followed by that
//!   many bytes, discards them, and answers each complete transfer with one byte ([`ACK`]). The
//!   sender's clock therefore stops only once the receiver holds every byte.
//!
//! On the HBONE server a tunnel's CONNECT target port picks the service ([`Service::port`]); the
//! TCP and TLS baselines listen on one port per service ([`serve_tcp`], [`serve_tls`]).

use std::{io, net::SocketAddr, sync::Arc};

use rustls::{ClientConfig, pki_types::ServerName};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_rustls::{TlsAcceptor, TlsConnector, client::TlsStream};

use crate::pki::LOOPBACK;

/// The byte the sink answers a complete transfer with.
pub const ACK: u8 = 0x06;

/// Read buffer of the sink: as large as the copy buffer of the HBONE server's forwarder, and
/// larger than one TLS record (16 KiB), so no transport is held back by small reads.
pub const SINK_BUFFER: usize = 64 * 1024;

/// Read buffer of the echo service: small, since it only ever sees small messages, and every new
/// connection or tunnel allocates one (the h2c baseline's server allocates none).
pub const ECHO_BUFFER: usize = 4 * 1024;

/// A service the benchmark servers offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// Echo every byte back until end-of-file, then half-close.
    Echo,
    /// Discard length-framed transfers, acknowledging each with one [`ACK`] byte.
    Sink,
}

impl Service {
    /// The CONNECT target port that selects this service on the HBONE server.
    pub fn port(self) -> u16 {
        match self {
            Self::Echo => 7,
            Self::Sink => 9,
        }
    }

    /// The service behind a CONNECT target port, if any.
    pub fn from_port(port: u16) -> Option<Self> {
        [Self::Echo, Self::Sink]
            .into_iter()
            .find(|s| s.port() == port)
    }

    /// Serves one connection (or tunnel) to completion.
    pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(self, stream: S) -> io::Result<()> {
        match self {
            Self::Echo => echo(stream).await,
            Self::Sink => sink(stream).await,
        }
    }
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> io::Result<()> {
    let mut buf = vec![0u8; ECHO_BUFFER];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        stream.write_all(&buf[..n]).await?;
        stream.flush().await?;
    }
    stream.shutdown().await
}

async fn sink<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> io::Result<()> {
    let mut buf = vec![0u8; SINK_BUFFER];
    loop {
        let mut header = [0u8; 8];
        match stream.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let mut left = u64::from_be_bytes(header);
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = stream.read(&mut buf[..want]).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            left -= n as u64;
        }
        stream.write_all(&[ACK]).await?;
        stream.flush().await?;
    }
    stream.shutdown().await
}

/// Client side of [`Service::Sink`]: sends `total` bytes in writes of `chunk.len()` bytes (the
/// chunk's contents, repeated), then waits for the acknowledgement.
pub async fn transfer<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    chunk: &[u8],
    total: u64,
) -> io::Result<()> {
    stream.write_all(&total.to_be_bytes()).await?;
    let mut left = total;
    while left > 0 {
        let n = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        stream.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    stream.flush().await?;
    let mut ack = [0u8; 1];
    stream.read_exact(&mut ack).await?;
    if ack[0] != ACK {
        return Err(io::Error::other(format!(
            "sink answered {:#04x}, expected {ACK:#04x}",
            ack[0]
        )));
    }
    Ok(())
}

/// Client side of [`Service::Echo`]: writes `message` and reads the same number of bytes back
/// into `reply` (which must be as long as `message`), checking they match.
pub async fn echo_once<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    message: &[u8],
    reply: &mut [u8],
) -> io::Result<()> {
    stream.write_all(message).await?;
    stream.flush().await?;
    stream.read_exact(reply).await?;
    if reply != message {
        return Err(io::Error::other("the echo differs from what was sent"));
    }
    Ok(())
}

/// A benchmark listener on `127.0.0.1`: one task per accepted connection. The accept loop stops
/// when this is dropped; connections end when their clients close them.
pub struct Listener {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Listener {
    /// Wraps an accept loop running as `task` on `addr`.
    pub(crate) fn new(addr: SocketAddr, task: JoinHandle<()>) -> Self {
        Self { addr, task }
    }

    /// The address to dial.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `service` over plain TCP (`TCP_NODELAY`), as the application an HBONE server forwards
/// to, or as the no-encryption baseline. Call inside a tokio runtime.
pub async fn serve_tcp(service: Service) -> io::Result<Listener> {
    let listener = TcpListener::bind((LOOPBACK, 0)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                tcp.set_nodelay(true)?;
                service.serve(tcp).await
            });
        }
    });
    Ok(Listener::new(addr, task))
}

/// Serves `service` over TLS with a plain tokio-rustls acceptor: the raw-TLS baseline.
pub async fn serve_tls(acceptor: TlsAcceptor, service: Service) -> io::Result<Listener> {
    let listener = TcpListener::bind((LOOPBACK, 0)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                tcp.set_nodelay(true)?;
                service.serve(acceptor.accept(tcp).await?).await
            });
        }
    });
    Ok(Listener::new(addr, task))
}

/// Dials `addr` with `TCP_NODELAY`, as the mesh dials.
pub async fn tcp_connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// Dials `addr` and handshakes with a plain tokio-rustls connector (no SNI for an IP name).
pub async fn tls_connect(
    config: Arc<ClientConfig>,
    addr: SocketAddr,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = tcp_connect(addr).await?;
    TlsConnector::from(config)
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
}
