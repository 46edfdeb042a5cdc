//! HBONE: HTTP/2 CONNECT tunnels inside mutual TLS, Istio ambient's data path.
//!
//! Wire-compatible with Istio's ztunnel (see `shared/design/hbone.md`): TLS 1.3 with ALPN `h2`
//! and no SNI; a CONNECT carrying only `:authority` (the dialed IP and the target port) plus
//! `baggage`, `forwarded` and `traceparent`; data only after `200`; END_STREAM as TCP FIN and
//! RST_STREAM as TCP RST; ztunnel's HTTP/2 windows, frame size, stream limits and keepalive.
//!
//! - [`HboneClient`] opens tunnels over a pool of multiplexed connections.
//! - [`HboneServer`] accepts them, validates and authorizes each CONNECT, and forwards the
//!   bytes to a TCP target or hands them to an in-process handler.
//! - [`H2Stream`] is a tunnel as an `AsyncRead + AsyncWrite` byte stream.

mod client;
mod connection;
mod deadline;
mod error;
mod headers;
pub mod server;
pub mod settings;
mod stream;

pub use client::{Destination, HboneClient, HboneClientConfig, PoolStats};
pub use error::TunnelError;
pub use headers::{TunnelOptions, WorkloadInfo};
pub use server::{
    AllowAll, Delivery, ForwardTo, HboneServer, HboneServerConfig, InboundPolicy, InboundRequest,
    InboundTunnel, PlaintextConnection, PlaintextHandler, PlaintextServe, ServerStats,
    TunnelHandler, Verdict,
};
pub use stream::H2Stream;
