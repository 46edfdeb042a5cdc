//! An inbound HTTP handler runs inside its request's trace: calls it makes through the mesh
//! continue that trace without the handler passing it on. Real workloads over mTLS HBONE.

mod support;

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use mesh_client::{
    http::HttpService,
    mesh::{InboundApp, Mesh},
    observe::TraceContext,
};
use support::STEP;

const SERVER_ID: &str = "spiffe://cluster.local/ns/shop/sa/ledger";
const HOST: &str = "ledger.shop.svc.cluster.local";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn a_handler_sees_the_trace_of_its_request() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let server_mesh = Mesh::from_yaml(&format!(
        "identity: {{ spiffe_id: {SERVER_ID}, dev_ca: {{ dir: {} }} }}\ninbound: {{ listen: \"127.0.0.1:0\" }}",
        ca.display()
    ))
    .await
    .unwrap();
    // The handler answers with the trace it finds itself in, as an outbound call would see it.
    let app = HttpService::new(tower::service_fn(|_request: Request<Incoming>| async {
        let seen = TraceContext::current().map_or_else(|| "none".to_owned(), |t| t.trace_id());
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(seen))))
    }));
    let server = server_mesh.serve(InboundApp::Http(app)).await.unwrap();
    let client = Mesh::from_yaml(&format!(
        r#"
identity: {{ spiffe_id: spiffe://cluster.local/ns/shop/sa/checkout, dev_ca: {{ dir: {ca} }} }}
services:
  - host: {HOST}
    ports: [{{ port: 8080, protocol: http }}]
    identities: [{SERVER_ID}]
    endpoints: [{{ address: "127.0.0.1:8080", hbone_port: {port} }}]
"#,
        ca = ca.display(),
        port = server.local_addr().port(),
    ))
    .await
    .unwrap();
    let request = Request::get(format!("http://{HOST}:8080/"))
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .body(Bytes::new())
        .unwrap();
    let response = tokio::time::timeout(STEP, client.http_client().request(request))
        .await
        .unwrap()
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, TRACE_ID);
}
