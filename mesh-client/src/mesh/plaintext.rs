//! PeerAuthentication on the inbound listener: what happens to peers that connect without
//! mTLS (plaintext) on the HBONE port.
//!
//! The listener peeks at each connection's first bytes (see
//! [`PlaintextHandler`](crate::hbone::PlaintextHandler)): TLS goes on to mTLS and HBONE as
//! always, and HBONE is never refused by peer authentication (as in ambient mode). A plaintext
//! connection is judged by the mode of the **listener's port** (`portLevelMtls` keys on it;
//! a plaintext peer names no other destination port):
//!
//! - STRICT (also when no PeerAuthentication sets a mode: the embedded mesh requires mTLS
//!   unless a policy says otherwise) — closed at once, logged at debug and counted
//!   (`handshakes{direction="inbound",result="failure",reason="plaintext_refused"}` and
//!   [`InboundServer::plaintext_refused`](super::InboundServer::plaintext_refused));
//! - PERMISSIVE or DISABLE — served as a peer without principal: when `inbound.forward` has an
//!   entry for the listener's port, the connection is authorized at L4 (no
//!   `source.principal`) and its bytes are forwarded there; otherwise an
//!   [`InboundApp::Http`](super::InboundApp::Http) application serves it, each request
//!   carrying an [`InboundPeer`] without principal (and no
//!   [`PeerIdentity`](crate::http::PeerIdentity)) and authorized at L7 like any other, and
//!   recorded in Istio's metrics and the access log like any other (no source principal,
//!   `connection_security_policy="none"`).
//!   An [`InboundApp::Connections`](super::InboundApp::Connections) handler gets the raw
//!   connection (principal `None`) after the same L4 authorization. DISABLE accepts HBONE
//!   too, as ztunnel does. Plaintext connections with nothing to serve them (only
//!   [`InboundApp::Tunnels`](super::InboundApp::Tunnels), whose handler takes HBONE streams)
//!   are closed.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use super::policy::Policies;
use crate::{
    hbone::{PlaintextConnection, PlaintextHandler, PlaintextServe, Verdict},
    http::{HttpService, InboundPeer},
};

/// How plaintext connections are served, and the refusal count.
pub(super) struct PlaintextDelivery {
    pub(super) policies: Arc<Policies>,
    /// `inbound.forward`: a plaintext connection uses the listener port's entry.
    pub(super) forward: HashMap<u16, SocketAddr>,
    /// The in-process HTTP application (with the request guard in front).
    pub(super) http: Option<HttpService>,
    /// The application taking raw connections.
    pub(super) connections: Option<super::ConnectionHandler>,
    /// Plaintext connections refused because their port requires mTLS.
    pub(super) refused: Arc<AtomicU64>,
    /// Limit for dialing a forward target.
    pub(super) connect_timeout: Duration,
    pub(super) telemetry: Option<crate::observe::Telemetry>,
}

impl PlaintextDelivery {
    /// The handler to install on the HBONE server.
    pub(super) fn into_handler(self) -> PlaintextHandler {
        let this = Arc::new(self);
        Arc::new(move |connection| this.accept(connection))
    }

    fn accept(&self, connection: PlaintextConnection) -> Option<PlaintextServe> {
        let port = connection.local_addr.port();
        let peer_addr = connection.peer_addr;
        let (mode, why) = self.policies.peer_mode(port);
        if !mode.accepts_plaintext() {
            self.refused.fetch_add(1, Ordering::Relaxed);
            if let Some(t) = &self.telemetry {
                t.handshake(crate::observe::Direction::Inbound, Err("plaintext_refused"));
            }
            tracing::debug!(%peer_addr, port, reason = %why, "plaintext connection refused: mTLS required");
            return None;
        }
        if let Some(&upstream) = self.forward.get(&port) {
            let verdict = self
                .policies
                .check_l4(peer_addr, connection.local_addr, None);
            if let Verdict::Deny(reason) = verdict {
                tracing::info!(%peer_addr, port, %reason, "plaintext connection denied by policy");
                return None;
            }
            let timeout = self.connect_timeout;
            return Some(Box::pin(forward(connection, upstream, timeout)));
        }
        if let Some(handler) = self.connections.clone() {
            let verdict = self
                .policies
                .check_l4(peer_addr, connection.local_addr, None);
            if let Verdict::Deny(reason) = verdict {
                tracing::info!(%peer_addr, port, %reason, "plaintext connection denied by policy");
                return None;
            }
            let connection = super::InboundConnection::plaintext(
                connection.stream,
                peer_addr,
                connection.local_addr,
            );
            return Some(Box::pin(async move { handler(connection) }));
        }
        let Some(http) = self.http.clone() else {
            tracing::debug!(
                %peer_addr,
                port,
                "plaintext connection accepted by peer authentication but nothing serves it \
                 (forward the listener port in inbound.forward, or serve InboundApp::Http or \
                 InboundApp::Connections); closing"
            );
            return None;
        };
        let peer = InboundPeer::plaintext(peer_addr, connection.local_addr);
        let observe = self.telemetry.as_ref().map(|t| {
            crate::observe::http::InboundHttp::new(
                t.clone(),
                None,
                peer_addr,
                &::http::HeaderMap::new(),
            )
        });
        Some(Box::pin(async move {
            http.serve_plaintext(connection.stream, peer, connection.drain, observe)
                .await;
        }))
    }
}

/// Copies bytes between the plaintext peer and the forward target until both sides end.
async fn forward(connection: PlaintextConnection, upstream: SocketAddr, timeout: Duration) {
    let peer_addr = connection.peer_addr;
    let mut upstream_stream = match tokio::time::timeout(
        timeout,
        tokio::net::TcpStream::connect(upstream),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::info!(%peer_addr, %upstream, error = %e, "plaintext forward target unreachable");
            return;
        }
        Err(_) => {
            tracing::info!(%peer_addr, %upstream, "plaintext forward target did not answer in time");
            return;
        }
    };
    let _ = upstream_stream.set_nodelay(true);
    let mut stream = connection.stream;
    if let Err(e) = tokio::io::copy_bidirectional(&mut stream, &mut upstream_stream).await {
        tracing::debug!(%peer_addr, %upstream, error = %e, "plaintext forward ended with an error");
    }
}
