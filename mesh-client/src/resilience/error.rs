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

/// How Envoy would answer and flag a request that failed this way: the status recorded in
/// `response_code` and the response flags (`(0, _)`: the request was never formed; not
/// recorded).
pub(crate) fn envoy_failure(e: &RequestError) -> (u16, crate::observe::ResponseFlags) {
    use crate::observe::ResponseFlags as F;
    match e {
        RequestError::Overflow { .. } => (503, F::UPSTREAM_OVERFLOW),
        RequestError::Timeout { .. } => (504, F::UPSTREAM_REQUEST_TIMEOUT),
        RequestError::NoRoute(_) => (404, F::NO_ROUTE_FOUND),
        RequestError::Failed {
            attempts, source, ..
        } => {
            let mut flags = if source.to_string().starts_with("no reachable endpoint")
                || source.to_string().contains("no mesh destination is known")
            {
                F::NO_HEALTHY_UPSTREAM
            } else if find::<crate::hbone::TunnelError>(source.as_ref()).is_some() {
                F::UPSTREAM_CONNECTION_FAILURE
            } else if source.to_string().contains("timed out") {
                F::UPSTREAM_REQUEST_TIMEOUT
            } else {
                F::UPSTREAM_CONNECTION_TERMINATION
            };
            if *attempts > 1 {
                flags |= F::UPSTREAM_RETRY_LIMIT_EXCEEDED;
            }
            (503, flags)
        }
        RequestError::Invalid(_) => (0, F::NONE),
    }
}

fn find<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current = Some(e);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        current = error.source();
    }
    None
}
