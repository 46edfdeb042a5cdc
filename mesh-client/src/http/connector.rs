//! A `tower::Service<Uri>` that dials through HBONE, for hyper and tonic clients.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::Uri;
use hyper_util::{
    client::legacy::connect::{Connected, Connection},
    rt::TokioIo,
};
use mesh_core::{SpiffeId, resilience::Outcome};

use crate::hbone::{Destination, H2Stream, HboneClient, TunnelError};

/// Maps the host and port of a request URI to the HBONE destination that serves it.
///
/// Discovery backends implement this; [`StaticDestinations`] is the fixed-table version.
pub trait ResolveDestination: Send + Sync + 'static {
    /// The destination for `host:port`, or `None` if the mesh does not know it.
    fn resolve(&self, host: &str, port: u16) -> Option<Destination>;

    /// Feedback for passive health checking: what happened when `host`'s endpoint at
    /// `endpoint` (the CONNECT authority) was used. Balancing resolvers feed their outlier
    /// detector with it; the default ignores it.
    fn report(&self, host: &str, endpoint: SocketAddr, outcome: Outcome) {
        let _ = (host, endpoint, outcome);
    }
}

/// Which upstream served a response: hyper copies it into every response's extensions, so
/// callers (and the resilience layer) can attribute outcomes to endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpstreamInfo {
    /// The service host the request named (shared: a copy rides on every response).
    pub host: Arc<str>,
    /// The endpoint (CONNECT authority: workload IP and target port).
    pub endpoint: SocketAddr,
    /// The endpoint's verified SPIFFE ID.
    pub peer: Option<SpiffeId>,
    /// The `baggage` the endpoint described itself with on the tunnel (namespace, workload,
    /// canonical service), which the metrics' `destination_*` labels are filled from.
    pub peer_baggage: Option<http::HeaderValue>,
}

/// A fixed table from `host:port` to destination.
#[derive(Clone, Debug, Default)]
pub struct StaticDestinations {
    table: HashMap<String, Destination>,
}

impl StaticDestinations {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `host:port` (as written in request URIs) to `dest`.
    #[must_use]
    pub fn with(mut self, host: &str, port: u16, dest: Destination) -> Self {
        self.table.insert(format!("{host}:{port}"), dest);
        self
    }
}

impl ResolveDestination for StaticDestinations {
    fn resolve(&self, host: &str, port: u16) -> Option<Destination> {
        self.table.get(&format!("{host}:{port}")).cloned()
    }
}

/// Dials HBONE tunnels for HTTP clients: `Uri` in, byte stream out.
///
/// ```no_run
/// # async fn demo(hbone: mesh_client::hbone::HboneClient, dest: mesh_client::hbone::Destination) -> Result<(), Box<dyn std::error::Error>> {
/// use http_body_util::Empty;
/// use mesh_client::http::{MeshConnector, StaticDestinations};
/// let routes = StaticDestinations::new().with("inventory.shop", 80, dest);
/// let connector = MeshConnector::new(hbone, routes);
/// let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
///     .build::<_, Empty<bytes::Bytes>>(connector);
/// let response = client.get("http://inventory.shop/items".parse()?).await?;
/// # drop(response); Ok(()) }
/// ```
#[derive(Clone)]
pub struct MeshConnector {
    client: HboneClient,
    routes: Arc<dyn ResolveDestination>,
}

impl MeshConnector {
    /// A connector opening tunnels with `client` to destinations chosen by `routes`.
    pub fn new(client: HboneClient, routes: impl ResolveDestination) -> Self {
        Self::with_shared_routes(client, Arc::new(routes))
    }

    /// Like [`new`](Self::new), with routes shared with other components.
    pub fn with_shared_routes(client: HboneClient, routes: Arc<dyn ResolveDestination>) -> Self {
        Self { client, routes }
    }

    /// Reports an outcome for an endpoint to the routes (see [`ResolveDestination::report`]).
    pub fn report(&self, upstream: &UpstreamInfo, outcome: Outcome) {
        self.routes
            .report(&upstream.host, upstream.endpoint, outcome);
    }
}

impl fmt::Debug for MeshConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshConnector").finish_non_exhaustive()
    }
}

impl tower::Service<Uri> for MeshConnector {
    type Response = MeshStream;
    type Error = TunnelError;
    type Future = Pin<Box<dyn Future<Output = Result<MeshStream, TunnelError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let client = self.client.clone();
        let routes = self.routes.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| TunnelError::InvalidRequest(format!("URI {uri} has no host")))?;
            let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                Some("https") => 443,
                _ => 80,
            });
            let dest = routes.resolve(host, port).ok_or_else(|| {
                TunnelError::InvalidRequest(format!(
                    "no mesh destination is known for {host}:{port}; add it to the destination table or discovery"
                ))
            })?;
            let stream = match client.connect(&dest).await {
                Ok(stream) => stream,
                Err(e) => {
                    routes.report(host, dest.authority(), Outcome::LocalOriginFailure);
                    return Err(e);
                }
            };
            Ok(MeshStream {
                upstream: UpstreamInfo {
                    host: host.into(),
                    endpoint: dest.authority(),
                    peer: stream.peer_identity().cloned(),
                    peer_baggage: stream.peer_baggage().cloned(),
                },
                io: TokioIo::new(stream),
            })
        })
    }
}

/// An HBONE tunnel in hyper's I/O traits, carrying the server's verified identity.
#[derive(Debug)]
pub struct MeshStream {
    io: TokioIo<H2Stream>,
    upstream: UpstreamInfo,
}

impl MeshStream {
    /// The server's verified SPIFFE ID.
    pub fn peer_identity(&self) -> Option<&SpiffeId> {
        self.upstream.peer.as_ref()
    }

    /// Which endpoint this stream reaches.
    pub fn upstream(&self) -> &UpstreamInfo {
        &self.upstream
    }
}

impl Connection for MeshStream {
    fn connected(&self) -> Connected {
        // hyper copies this into every response's extensions.
        Connected::new().extra(self.upstream.clone())
    }
}

impl hyper::rt::Read for MeshStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for MeshStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
