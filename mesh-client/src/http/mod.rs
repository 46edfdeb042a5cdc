//! HTTP over the mesh with the ecosystem's own types.
//!
//! - Outbound: [`MeshConnector`] is a `tower::Service<Uri>`, so
//!   `hyper_util::client::legacy::Client::builder(..).build(connector)` and
//!   `tonic::transport::Endpoint::connect_with_connector(connector)` run over HBONE unchanged.
//! - Inbound: [`HttpService`] serves any `tower::Service<http::Request<Incoming>>` (an axum
//!   router, tonic routes) inside HBONE tunnels, with the caller's verified identity in each
//!   request's extensions as [`PeerIdentity`].

mod connector;
mod serve;

pub use connector::{
    MeshConnector, MeshStream, ResolveDestination, StaticDestinations, UpstreamInfo,
};
pub(crate) use serve::AddResponseHeaders;
pub use serve::{HttpService, InboundPeer, PeerIdentity};

/// The error type tower and hyper pass around.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
