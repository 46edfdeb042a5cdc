//! One mutual-TLS handshake over loopback TCP, for either TLS stack, finished by a one-byte echo.
//!
//! The echo makes the measured time cover the whole exchange: the client's application data can
//! only be answered once the server has verified the client's Finished, and the server's TLS 1.3
//! session tickets (sent before the echo) have been read by the client when the echo arrives, so
//! the next connection can resume.

use std::{
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use mesh_tls::{ExpectedIdentities, MeshTls};
use rustls::{ClientConfig, HandshakeKind, client::Resumption, pki_types::ServerName};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::{BoxError, pki::LOOPBACK};

/// The byte the client sends and expects back.
const PING: u8 = 0x2a;

/// The server side of a benchmark connection.
#[derive(Clone)]
pub enum ServerTls {
    /// [`MeshTls::accept`]: SPIFFE-verifies the client and returns its ID.
    Mesh(MeshTls),
    /// A plain tokio-rustls acceptor.
    Plain(TlsAcceptor),
}

/// Handshake counts seen by an [`EchoServer`], to check what the client's numbers claim.
#[derive(Debug, Default)]
pub struct ServerStats {
    full: AtomicU64,
    resumed: AtomicU64,
    failed: AtomicU64,
}

impl ServerStats {
    /// Completed full handshakes (with or without a HelloRetryRequest).
    pub fn full(&self) -> u64 {
        self.full.load(Ordering::Relaxed)
    }

    /// Completed resumed handshakes.
    pub fn resumed(&self) -> u64 {
        self.resumed.load(Ordering::Relaxed)
    }

    /// Connections that failed before the echo was sent.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

/// A TLS echo server on `127.0.0.1`: accepts one connection at a time, handshakes, echoes one
/// byte and closes. Runs as a task on the current tokio runtime; stopped on drop.
pub struct EchoServer {
    addr: SocketAddr,
    stats: Arc<ServerStats>,
    task: JoinHandle<()>,
}

impl EchoServer {
    /// Binds an ephemeral port and starts serving. Call from inside a tokio runtime.
    pub async fn start(tls: ServerTls) -> io::Result<Self> {
        let listener = TcpListener::bind((LOOPBACK, 0)).await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(ServerStats::default());
        let task = tokio::spawn(serve(listener, tls, stats.clone()));
        Ok(Self { addr, stats, task })
    }

    /// The address to dial.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the server has seen so far.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, tls: ServerTls, stats: Arc<ServerStats>) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                eprintln!("bench server: accept failed: {e}");
                continue;
            }
        };
        // One connection at a time: the client is sequential, and serving inline keeps task
        // spawning out of the measurement.
        match serve_one(&tls, tcp).await {
            Ok(HandshakeKind::Resumed) => stats.resumed.fetch_add(1, Ordering::Relaxed),
            Ok(HandshakeKind::Full | HandshakeKind::FullWithHelloRetryRequest) => {
                stats.full.fetch_add(1, Ordering::Relaxed)
            }
            Err(e) => {
                eprintln!("bench server: connection failed: {e}");
                stats.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

async fn serve_one(tls: &ServerTls, tcp: TcpStream) -> Result<HandshakeKind, BoxError> {
    tcp.set_nodelay(true)?;
    match tls {
        ServerTls::Mesh(mesh) => {
            let (mut stream, _peer) = mesh.accept(tcp).await?;
            let kind = stream.get_ref().1.handshake_kind();
            echo(&mut stream).await?;
            kind_or_err(kind)
        }
        ServerTls::Plain(acceptor) => {
            let mut stream = acceptor.accept(tcp).await?;
            let kind = stream.get_ref().1.handshake_kind();
            echo(&mut stream).await?;
            kind_or_err(kind)
        }
    }
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> io::Result<()> {
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).await?;
    stream.write_all(&byte).await?;
    stream.flush().await
}

fn kind_or_err(kind: Option<HandshakeKind>) -> Result<HandshakeKind, BoxError> {
    kind.ok_or_else(|| "handshake finished but rustls reports no handshake kind".into())
}

/// The client side of a benchmark connection.
#[derive(Clone)]
pub enum ClientTls {
    /// [`MeshTls::connect`], pinning the server to `expected`.
    Mesh {
        /// The client endpoint; its client configs (and their session caches) are cached inside.
        tls: MeshTls,
        /// The server identities accepted.
        expected: ExpectedIdentities,
    },
    /// A plain tokio-rustls connector with this config.
    Plain(Arc<ClientConfig>),
}

impl ClientTls {
    /// The same client with an empty session cache, so its next handshake is a full one.
    ///
    /// Everything is built here, outside any measurement: the mesh client gets a new
    /// [`MeshTls`] from the same credentials and options with its client config for `expected`
    /// already built; the plain client gets a copy of its config with a new in-memory session
    /// store (of the default size). Both still store the tickets the server sends, as a real
    /// client's first connection would.
    pub fn fresh(&self) -> Result<Self, BoxError> {
        Ok(match self {
            Self::Mesh { tls, expected } => {
                let tls = MeshTls::new(tls.credentials().clone(), tls.options().clone())?;
                tls.client_config(expected)?;
                Self::Mesh {
                    tls,
                    expected: expected.clone(),
                }
            }
            Self::Plain(config) => {
                let mut config = ClientConfig::clone(config);
                config.resumption = Resumption::default();
                Self::Plain(Arc::new(config))
            }
        })
    }

    /// Dials `addr`, handshakes, sends one byte and waits for it to come back. Returns how the
    /// handshake went (full or resumed), as the client saw it.
    pub async fn handshake(&self, addr: SocketAddr) -> Result<HandshakeKind, BoxError> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        match self {
            Self::Mesh { tls, expected } => {
                let (mut stream, _peer) = tls.connect(tcp, addr.ip(), expected).await?;
                let kind = stream.get_ref().1.handshake_kind();
                ping(&mut stream).await?;
                kind_or_err(kind)
            }
            Self::Plain(config) => {
                let connector = TlsConnector::from(config.clone());
                let name = ServerName::IpAddress(addr.ip().into());
                let mut stream = connector.connect(name, tcp).await?;
                let kind = stream.get_ref().1.handshake_kind();
                ping(&mut stream).await?;
                kind_or_err(kind)
            }
        }
    }
}

async fn ping<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> Result<(), BoxError> {
    stream.write_all(&[PING]).await?;
    stream.flush().await?;
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).await?;
    if byte[0] != PING {
        return Err(format!("echo returned {:#04x}, sent {PING:#04x}", byte[0]).into());
    }
    Ok(())
}
