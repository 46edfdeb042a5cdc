//! The workload's inbound HBONE listener, as the `inbound:` settings describe it.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use super::{Mesh, MeshError, policy::Policies};
use crate::{
    hbone::{
        Delivery, HboneServer, HboneServerConfig, InboundPolicy, InboundRequest, ServerStats,
        TunnelHandler, Verdict,
    },
    http::HttpService,
};

/// What the application serves itself, for tunnels to ports not listed in `inbound.forward`.
#[derive(Clone)]
#[non_exhaustive]
pub enum InboundApp {
    /// Nothing: only forwarded ports are served; other ports get 503.
    None,
    /// Raw tunnels go to this function, with the peer's verified identity. Authorization is
    /// applied per tunnel (L4) before the function sees it.
    Tunnels(TunnelHandler),
    /// HTTP served in-process (an axum router, tonic routes). Authorization is applied per
    /// request with every HTTP attribute (L7); a denied request gets 403.
    Http(HttpService),
    /// Raw connections of both kinds go to this function: HBONE tunnels (with the peer's
    /// principal) and, where PeerAuthentication is PERMISSIVE or DISABLE, plaintext peers
    /// connecting to the listener (principal `None`). Authorization is applied per
    /// connection (L4) first.
    Connections(super::ConnectionHandler),
}

impl fmt::Debug for InboundApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "None",
            Self::Tunnels(_) => "Tunnels(..)",
            Self::Http(_) => "Http(..)",
            Self::Connections(_) => "Connections(..)",
        })
    }
}

/// A running inbound listener. Dropping it without [`shutdown`](Self::shutdown) closes
/// everything at once.
pub struct InboundServer {
    server: HboneServer,
    drain_timeout: Duration,
    plaintext_refused: Arc<AtomicU64>,
}

impl InboundServer {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Open connections and tunnels.
    pub fn stats(&self) -> ServerStats {
        self.server.stats()
    }

    /// Plaintext (non-mTLS) connections closed so far because peer authentication requires
    /// mTLS on their port (STRICT, the default; see the `mesh` module's PeerAuthentication
    /// notes).
    pub fn plaintext_refused(&self) -> u64 {
        self.plaintext_refused.load(Ordering::Relaxed)
    }

    /// Stops accepting, lets open tunnels finish within `inbound.drain_timeout`, then closes
    /// the rest. Returns how many tunnels were cut off.
    pub async fn shutdown(self) -> usize {
        self.server.shutdown(self.drain_timeout).await
    }
}

impl fmt::Debug for InboundServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundServer")
            .field("local_addr", &self.local_addr())
            .finish_non_exhaustive()
    }
}

/// The per-tunnel (L4) check. Ports served as in-process HTTP are judged per request instead,
/// with the full request in view.
struct TunnelAuthz {
    policies: Arc<Policies>,
    /// Target ports whose tunnels are checked here; `None` means all of them.
    l4_ports: Option<HashSet<u16>>,
    /// The embedding host's own check, asked after the policies allowed (every port).
    host_check: Option<Arc<dyn InboundPolicy>>,
}

impl InboundPolicy for TunnelAuthz {
    fn check(&self, request: &InboundRequest<'_>) -> Verdict {
        let verdict = match &self.l4_ports {
            Some(ports) if !ports.contains(&request.target.port()) => Verdict::Allow,
            _ => self.policies.check_tunnel(request),
        };
        match (verdict, &self.host_check) {
            (Verdict::Allow, Some(host)) => host.check(request),
            (verdict, _) => verdict,
        }
    }
}

impl Mesh {
    /// Binds the inbound HBONE listener (`inbound.listen`, default `0.0.0.0:15008`): mTLS with
    /// this workload's SVID, tunnels to `inbound.forward` ports dialed locally, other ports
    /// served by `app`, and the policy files enforced.
    pub async fn serve(&self, app: InboundApp) -> Result<InboundServer, MeshError> {
        self.serve_with_check(app, None).await
    }

    /// Like [`serve`](Self::serve), with `host_check` asked about every tunnel the configured
    /// policies allow (any port): the embedding application's own allow/deny decision, such as
    /// the C ABI's callback. A denial answers 401, exactly like a policy denial. The check runs
    /// on the connection's task, so it must be fast and must not block.
    pub async fn serve_with_check(
        &self,
        app: InboundApp,
        host_check: Option<Arc<dyn InboundPolicy>>,
    ) -> Result<InboundServer, MeshError> {
        // No `inbound:` section: the defaults, as if it were written empty.
        let settings = self.inner.settings.inbound.clone().unwrap_or_default();
        let forward: HashMap<u16, SocketAddr> = settings.forward.clone().into_iter().collect();
        let policies = self.inner.authz.clone();
        let mut http_app = None;
        let mut connections = None;
        let (other, l4_ports) = match app {
            InboundApp::None => (None, None),
            InboundApp::Tunnels(handler) => (Some(Delivery::Handler(handler)), None),
            InboundApp::Connections(handler) => {
                connections = Some(handler.clone());
                let tunnels: TunnelHandler = Arc::new(move |tunnel| handler(tunnel.into()));
                (Some(Delivery::Handler(tunnels)), None)
            }
            InboundApp::Http(service) => {
                let guard_policies = policies.clone();
                let service = service.with_guard(Arc::new(move |request| {
                    let policies = guard_policies.clone();
                    Box::pin(async move { policies.check_request(request).await })
                }));
                http_app = Some(service.clone());
                (
                    Some(Delivery::Http(service)),
                    Some(forward.keys().copied().collect()),
                )
            }
        };
        let plaintext_refused = Arc::new(AtomicU64::new(0));
        let plaintext = super::plaintext::PlaintextDelivery {
            policies: policies.clone(),
            forward: forward.clone(),
            http: http_app,
            connections,
            refused: plaintext_refused.clone(),
            connect_timeout: HboneServerConfig::default().upstream_connect_timeout,
            telemetry: self.recording(),
        };
        let delivery = match other {
            None => Delivery::Forward(crate::hbone::ForwardTo::ByPort(forward)),
            Some(other) => Delivery::Split {
                forward,
                other: Box::new(other),
            },
        };
        let config = HboneServerConfig {
            listen: settings.listen,
            max_concurrent_streams: settings.max_concurrent_streams,
            workload: super::workload_info(&self.inner.settings),
            telemetry: self.recording(),
            ..HboneServerConfig::default()
        };
        let server = HboneServer::bind(self.inner.identity.tls.clone(), config, delivery)
            .await
            .map_err(|e| MeshError::Inbound {
                addr: settings.listen.to_string(),
                reason: e.to_string(),
            })?;
        server.set_plaintext(plaintext.into_handler());
        if policies.checks_tunnels() || host_check.is_some() {
            server.set_policy(TunnelAuthz {
                policies,
                l4_ports,
                host_check,
            });
        }
        Ok(InboundServer {
            server,
            drain_timeout: settings.drain_timeout,
            plaintext_refused,
        })
    }
}
