//! The hook where authorization plugs into the inbound path.

use std::net::SocketAddr;

use http::HeaderMap;
use mesh_core::SpiffeId;

/// What the inbound side knows about a tunnel request when it asks for a verdict.
#[derive(Debug)]
#[non_exhaustive]
pub struct InboundRequest<'a> {
    /// The client's verified SPIFFE ID.
    pub peer: &'a SpiffeId,
    /// The client's TCP address.
    pub peer_addr: SocketAddr,
    /// Our address the connection arrived on.
    pub local_addr: SocketAddr,
    /// The CONNECT target (`:authority`).
    pub target: SocketAddr,
    /// The CONNECT request headers (`baggage`, `forwarded`, `traceparent`, ...).
    pub headers: &'a HeaderMap,
}

/// The answer of an [`InboundPolicy`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let the tunnel through.
    Allow,
    /// Refuse it: the client gets HTTP 401 and the stream is closed. The reason is logged.
    Deny(String),
}

/// Decides whether an inbound tunnel may proceed (L4 authorization).
///
/// Called once per CONNECT, before the target is dialed. Implementations must be fast and must
/// not block: they run on the connection's task.
pub trait InboundPolicy: Send + Sync + 'static {
    /// Judges one tunnel request.
    fn check(&self, request: &InboundRequest<'_>) -> Verdict;
}

/// Allows everything: the default until a policy is configured.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl InboundPolicy for AllowAll {
    fn check(&self, _request: &InboundRequest<'_>) -> Verdict {
        Verdict::Allow
    }
}

impl<F> InboundPolicy for F
where
    F: Fn(&InboundRequest<'_>) -> Verdict + Send + Sync + 'static,
{
    fn check(&self, request: &InboundRequest<'_>) -> Verdict {
        self(request)
    }
}
