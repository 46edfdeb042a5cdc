//! Security policy as pure decision engines.
//!
//! Scope: each engine takes a description of a connection or request and returns a decision
//! that explains itself (which policy and rule decided, and why), so the same answer can be
//! enforced on the data path, written to logs, and reproduced offline by `meshctl`.
//!
//! - [`authz`]: Istio `AuthorizationPolicy` (ALLOW, DENY, AUDIT, CUSTOM; dry-run), loaded from
//!   Istio YAML as written and compiled into indexed matchers.
//! - [`authn`]: request authentication; [`authn::jwt`] is Istio `RequestAuthentication` (JWT
//!   from headers, query parameters or cookies; RSA, ECDSA and Ed25519 keys inline or fetched
//!   into a swappable store), answering pass (with `request.auth.*` for [`authz`]) or 401.
//! - [`peer_authn`]: Istio `PeerAuthentication` resolved per workload and port (mesh <
//!   namespace < workload, `UNSET` inheritance, `portLevelMtls`) into STRICT, PERMISSIVE or
//!   DISABLE, with the deciding policy.
//! - [`ratelimit`]: token-bucket rules keyed by request attributes (our own strict YAML), the
//!   [`ratelimit::RateLimiter`] trait shared by local and global limiters, and the in-memory
//!   [`ratelimit::LocalRateLimiter`] (bounded per-key memory); the Redis-backed global limiter
//!   is mesh-client's.
//!
//! Non-goals: no sockets on the request path (only a rate-limit backend and JWKS refresh may do
//! I/O), no certificate handling (that is `mesh-tls`), no HTTP serving and no calls to external
//! authorizers (that is `mesh-client`, which wires these engines into the inbound path).
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod authn;
pub mod authz;
mod documents;
pub mod peer_authn;
pub mod ratelimit;

pub use documents::{SecurityPolicies, parse_security_policies};
