//! The inbound side: an HBONE server that terminates mTLS and HTTP/2 CONNECT.

mod connection;
mod plaintext;
mod policy;
mod tunnel;

use std::{
    collections::{HashMap, HashSet},
    fmt, io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use http::HeaderMap;
use mesh_core::SpiffeId;
use mesh_tls::MeshTls;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use plaintext::{DETECTION_TIMEOUT, PlaintextConnection, PlaintextHandler, PlaintextServe};
pub use policy::{AllowAll, InboundPolicy, InboundRequest, Verdict};

use super::{H2Stream, WorkloadInfo, settings};

/// A tunnel handed to an in-process handler.
#[derive(Debug)]
#[non_exhaustive]
pub struct InboundTunnel {
    /// The client's verified SPIFFE ID.
    pub peer: SpiffeId,
    /// The client's TCP address.
    pub peer_addr: SocketAddr,
    /// The CONNECT target.
    pub target: SocketAddr,
    /// The CONNECT request headers.
    pub headers: HeaderMap,
    /// The tunnel's bytes.
    pub stream: H2Stream,
    /// The tunnel's server span: a child of the CONNECT's `traceparent` (same trace, with its
    /// `tracestate` and `baggage`), or a new trace when the client sent none. Run work done
    /// for this tunnel in [`TraceContext::scope`](crate::observe::TraceContext::scope) to
    /// continue the trace in the calls it makes.
    pub trace: crate::observe::TraceContext,
}

/// Where accepted tunnels go.
#[derive(Clone)]
pub enum Delivery {
    /// Dial a TCP target and copy bytes both ways (what ztunnel does).
    Forward(ForwardTo),
    /// Hand each tunnel to this function (it should spawn; it runs on the connection's task).
    Handler(TunnelHandler),
    /// Serve HTTP/1.1 or HTTP/2 inside each tunnel with a tower service (an axum router, a
    /// tonic server); see [`HttpService`](crate::http::HttpService).
    Http(crate::http::HttpService),
    /// Forward tunnels for the listed target ports to these local addresses (like
    /// [`ForwardTo::ByPort`]) and deliver every other tunnel as `other` says.
    Split {
        /// Target port to local address.
        forward: HashMap<u16, SocketAddr>,
        /// Delivery for the remaining ports.
        other: Box<Delivery>,
    },
}

/// A function receiving inbound tunnels (see [`Delivery::Handler`]).
pub type TunnelHandler = Arc<dyn Fn(InboundTunnel) + Send + Sync>;

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Forward(to) => f.debug_tuple("Forward").field(to).finish(),
            Self::Handler(_) => f.write_str("Handler(..)"),
            Self::Http(_) => f.write_str("Http(..)"),
            Self::Split { forward, other } => f
                .debug_struct("Split")
                .field("forward", forward)
                .field("other", other)
                .finish(),
        }
    }
}

/// Which TCP address a forwarded tunnel is dialed to.
#[derive(Clone, Debug)]
pub enum ForwardTo {
    /// The CONNECT authority itself (`ip:port` on this host), as ztunnel does for its pods.
    Authority,
    /// One address for every tunnel, whatever its target port.
    Fixed(SocketAddr),
    /// By target port; tunnels to other ports are answered 503.
    ByPort(HashMap<u16, SocketAddr>),
}

/// Settings for [`HboneServer`]. Defaults follow ztunnel.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HboneServerConfig {
    /// Where to listen (port 15008 by convention).
    pub listen: SocketAddr,
    /// Limit for the HTTP/2 preface after TLS (TLS has its own limit in `TlsOptions`).
    pub h2_handshake_timeout: Duration,
    /// Streams one client may have open at once.
    pub max_concurrent_streams: u32,
    /// Largest header list accepted.
    pub max_header_list_size: u32,
    /// A connection with no open tunnels for this long is closed (GOAWAY).
    pub idle_timeout: Duration,
    /// Limit for dialing a forward target.
    pub upstream_connect_timeout: Duration,
    /// Ports that belong to the mesh itself (admin, metrics); tunnels to them get 503. The
    /// HBONE port is always included.
    pub own_ports: Vec<u16>,
    /// Keepalive PING interval.
    pub keepalive_interval: Duration,
    /// A PING unanswered this long closes the connection.
    pub keepalive_timeout: Duration,
    /// Describes this workload in the 200 answer's `baggage` header.
    pub workload: WorkloadInfo,
    /// Where handshakes, tunnels and HTTP requests are recorded (`None`: not recorded).
    pub telemetry: Option<crate::observe::Telemetry>,
}

impl Default for HboneServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], settings::HBONE_PORT)),
            h2_handshake_timeout: Duration::from_secs(10),
            max_concurrent_streams: settings::SERVER_MAX_CONCURRENT_STREAMS,
            max_header_list_size: settings::SERVER_MAX_HEADER_LIST,
            idle_timeout: Duration::from_secs(600),
            upstream_connect_timeout: Duration::from_secs(5),
            own_ports: vec![15000, 15020, 15021],
            keepalive_interval: settings::KEEPALIVE_INTERVAL,
            keepalive_timeout: settings::KEEPALIVE_TIMEOUT,
            workload: WorkloadInfo::default(),
            telemetry: None,
        }
    }
}

/// State shared by the accept loop, connections and streams.
pub(crate) struct Shared {
    pub(crate) tls: MeshTls,
    pub(crate) config: HboneServerConfig,
    pub(crate) delivery: Delivery,
    pub(crate) policy: ArcSwap<Box<dyn InboundPolicy>>,
    pub(crate) own_ports: HashSet<u16>,
    pub(crate) upstream_connect_timeout: Duration,
    pub(crate) baggage: Option<String>,
    /// GOAWAY to every connection.
    pub(crate) drain: CancellationToken,
    /// Drop everything now.
    pub(crate) kill: CancellationToken,
    /// Serves connections that do not start with TLS (none: they fail the TLS handshake).
    pub(crate) plaintext: std::sync::OnceLock<PlaintextHandler>,
    pub(crate) tasks: TaskTracker,
    pub(crate) connections: AtomicUsize,
    pub(crate) tunnels: AtomicUsize,
}

/// Counters for tests, metrics and the admin endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Connections currently open.
    pub connections: usize,
    /// Tunnels currently open.
    pub tunnels: usize,
}

/// An HBONE server: accepts mTLS connections, validates and authorizes each CONNECT, reaches the
/// target, answers 200 and carries the bytes.
///
/// Requests are answered as ztunnel does: 400 for a non-CONNECT, an unparsable authority or an
/// authority IP that is not the address the connection arrived on; 401 when the policy denies;
/// 503 when the target is unreachable, unknown, or one of the mesh's own ports.
///
/// Each connection runs on its own task with its own limits (TLS and HTTP/2 handshake timeouts,
/// stream and header limits, idle timeout, keepalive), so a slow or hostile peer affects only
/// itself.
pub struct HboneServer {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    accept_stop: CancellationToken,
}

impl HboneServer {
    /// Binds `config.listen` and starts serving on the current tokio runtime.
    pub async fn bind(
        tls: MeshTls,
        config: HboneServerConfig,
        delivery: Delivery,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let mut own_ports: HashSet<u16> = config.own_ports.iter().copied().collect();
        own_ports.insert(local_addr.port());
        let shared = Arc::new(Shared {
            baggage: config.workload.baggage(),
            upstream_connect_timeout: config.upstream_connect_timeout,
            tls,
            delivery,
            policy: ArcSwap::from_pointee(Box::new(AllowAll) as Box<dyn InboundPolicy>),
            own_ports,
            config,
            drain: CancellationToken::new(),
            kill: CancellationToken::new(),
            plaintext: std::sync::OnceLock::new(),
            tasks: TaskTracker::new(),
            connections: AtomicUsize::new(0),
            tunnels: AtomicUsize::new(0),
        });
        if let Some(telemetry) = &shared.config.telemetry {
            let weak = Arc::downgrade(&shared);
            telemetry.add_state_source(weak);
        }
        let accept_stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, shared.clone(), accept_stop.clone()));
        Ok(Self {
            shared,
            local_addr,
            accept_stop,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Installs the authorization policy for new tunnels.
    pub fn set_policy(&self, policy: impl InboundPolicy) {
        self.shared.policy.store(Arc::new(Box::new(policy)));
    }

    /// Accepts plaintext (non-TLS) connections on the HBONE port from now on, handing each to
    /// `handler` (see [`PlaintextHandler`]): peer authentication's PERMISSIVE and DISABLE modes.
    /// Can be set once; returns `false` when a handler was already set.
    pub fn set_plaintext(&self, handler: PlaintextHandler) -> bool {
        self.shared.plaintext.set(handler).is_ok()
    }

    /// Current counters.
    pub fn stats(&self) -> ServerStats {
        ServerStats {
            connections: self.shared.connections.load(Ordering::Relaxed),
            tunnels: self.shared.tunnels.load(Ordering::Relaxed),
        }
    }

    /// Graceful drain: stop accepting, send GOAWAY on every connection, let open tunnels finish
    /// for up to `deadline`, then close whatever remains. Returns how many tunnels were cut off.
    pub async fn shutdown(self, deadline: Duration) -> usize {
        self.accept_stop.cancel();
        self.shared.drain.cancel();
        self.shared.tasks.close();
        if tokio::time::timeout(deadline, self.shared.tasks.wait())
            .await
            .is_ok()
        {
            return 0;
        }
        let cut = self.shared.tunnels.load(Ordering::Relaxed);
        self.shared.kill.cancel();
        // Tasks observe `kill` at their next poll; wait for them so nothing outlives the server.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.shared.tasks.wait()).await;
        cut
    }
}

impl Drop for HboneServer {
    fn drop(&mut self) {
        self.accept_stop.cancel();
        self.shared.kill.cancel();
    }
}

impl fmt::Debug for HboneServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HboneServer")
            .field("local_addr", &self.local_addr)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl crate::observe::StateSource for Shared {
    fn report(&self, report: &mut crate::observe::StateReport) {
        report.inbound_connections += self.connections.load(Ordering::Relaxed);
        report.inbound_tunnels += self.tunnels.load(Ordering::Relaxed);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = stop.cancelled() => return,
        };
        match accepted {
            Ok((tcp, peer_addr)) => {
                let shared2 = shared.clone();
                shared
                    .tasks
                    .spawn(connection::serve(tcp, peer_addr, shared2));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "HBONE accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
