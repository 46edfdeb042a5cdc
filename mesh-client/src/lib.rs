//! The mesh runtime a service links in.
//!
//! `mesh-client` is what users touch: it moves bytes between meshed workloads with the identity
//! and policy the lower crates provide. Today it holds the HBONE data path ([`hbone`]): pooled
//! HTTP/2 CONNECT tunnels over mutual TLS, outbound and inbound, wire-compatible with Istio's
//! ztunnel. Discovery, resilience layers, the admin endpoint and tower/hyper integration build on
//! it.
//!
//! Runtime model: bring your own tokio runtime. Clients and servers spawn their background tasks
//! (connection drivers, keepalive, idle reaping) on it and stop them when dropped or shut down.
//!
//! Non-goals: certificate handling (`mesh-tls`) and policy decisions (`mesh-policy`); this crate
//! wires them in.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod authn;
pub mod discovery;
pub mod hbone;
pub mod http;
pub mod mesh;
mod net;
pub mod observe;
pub mod ratelimit;
pub mod resilience;
pub mod routing;
