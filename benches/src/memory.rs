//! Resident memory of idle connections and tunnels: RSS readings and the server process of the
//! `hbone_memory` benchmark.
//!
//! The benchmark measures each side in its own process, so a connection's client-side and
//! server-side cost are separate RSS deltas: the benchmark binary is the client, and re-executes
//! itself with [`ROLE_ENV`] set as the server ([`ServerProcess::spawn`] /
//! [`run_server_process`]). The two processes share the development CA through the environment
//! ([`CA_CERT_ENV`], [`CA_KEY_ENV`]), so each side's certificates chain to the same root.
//!
//! The server runs three listeners, each holding every accepted connection (or tunnel) open with
//! the smallest possible application state ([`hold`]: a 16-byte echo), so the deltas are the
//! stack's own cost:
//!
//! - an [`HboneServer`] with in-process delivery, allowing [`MAX_STREAMS_ENV`] concurrent streams
//!   per connection (so one connection can carry every tunnel of the tunnel phase);
//! - plain rustls (the same certificates and crypto parameters) and plain TCP, as baselines.
//!
//! The server counts HBONE tunnels itself, from hand-off to the handler until the tunnel ends
//! (`HboneServer::stats` stops counting a tunnel once it is handed to a handler).
//!
//! Commands on the child's stdin, one per line: `stats` answers
//! `<hbone connections> <hbone tunnels> <tls connections> <tcp connections> <VmRSS KiB>`. The
//! child exits when its stdin closes (the parent ended).

use std::{
    io,
    net::SocketAddr,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use mesh_client::hbone::{Delivery, HboneServer, HboneServerConfig, InboundTunnel};
use mesh_tls::DevCa;
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, Lines},
    net::{TcpListener, TcpStream},
    process::{Child, ChildStdin, ChildStdout, Command},
};
use tokio_rustls::TlsAcceptor;

use crate::{
    BoxError,
    pki::{BenchPki, LOOPBACK},
};

/// Set (to `server`) in the environment of the re-executed benchmark binary.
pub const ROLE_ENV: &str = "MESH_BENCH_MEMORY_ROLE";
/// The development CA's certificate (PEM), passed to the server process.
pub const CA_CERT_ENV: &str = "MESH_BENCH_MEMORY_CA_CERT";
/// The development CA's private key (PEM), passed to the server process.
pub const CA_KEY_ENV: &str = "MESH_BENCH_MEMORY_CA_KEY";
/// The HBONE server's per-connection stream limit.
pub const MAX_STREAMS_ENV: &str = "MESH_BENCH_MEMORY_MAX_STREAMS";

/// The resident set size of process `pid` (`None`: this process) in KiB, from
/// `/proc/<pid>/status` (`VmRSS`).
pub fn rss_kib(pid: Option<u32>) -> io::Result<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path)?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::other("no VmRSS line in /proc/<pid>/status"))
}

/// The application behind every benchmark connection and tunnel: echoes up to 16 bytes at a time
/// until end-of-file, so it holds no buffer worth measuring.
pub async fn hold<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> io::Result<()> {
    let mut buf = [0u8; 16];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return stream.shutdown().await;
        }
        stream.write_all(&buf[..n]).await?;
        stream.flush().await?;
    }
}

/// What the server process reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerSnapshot {
    /// Open HBONE connections.
    pub hbone_connections: usize,
    /// Open HBONE tunnels.
    pub hbone_tunnels: usize,
    /// Open plain-TLS connections (handshake done).
    pub tls_connections: usize,
    /// Open plain-TCP connections.
    pub tcp_connections: usize,
    /// The server process's RSS in KiB.
    pub rss_kib: u64,
}

/// The server process, seen from the benchmark.
pub struct ServerProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    /// The HBONE listener.
    pub hbone: SocketAddr,
    /// The plain-TLS listener.
    pub tls: SocketAddr,
    /// The plain-TCP listener.
    pub tcp: SocketAddr,
}

impl ServerProcess {
    /// Starts this executable again as the server, trusting `ca` and allowing `max_streams`
    /// streams per HBONE connection, and waits until it listens. Call inside a tokio runtime.
    pub async fn spawn(ca: &DevCa, max_streams: u32) -> Result<Self, BoxError> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(ROLE_ENV, "server")
            .env(CA_CERT_ENV, ca.cert_pem())
            .env(CA_KEY_ENV, ca.key_pem())
            .env(MAX_STREAMS_ENV, max_streams.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let ready = stdout
            .next_line()
            .await?
            .ok_or("the server process exited before it was ready")?;
        let addrs: Vec<SocketAddr> = ready
            .strip_prefix("ready ")
            .ok_or_else(|| format!("unexpected line from the server process: {ready:?}"))?
            .split(' ')
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        let [hbone, tls, tcp] = addrs[..] else {
            return Err(format!("expected three addresses, got {ready:?}").into());
        };
        Ok(Self {
            child,
            stdin,
            stdout,
            hbone,
            tls,
            tcp,
        })
    }

    /// The server's process ID.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Asks for the current counters and RSS.
    pub async fn stats(&mut self) -> Result<ServerSnapshot, BoxError> {
        self.stdin.write_all(b"stats\n").await?;
        self.stdin.flush().await?;
        let line = self
            .stdout
            .next_line()
            .await?
            .ok_or("the server process exited")?;
        let v: Vec<u64> = line.split(' ').map(str::parse).collect::<Result<_, _>>()?;
        let [
            hbone_connections,
            hbone_tunnels,
            tls_connections,
            tcp_connections,
            rss_kib,
        ] = v[..]
        else {
            return Err(format!("unexpected stats line {line:?}").into());
        };
        Ok(ServerSnapshot {
            hbone_connections: usize::try_from(hbone_connections)?,
            hbone_tunnels: usize::try_from(hbone_tunnels)?,
            tls_connections: usize::try_from(tls_connections)?,
            tcp_connections: usize::try_from(tcp_connections)?,
            rss_kib,
        })
    }

    /// Polls [`stats`](Self::stats) until `done` holds (the server has caught up with what the
    /// client did), then waits a little longer for stragglers and returns the final snapshot.
    pub async fn settle(
        &mut self,
        what: &str,
        done: impl Fn(&ServerSnapshot) -> bool,
    ) -> Result<ServerSnapshot, BoxError> {
        for _ in 0..500 {
            let snapshot = self.stats().await?;
            if done(&snapshot) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                return self.stats().await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(format!("the server did not reach {what}: {:?}", self.stats().await?).into())
    }
}

/// The server process's `main`: listens, prints `ready <hbone> <tls> <tcp>`, then answers
/// commands on stdin until it closes. Call inside a tokio runtime.
pub async fn run_server_process() -> Result<(), BoxError> {
    let ca = DevCa::from_pem(&std::env::var(CA_CERT_ENV)?, &std::env::var(CA_KEY_ENV)?)?;
    let max_streams: u32 = std::env::var(MAX_STREAMS_ENV)?.parse()?;
    let pki = BenchPki::with_ca(ca)?;

    let mut config = HboneServerConfig::default();
    config.listen = SocketAddr::new(LOOPBACK, 0);
    config.max_concurrent_streams = max_streams;
    // Counted here: the server's own tunnel count ends when a tunnel is handed to the handler.
    let tunnels = Arc::new(AtomicUsize::new(0));
    let handler_tunnels = tunnels.clone();
    let delivery = Delivery::Handler(Arc::new(move |tunnel: InboundTunnel| {
        let count = handler_tunnels.clone();
        count.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let result = hold(tunnel.stream).await;
            count.fetch_sub(1, Ordering::Relaxed);
            result
        });
    }));
    let hbone = HboneServer::bind(pki.mesh_server()?, config, delivery).await?;

    let tls_count = Arc::new(AtomicUsize::new(0));
    let tls_listener = TcpListener::bind((LOOPBACK, 0)).await?;
    let tls_addr = tls_listener.local_addr()?;
    let acceptor = TlsAcceptor::from(pki.plain_server_config()?);
    tokio::spawn(accept_loop(tls_listener, tls_count.clone(), move |tcp| {
        let acceptor = acceptor.clone();
        async move { acceptor.accept(tcp).await }
    }));

    let tcp_count = Arc::new(AtomicUsize::new(0));
    let tcp_listener = TcpListener::bind((LOOPBACK, 0)).await?;
    let tcp_addr = tcp_listener.local_addr()?;
    tokio::spawn(accept_loop(tcp_listener, tcp_count.clone(), |tcp| async {
        Ok(tcp)
    }));

    // Plain std I/O: stdout is line-buffered, and a thread turns stdin lines into messages.
    println!("ready {} {tls_addr} {tcp_addr}", hbone.local_addr());
    let (tx, mut commands) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(command) = commands.recv().await {
        match command.trim() {
            "stats" => {
                println!(
                    "{} {} {} {} {}",
                    hbone.stats().connections,
                    tunnels.load(Ordering::Relaxed),
                    tls_count.load(Ordering::Relaxed),
                    tcp_count.load(Ordering::Relaxed),
                    rss_kib(None)?
                );
            }
            other => return Err(format!("unknown command {other:?}").into()),
        }
    }
    Ok(())
}

/// Accepts connections, sets `TCP_NODELAY`, runs `setup` (a TLS handshake, or nothing) and then
/// [`hold`]s each, counting those past `setup` in `count`.
async fn accept_loop<F, Fut, S>(listener: TcpListener, count: Arc<AtomicUsize>, setup: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = io::Result<S>> + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    while let Ok((tcp, _)) = listener.accept().await {
        let _ = tcp.set_nodelay(true);
        let setup = setup(tcp);
        let count = count.clone();
        tokio::spawn(async move {
            let stream = setup.await?;
            count.fetch_add(1, Ordering::Relaxed);
            let result = hold(stream).await;
            count.fetch_sub(1, Ordering::Relaxed);
            result
        });
    }
}
