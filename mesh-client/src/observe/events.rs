//! The mesh's own events, recorded where they happen: handshakes, retries, breaker overflows,
//! authorization decisions and rate-limit rejections. These are rare (or per connection), so
//! they look their series up by label each time.

use mesh_core::resilience::ResourceKind;
use mesh_tls::HandshakeError;

use super::{
    Telemetry,
    families::{AuthzLabels, HandshakeLabels, OverflowLabels, RateLimitLabels, ServiceLabel},
};
use crate::hbone::TunnelError;

/// Which way a connection goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

/// Where a policy was applied: per tunnel or per HTTP request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layer {
    Tcp,
    Http,
}

impl Layer {
    fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Http => "http",
        }
    }
}

/// A short, bounded reason for a failed handshake.
pub(crate) fn handshake_reason(e: &HandshakeError) -> &'static str {
    match e {
        HandshakeError::Timeout { .. } => "timeout",
        HandshakeError::PeerCertificate(_) => "peer_certificate_rejected",
        HandshakeError::NoClientCertificate => "no_client_certificate",
        HandshakeError::RejectedByPeer { .. } => "rejected_by_peer",
        HandshakeError::NoLocalIdentity => "no_local_identity",
        HandshakeError::Protocol(_) => "protocol",
        HandshakeError::Io(_) => "io",
        _ => "other",
    }
}

/// The reason an outbound connection could not be established.
pub(crate) fn connect_reason(e: &TunnelError) -> &'static str {
    match e {
        TunnelError::Connect { .. } => "connect",
        TunnelError::Tls { source, .. } => handshake_reason(source),
        TunnelError::NotHbone { .. } => "no_alpn_h2",
        TunnelError::Http2 { .. } => "http2",
        TunnelError::Timeout { .. } => "timeout",
        TunnelError::PoolClosed => "pool_closed",
        _ => "other",
    }
}

fn kind_name(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Connection => "connections",
        ResourceKind::PendingRequest => "pending",
        ResourceKind::Request => "requests",
        ResourceKind::Retry => "retries",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

impl Telemetry {
    /// A handshake finished: `Ok` or the failure's short reason.
    pub(crate) fn handshake(&self, direction: Direction, result: Result<(), &'static str>) {
        let (result, reason) = match result {
            Ok(()) => ("success", ""),
            Err(reason) => ("failure", reason),
        };
        self.inner
            .mesh
            .handshakes
            .get_or_create(&HandshakeLabels {
                direction: direction.as_str(),
                result,
                reason,
            })
            .inc();
    }

    /// A retry was sent to `service`.
    pub(crate) fn retry(&self, service: &str) {
        self.inner
            .mesh
            .retries
            .get_or_create(&ServiceLabel {
                destination_service: service.to_owned(),
            })
            .inc();
    }

    /// A retry was wanted but the budget (or the breaker's retry limit) refused it.
    pub(crate) fn retry_budget_exhausted(&self, service: &str) {
        self.inner
            .mesh
            .retry_budget_exhausted
            .get_or_create(&ServiceLabel {
                destination_service: service.to_owned(),
            })
            .inc();
    }

    /// A circuit breaker refused a `kind` resource for `service`.
    pub(crate) fn breaker_overflow(&self, service: &str, kind: ResourceKind) {
        self.inner
            .mesh
            .breaker_overflows
            .get_or_create(&OverflowLabels {
                destination_service: service.to_owned(),
                kind: kind_name(kind),
            })
            .inc();
    }

    /// An authorization decision: `allow` or `deny` by `policy` (`None`: no policy decided).
    pub(crate) fn authz(&self, layer: Layer, allowed: bool, policy: Option<&str>) {
        self.inner
            .mesh
            .authz
            .get_or_create(&AuthzLabels {
                layer: layer.as_str(),
                action: if allowed { "allow" } else { "deny" },
                policy: policy.unwrap_or("none").to_owned(),
            })
            .inc();
    }

    /// A rate limit refused a tunnel or request (`global`: the Redis-shared limiter;
    /// `service_error`: refused because the limiter could not answer and fails closed).
    pub(crate) fn rate_limited(&self, layer: Layer, global: bool, service_error: bool) {
        self.inner
            .mesh
            .rate_limited
            .get_or_create(&RateLimitLabels {
                limiter: if global { "global" } else { "local" },
                layer: layer.as_str(),
                reason: if service_error {
                    "service_error"
                } else {
                    "over_limit"
                },
            })
            .inc();
    }
}
