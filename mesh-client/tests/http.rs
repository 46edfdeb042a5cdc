//! hyper and tonic over the mesh, unchanged: the connector outbound, tower services inbound.

mod support;

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use mesh_client::{
    hbone::Delivery,
    http::{HttpService, MeshConnector, PeerIdentity, StaticDestinations},
};
use support::*;

/// Answers with the caller's identity, the method and the path.
async fn whoami(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let peer = request
        .extensions()
        .get::<PeerIdentity>()
        .map(|p| p.id.to_string());
    let body = format!(
        "{} {} from {}",
        request.method(),
        request.uri().path(),
        peer.unwrap_or_else(|| "nobody".into())
    );
    Ok(Response::new(Full::new(Bytes::from(body))))
}

async fn http_server(mesh: &Mesh) -> mesh_client::hbone::HboneServer {
    let service = HttpService::new(tower::service_fn(whoami));
    mesh.server(Delivery::Http(service)).await
}

#[tokio::test]
async fn hyper_http1_client_over_the_mesh() {
    let mesh = Mesh::new();
    let server = http_server(&mesh).await;
    let hbone = mesh.client();
    let routes = StaticDestinations::new().with("inventory.shop", 80, dest(&server, 80));
    let client = Client::builder(TokioExecutor::new())
        .build::<_, Empty<Bytes>>(MeshConnector::new(hbone.clone(), routes));
    for path in ["/items", "/items/42", "/health"] {
        let response = tokio::time::timeout(
            STEP,
            client.get(format!("http://inventory.shop{path}").parse().unwrap()),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, format!("GET {path} from {CLIENT_ID}"));
    }
    // Keep-alive: all requests rode one tunnel on one connection.
    assert_eq!(hbone.stats().connections_opened, 1);
    assert!(hbone.stats().streams_open <= 1);
}

#[tokio::test]
async fn hyper_http2_client_over_the_mesh() {
    let mesh = Mesh::new();
    let server = http_server(&mesh).await;
    let routes = StaticDestinations::new().with("inventory.shop", 80, dest(&server, 80));
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build::<_, Full<Bytes>>(MeshConnector::new(mesh.client(), routes));
    let request = Request::post("http://inventory.shop/orders")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let response = tokio::time::timeout(STEP, client.request(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, format!("POST /orders from {CLIENT_ID}"));
}

#[tokio::test]
async fn unknown_host_is_a_clear_error() {
    let mesh = Mesh::new();
    let client = Client::builder(TokioExecutor::new())
        .build::<_, Empty<Bytes>>(MeshConnector::new(mesh.client(), StaticDestinations::new()));
    let err = client
        .get("http://nowhere.shop/".parse().unwrap())
        .await
        .unwrap_err();
    let source = std::error::Error::source(&err)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        source.contains("no mesh destination is known for nowhere.shop:80"),
        "{err:?}"
    );
}

#[tokio::test]
async fn tonic_client_and_server_over_the_mesh() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let mesh = Mesh::new();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("shop.Inventory", tonic_health::ServingStatus::Serving)
        .await;
    let routes = tonic::service::Routes::new(health);
    let server = mesh.server(Delivery::Http(HttpService::new(routes))).await;

    let table = StaticDestinations::new().with("inventory.shop", 50051, dest(&server, 50051));
    let channel = tonic::transport::Endpoint::from_static("http://inventory.shop:50051")
        .connect_with_connector(MeshConnector::new(mesh.client(), table))
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let response = tokio::time::timeout(
        STEP,
        client.check(HealthCheckRequest {
            service: "shop.Inventory".into(),
        }),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(response.into_inner().status(), ServingStatus::Serving);
    let missing = client
        .check(HealthCheckRequest {
            service: "shop.Nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
}
