//! Why a mesh could not start or an operation through it failed.

use thiserror::Error;

use crate::hbone::TunnelError;

/// A [`Mesh`](super::Mesh) operation failed. Messages name the setting or target involved and
/// what to change.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MeshError {
    /// The configuration document is invalid (the message carries the field path).
    #[error("invalid mesh configuration: {0}")]
    Config(#[from] mesh_core::config::ConfigError),
    /// The workload identity could not be set up.
    #[error("identity: {0}")]
    Identity(String),
    /// A discovery backend could not start.
    #[error("discovery: {0}")]
    Discovery(String),
    /// A policy file could not be read or is invalid.
    #[error("policy file {path}: {reason}")]
    Policy {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A traffic file (DestinationRule, VirtualService) could not be read or is invalid, or
    /// the traffic resources do not fit together.
    #[error("traffic policy {path}: {reason}")]
    Traffic {
        /// The file (or "traffic policy" for cross-reference problems).
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The inbound listener could not start.
    #[error("inbound listener on {addr}: {reason}")]
    Inbound {
        /// The configured address.
        addr: String,
        /// The operating system's reason.
        reason: String,
    },
    /// The admin endpoint could not start.
    #[error(
        "admin endpoint on {addr}: {reason}; choose another admin.listen (port 0 picks a free one)"
    )]
    Admin {
        /// The configured address.
        addr: String,
        /// The operating system's reason.
        reason: String,
    },
    /// The `telemetry:` section asks for something this build or setup cannot do (OTLP
    /// export without the `otlp` feature, an unusable collector address).
    #[error("telemetry: {0}")]
    Telemetry(String),
    /// A target was not `host:port`.
    #[error("{0:?} is not host:port; write it as inventory.shop.svc.cluster.local:8080")]
    BadTarget(String),
    /// Discovery knows no reachable endpoint for the service (or none with an identity to pin).
    #[error(
        "no endpoint of {host}:{port} can be reached through the mesh (unknown service, \
             undeclared port, no healthy endpoint, or no SPIFFE identity to verify)"
    )]
    NoEndpoint {
        /// The service.
        host: String,
        /// The port asked for.
        port: u16,
    },
    /// The service's circuit breaker refused another connection.
    #[error(
        "circuit breaker for {host}: {limit} connections already open (connectionPool.tcp.maxConnections); \
             retry later or raise the limit"
    )]
    Overflow {
        /// The service.
        host: String,
        /// The limit reached.
        limit: u64,
    },
    /// The tunnel failed after every allowed attempt; the last error is kept.
    #[error("tunnel to {host} failed after {attempts} attempt(s): {source}")]
    Tunnel {
        /// The service.
        host: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure (boxed: it is large, and this error travels by value).
        #[source]
        source: Box<TunnelError>,
    },
}
