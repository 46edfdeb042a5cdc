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
//!
//! Still to come here: rate-limit decisions (local token buckets; a global backend behind a
//! trait).
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
pub mod peer_authn;
