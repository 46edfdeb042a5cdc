//! Serving a tower HTTP service inside HBONE tunnels.

use std::{convert::Infallible, fmt, future::Future, net::SocketAddr, pin::Pin, sync::Arc};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use mesh_core::SpiffeId;
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};
use tracing::Instrument;

use super::BoxError;
use crate::{
    hbone::H2Stream,
    observe::{
        TraceContext,
        http::{InboundHttp, RecordedBody},
    },
};

/// The caller's verified identity, inserted into every request's extensions.
///
/// ```ignore
/// async fn handler(Extension(peer): Extension<PeerIdentity>) -> String {
///     format!("hello {}", peer.id)
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerIdentity {
    /// The caller's SPIFFE ID, verified in the mTLS handshake.
    pub id: SpiffeId,
    /// The caller's TCP address.
    pub addr: SocketAddr,
    /// The tunnel's target on this workload (the CONNECT authority: our IP and the
    /// application port), which authorization sees as `destination.ip`/`destination.port`.
    pub target: SocketAddr,
}

/// Who sent a request, for every request served in-process, with or without mTLS.
///
/// Unlike [`PeerIdentity`] (inserted only when the peer proved an identity over HBONE), this
/// extension is on every request, including plaintext ones that a PeerAuthentication in
/// PERMISSIVE or DISABLE mode let in; for those `principal` is `None`, and authorization sees
/// no `source.principal` either. Code that requires an identity should read `PeerIdentity`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct InboundPeer {
    /// The verified SPIFFE ID (mTLS), or `None` for a plaintext peer.
    pub principal: Option<SpiffeId>,
    /// The caller's TCP address.
    pub addr: SocketAddr,
    /// Our side: the tunnel's target for HBONE, the listener's address for plaintext.
    pub target: SocketAddr,
}

impl InboundPeer {
    /// A plaintext peer (no principal) that connected from `addr` to our `target`.
    pub fn plaintext(addr: SocketAddr, target: SocketAddr) -> Self {
        Self {
            principal: None,
            addr,
            target,
        }
    }
}

type ServeFuture = Pin<
    Box<
        dyn Future<Output = Result<Response<UnsyncBoxBody<Bytes, BoxError>>, Infallible>>
            + Send
            + 'static,
    >,
>;
type ServeFn = dyn Fn(Request<Incoming>) -> ServeFuture + Send + Sync + 'static;

/// Runs before the application on every request: resolves to the request to serve (possibly
/// changed) or the response to answer instead (authentication, authorization and rate limits
/// plug in here).
pub(crate) type RequestGuard = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Guarded> + Send>>
        + Send
        + Sync
        + 'static,
>;

/// Headers a [`RequestGuard`] wants added to the application's response (an external
/// authorizer's `headers_to_downstream_on_allow`); put in the request's extensions, taken out
/// before the application sees the request.
#[derive(Clone, Debug, Default)]
pub(crate) struct AddResponseHeaders(pub(crate) Vec<(http::HeaderName, http::HeaderValue)>);

/// What a [`RequestGuard`] decided.
pub(crate) type Guarded = Result<Request<Incoming>, Box<Response<Bytes>>>;
/// A type-erased HTTP service for [`Delivery::Http`](crate::hbone::Delivery::Http).
///
/// Each tunnel is served with HTTP/1.1 or HTTP/2 (detected from the first bytes), and each
/// request carries a [`PeerIdentity`] extension. When the HBONE server drains, connections inside
/// tunnels are shut down gracefully too.
#[derive(Clone)]
pub struct HttpService {
    call: Arc<ServeFn>,
}

impl HttpService {
    /// Wraps a tower service (an axum `Router`, tonic `Routes`, a `service_fn`).
    pub fn new<S, B>(service: S) -> Self
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self {
            call: Arc::new(move |request| {
                let service = service.clone();
                Box::pin(async move {
                    // Service errors become 500s here: hyper would otherwise close the whole
                    // connection, failing every other request multiplexed on it.
                    Ok(match service.oneshot(request).await {
                        Ok(response) => {
                            response.map(|body| body.map_err(Into::into).boxed_unsync())
                        }
                        Err(e) => {
                            let e: BoxError = e.into();
                            tracing::warn!(error = %e, "HTTP service failed; answering 500");
                            let mut response = Response::new(
                                http_body_util::Full::new(Bytes::from_static(b"internal error"))
                                    .map_err(|never| match never {})
                                    .boxed_unsync(),
                            );
                            *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                            response
                        }
                    })
                })
            }),
        }
    }

    /// Puts `guard` in front of the service: a request it answers never reaches the service.
    pub(crate) fn with_guard(self, guard: RequestGuard) -> Self {
        let inner = self.call;
        Self {
            call: Arc::new(move |request| {
                let inner = inner.clone();
                let decided = guard(request);
                Box::pin(async move {
                    match decided.await {
                        Ok(mut request) => {
                            let add = request.extensions_mut().remove::<AddResponseHeaders>();
                            let mut response = inner(request).await?;
                            for (name, value) in add.map(|a| a.0).unwrap_or_default() {
                                response.headers_mut().append(name, value);
                            }
                            Ok(response)
                        }
                        Err(response) => Ok((*response).map(|body| {
                            http_body_util::Full::new(body)
                                .map_err(|never| match never {})
                                .boxed_unsync()
                        })),
                    }
                })
            }),
        }
    }

    /// Serves one tunnel until the HTTP connection inside it ends; `observe` records each
    /// request (metrics, trace context, access log) when telemetry is on.
    pub(crate) async fn serve(
        &self,
        stream: H2Stream,
        peer: PeerIdentity,
        drain: CancellationToken,
        observe: Option<InboundHttp>,
    ) {
        // Run the connection on a task of its own: hyper's connection future is `Send` only for
        // concrete types, which a spawned, non-generic future gives the compiler.
        let observe = observe.map(Arc::new);
        let inbound = InboundPeer {
            principal: Some(peer.id.clone()),
            addr: peer.addr,
            target: peer.target,
        };
        let task = tokio::spawn(serve_connection(
            self.call.clone(),
            stream,
            (Some(peer), inbound),
            drain,
            observe,
        ));
        if let Err(e) = task.await {
            tracing::warn!(error = %e, "HTTP service task panicked or was cancelled");
        }
    }

    /// Serves one plaintext TCP connection (a peer without mTLS, admitted by peer
    /// authentication) until it ends. Requests carry an [`InboundPeer`] without principal and
    /// no [`PeerIdentity`]; `observe` records them as HBONE requests are, with no source
    /// principal and `connection_security_policy="none"`.
    pub(crate) async fn serve_plaintext(
        &self,
        stream: tokio::net::TcpStream,
        peer: InboundPeer,
        drain: CancellationToken,
        observe: Option<InboundHttp>,
    ) {
        let task = tokio::spawn(serve_connection(
            self.call.clone(),
            stream,
            (None, peer),
            drain,
            observe.map(Arc::new),
        ));
        if let Err(e) = task.await {
            tracing::warn!(error = %e, "HTTP service task panicked or was cancelled");
        }
    }
}

async fn serve_connection<S>(
    call: Arc<ServeFn>,
    stream: S,
    (identity, peer): (Option<PeerIdentity>, InboundPeer),
    drain: CancellationToken,
    observe: Option<Arc<InboundHttp>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        if let Some(identity) = &identity {
            request.extensions_mut().insert(identity.clone());
        }
        request.extensions_mut().insert(peer.clone());
        let probe = observe.as_ref().map(|o| o.begin(&mut request));
        let span = tracing::info_span!(
            target: "mesh::http",
            "HTTP server",
            otel.kind = "server",
            http.request.method = %request.method(),
            url.path = request.uri().path(),
            client.address = %peer.addr,
            peer.principal = peer.principal.as_ref().map_or("", SpiffeId::as_str),
            trace_id = request.extensions().get::<TraceContext>().map(TraceContext::trace_id),
            http.response.status_code = tracing::field::Empty,
        );
        // Calls the handler makes through the mesh (HTTP client, tunnels) continue this trace.
        let trace = request.extensions().get::<TraceContext>().cloned();
        let response = call(request);
        async move {
            let response = match trace {
                Some(trace) => trace.scope(response).await?,
                None => response.await?,
            };
            tracing::Span::current()
                .record("http.response.status_code", response.status().as_u16());
            Ok::<_, Infallible>(match probe {
                Some(probe) => probe.respond(response),
                None => response.map(RecordedBody::plain),
            })
        }
        .instrument(span)
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "HTTP connection inside a tunnel ended with an error");
            }
            return;
        }
        () = drain.cancelled() => connection.as_mut().graceful_shutdown(),
    }
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "HTTP connection ended with an error while draining");
    }
}

impl fmt::Debug for HttpService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HttpService(..)")
    }
}
