//! The foundation of the mesh: types every other crate shares, with no I/O.
//!
//! `mesh-core` owns what a workload *is* and what the mesh *decides*, never how bytes move:
//!
//! - [`identity`]: SPIFFE IDs and trust domains, parsed exactly as the SPIFFE ID standard
//!   requires, with Istio's `spiffe://<td>/ns/<ns>/sa/<sa>` form as a first-class helper.
//!
//! Later layers add the service/endpoint model, the configuration schema, and the sans-I/O state
//! machines (load balancers, retry budgets, circuit breakers, outlier detection) with an injected
//! clock. Non-goals: this crate never opens sockets, spawns tasks, or depends on rustls or hyper;
//! that keeps it unit-testable, fuzzable and cheap to depend on.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod balance;
pub mod clock;
pub mod identity;
pub mod model;
pub mod resilience;
pub mod rng;

pub use identity::{SpiffeId, SpiffeIdError, TrustDomain};
