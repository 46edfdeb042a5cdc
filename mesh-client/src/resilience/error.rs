use std::time::Duration;

use mesh_core::resilience::ResourceKind;
use thiserror::Error;

use crate::http::BoxError;

/// A request through [`ResilientClient`](super::ResilientClient) failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The circuit breaker refused the request: too many in flight (or retries) for the service.
    #[error(
        "circuit breaker open for {host}: {kind:?} limit of {limit} reached; the request was not sent"
    )]
    Overflow {
        /// The service.
        host: String,
        /// Which limit.
        kind: ResourceKind,
        /// Its value.
        limit: u64,
    },
    /// The overall timeout expired.
    #[error("request to {host} timed out after {after:?} ({attempts} attempt(s))")]
    Timeout {
        /// The service.
        host: String,
        /// The limit.
        after: Duration,
        /// Attempts made.
        attempts: u32,
    },
    /// The last attempt failed without a response.
    #[error("request to {host} failed after {attempts} attempt(s): {source}")]
    Failed {
        /// The service.
        host: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure (a `TunnelError` for connection problems).
        source: BoxError,
    },
    /// The service has a VirtualService and none of its routes matches the request (Envoy
    /// answers 404 `route_not_found`).
    #[error("{0}")]
    NoRoute(String),
    /// The request itself is unusable (no host in the URI).
    #[error("invalid request: {0}")]
    Invalid(String),
}
