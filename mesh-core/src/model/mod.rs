//! What the mesh routes to: services, their endpoints, and versioned snapshots of both.
//!
//! Discovery backends (static files, DNS, xDS, all in `mesh-client`) translate what they learn
//! into these types; the balancers and resilience state machines consume them. The model is
//! deliberately plain data with validated names and no serialisation: config loading maps into it
//! later, and each consumer keeps whatever derived state it needs.
//!
//! - [`ServiceName`]: a validated DNS hostname such as `reviews.shop.svc.cluster.local`.
//! - [`Service`] and [`Port`]: what a client may call, and whom it expects to answer
//!   ([`Service::expected_identities`]).
//! - [`Endpoint`], [`Health`], [`Locality`]: one instance that serves a service.
//! - [`Snapshot`]: everything at one version, with [`Snapshot::changes_since`] so a watcher only
//!   rebuilds balancers for services that changed.

mod endpoint;
mod error;
mod locality;
mod service;
mod service_name;
mod snapshot;

pub use endpoint::{DEFAULT_HBONE_PORT, Endpoint, Health};
pub use error::{LocalityError, ServiceNameError};
pub use locality::{Locality, LocalityMatch};
pub use service::{Port, Protocol, Service};
pub use service_name::ServiceName;
pub use snapshot::{Snapshot, SnapshotChanges};
