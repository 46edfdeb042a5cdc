//! gRPC over the mesh with tonic: a channel (one multiplexed tunnel at a time) and a
//! per-request client (routing, retries and limits per call).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::{Mesh, MeshError};
use crate::{
    http::BoxError,
    resilience::{RequestError, ResilientClient},
};

impl Mesh {
    /// A tonic channel to `uri` (`http://<service>:<port>`): one HBONE tunnel to an endpoint
    /// picked by the service's balancer, carrying every call multiplexed over HTTP/2, and
    /// re-dialed (to a new pick) when it breaks. Supports every kind of streaming. Calls are
    /// not retried and are balanced per tunnel, not per call; use
    /// [`grpc_client`](Self::grpc_client) for per-call routing and retries.
    pub fn grpc_channel(&self, uri: &str) -> Result<tonic::transport::Channel, MeshError> {
        let endpoint = tonic::transport::Endpoint::from_shared(uri.to_owned())
            .map_err(|e| MeshError::BadTarget(format!("{uri}: {e}")))?;
        Ok(endpoint.connect_with_connector_lazy(self.connector()))
    }

    /// A tonic transport that sends every call through [`http_client`](Self::http_client):
    /// VirtualService routing, retries (including Istio's gRPC `retryOn` codes), timeouts,
    /// limits and per-call balancing. The request message stream is collected before sending
    /// so it can be replayed, so unary and server-streaming calls work fully, while
    /// client-streaming calls are sent when the client finishes its stream; interactive
    /// bidirectional streams need [`grpc_channel`](Self::grpc_channel).
    ///
    /// ```ignore
    /// let mut client = HealthClient::new(mesh.grpc_client());
    /// ```
    pub fn grpc_client(&self) -> GrpcClient {
        GrpcClient {
            http: self.http_client(),
        }
    }
}

/// See [`Mesh::grpc_client`]: a `tower::Service` tonic's generated clients accept.
#[derive(Clone, Debug)]
pub struct GrpcClient {
    http: ResilientClient,
}

impl<B> tower::Service<Request<B>> for GrpcClient
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Incoming>;
    type Error = RequestError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Incoming>, RequestError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let http = self.http.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| RequestError::Invalid(format!("request body: {}", e.into())))?
                .to_bytes();
            http.request(Request::from_parts(parts, body)).await
        })
    }
}
