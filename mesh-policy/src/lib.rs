//! Security policy as pure decision engines.
//!
//! Scope: Istio `AuthorizationPolicy` (ALLOW/DENY/AUDIT/CUSTOM) compiled into indexed matchers,
//! `RequestAuthentication` (JWT), `PeerAuthentication` modes, and rate-limit decisions (local token
//! buckets; a global backend behind a trait). Each engine takes a description of a connection or
//! request and returns a decision that explains itself.
//!
//! Non-goals: no sockets on the request path (only a rate-limit backend and JWKS refresh may do
//! I/O), no certificate handling (that is `mesh-tls`), no HTTP serving (that is `mesh-client`).
//!
//! Status: the engines arrive with the security-policy work; this crate fixes their home and the
//! dependency direction (`mesh-core` below, `mesh-client` above).
#![forbid(unsafe_code)]
