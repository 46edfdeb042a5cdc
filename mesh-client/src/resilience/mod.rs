//! Requests that survive failures: timeouts, retries under a budget, and circuit breaking.
//!
//! [`ResilientClient`] wraps hyper's pooled client over the mesh connector and applies an
//! [`HttpPolicy`] per request, the way Istio's VirtualService (timeouts, retries) and
//! DestinationRule (connectionPool) do — in-process. The decisions come from `mesh-core`'s
//! sans-I/O state machines: [`RetryBudget`](mesh_core::resilience::RetryBudget) (no retry
//! storms), [`Backoff`](mesh_core::resilience::Backoff) (full jitter) and
//! [`CircuitBreaker`](mesh_core::resilience::CircuitBreaker) (fail fast on overflow). Per-service
//! state is kept per request host.

mod authority;
mod client;
mod error;
mod http1_pool;
mod http2_shared;
mod policy;
mod routed;

pub use client::ResilientClient;
pub use error::RequestError;
pub use policy::{HttpPolicy, RetryOn};

/// The header telling the upstream how long the caller will wait, in milliseconds (Envoy's
/// name, so Envoy-fronted and mesh-aware services can honour it).
pub const DEADLINE_HEADER: &str = "x-envoy-expected-rq-timeout-ms";
