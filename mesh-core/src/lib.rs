//! The foundation of the mesh: types every other crate shares, with no I/O.
//!
//! `mesh-core` owns what a workload *is* and what the mesh *decides*, never how bytes move:
//!
//! - [`identity`]: SPIFFE IDs and trust domains, parsed exactly as the SPIFFE ID standard
//!   requires, with Istio's `spiffe://<td>/ns/<ns>/sa/<sa>` form as a first-class helper.
//! - [`model`]: services, endpoints, localities and versioned discovery [`Snapshot`]s.
//! - [`balance`]: load balancers (round robin, smooth weighted, random, power-of-two-choices
//!   peak-EWMA, ring hash, Maglev) behind Envoy's locality priorities and panic threshold.
//! - [`resilience`]: retry backoff and budget, circuit breaker, outlier detection.
//! - [`config`] and [`traffic`]: the mesh's own YAML config, and Istio's DestinationRule and
//!   VirtualService (retries, timeouts, routes) read as written, both into one typed traffic
//!   model that converts into the configurations of the state machines above.
//! - [`clock`] and [`rng`]: time and randomness as inputs, so all of the above is deterministic
//!   under test.
//!
//! # Sans-I/O
//!
//! Every decision-maker here is a plain state machine: it is fed events (a snapshot, a
//! response, a timer firing) and answers questions (which endpoint, may I retry, is this
//! endpoint ejected). Time comes from a [`Clock`](clock::Clock) or as a
//! [`Timestamp`](clock::Timestamp) argument and randomness from a seeded [`Rng`](rng::Rng), so a
//! test with a [`ManualClock`](clock::ManualClock) replays exactly, and a fuzzer can drive any
//! machine from bytes. `mesh-client` owns the sockets, tasks and timers and wires these
//! together; see [`balance::Balancer`] for the per-request calls and
//! [`resilience::OutlierDetector`] for the timer-driven ones.
//!
//! Non-goals: this crate never opens sockets, spawns tasks, or depends on rustls or hyper; that
//! keeps it unit-testable, fuzzable and cheap to depend on.
//!
//! [`Snapshot`]: model::Snapshot
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod balance;
pub mod clock;
pub mod config;
pub mod fast_hash;
pub mod identity;
pub mod model;
pub mod resilience;
pub mod rng;
pub mod traffic;

pub use identity::{SpiffeId, SpiffeIdError, TrustDomain};
