//! From a service name to one endpoint: discovery snapshots feeding per-service balancers.
//!
//! [`BalancedDestinations`] implements [`ResolveDestination`](crate::http::ResolveDestination),
//! so the HTTP connector can call services by name (`http://inventory.shop:8080/`) and every new
//! connection goes to an endpoint chosen by the service's load-balancing policy, among endpoints
//! that discovery reports healthy. Expected identities come from the endpoint (when discovery
//! knows its SPIFFE ID) or else from the service's allowed identities. [`HealthChecks`] probes
//! endpoints actively and marks failing ones unhealthy in the balancers.

mod balanced;
mod health;

pub use balanced::{BalancedDestinations, OutlierStatus, Pick};
pub use health::HealthChecks;
