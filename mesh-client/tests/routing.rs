//! Calling a service by name: discovery -> balancer -> HBONE, with hyper on top.

mod support;

use std::{collections::HashMap, convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use mesh_client::{
    discovery::StaticDiscovery,
    hbone::{Delivery, HboneServer},
    http::{HttpService, MeshConnector},
    routing::BalancedDestinations,
};
use mesh_core::{
    balance::Policy,
    model::{Endpoint, Health, Service, ServiceName, Snapshot},
};
use support::*;

async fn named_server(mesh: &Mesh, name: &'static str) -> HboneServer {
    let service = HttpService::new(tower::service_fn(
        move |_req: Request<Incoming>| async move {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(name))))
        },
    ));
    mesh.server(Delivery::Http(service)).await
}

fn snapshot(version: u64, servers: &[(&HboneServer, Health)]) -> Snapshot {
    let service = Service::new(ServiceName::new("inventory.shop").unwrap())
        .with_expected_identity(id(SERVER_ID));
    let endpoints: Vec<Endpoint> = servers
        .iter()
        .enumerate()
        .map(|(i, (server, health))| {
            // Distinct target ports make the endpoints distinct; HBONE goes to each server.
            Endpoint::new(format!("127.0.0.1:{}", 8000 + i).parse().unwrap())
                .with_hbone_port(server.local_addr().port())
                .with_health(*health)
        })
        .collect();
    Snapshot::new(version).with_service(service, endpoints.into())
}

async fn tally(client: &Client<MeshConnector, Empty<Bytes>>, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let response =
            tokio::time::timeout(STEP, client.get("http://inventory.shop/".parse().unwrap()))
                .await
                .unwrap()
                .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        *counts
            .entry(String::from_utf8(body.to_vec()).unwrap())
            .or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn round_robin_across_discovered_endpoints_follows_updates() {
    let mesh = Mesh::new();
    let (a, b, c) = (
        named_server(&mesh, "a").await,
        named_server(&mesh, "b").await,
        named_server(&mesh, "c").await,
    );
    let discovery = Arc::new(StaticDiscovery::new(snapshot(
        1,
        &[
            (&a, Health::Healthy),
            (&b, Health::Healthy),
            (&c, Health::Healthy),
        ],
    )));
    let routes = BalancedDestinations::new(discovery.clone(), Policy::RoundRobin).unwrap();
    // No idle pooling in hyper: every request makes a new connection, so every request is a pick.
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build::<_, Empty<Bytes>>(MeshConnector::new(mesh.client(), routes));

    let counts = tally(&client, 30).await;
    assert_eq!(counts.get("a"), Some(&10), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&10), "{counts:?}");
    assert_eq!(counts.get("c"), Some(&10), "{counts:?}");

    // Discovery marks b unhealthy: it gets nothing while a and c stay healthy.
    discovery.publish(snapshot(
        2,
        &[
            (&a, Health::Healthy),
            (&b, Health::Unhealthy),
            (&c, Health::Healthy),
        ],
    ));
    let counts = tally(&client, 20).await;
    assert_eq!(counts.get("b"), None, "{counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 20);
}

#[tokio::test]
async fn unknown_services_and_ports_are_not_resolved() {
    let mesh = Mesh::new();
    let a = named_server(&mesh, "a").await;
    let discovery = Arc::new(StaticDiscovery::new(snapshot(1, &[(&a, Health::Healthy)])));
    let routes = BalancedDestinations::new(discovery, Policy::RoundRobin).unwrap();
    assert!(routes.pick("inventory.shop", 80).is_some());
    assert!(
        routes.pick("INVENTORY.shop.", 80).is_some(),
        "host names are case-insensitive"
    );
    assert!(routes.pick("payments.shop", 80).is_none());
}

#[tokio::test]
async fn a_failing_endpoint_is_ejected_and_returns_after_its_ejection_time() {
    use mesh_client::resilience::{HttpPolicy, ResilientClient};
    use mesh_core::resilience::OutlierConfig;
    use std::sync::atomic::{AtomicBool, Ordering};

    let mesh = Mesh::new();
    let a = named_server(&mesh, "a").await;
    // b answers 503 while `broken` is set.
    let broken = Arc::new(AtomicBool::new(true));
    let flag = broken.clone();
    let b = mesh
        .server(Delivery::Http(HttpService::new(tower::service_fn(
            move |_req: Request<Incoming>| {
                let failing = flag.load(Ordering::SeqCst);
                async move {
                    let mut response = Response::new(Full::new(Bytes::from_static(b"b")));
                    if failing {
                        *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    Ok::<_, Infallible>(response)
                }
            },
        ))))
        .await;
    let discovery = Arc::new(StaticDiscovery::new(snapshot(
        1,
        &[(&a, Health::Healthy), (&b, Health::Healthy)],
    )));
    let outlier = OutlierConfig {
        consecutive_5xx: 2,
        base_ejection_time: Duration::from_millis(300),
        max_ejection_percent: 100,
        interval: Duration::from_millis(100),
        ..OutlierConfig::default()
    };
    let routes = Arc::new(
        BalancedDestinations::new(discovery, Policy::RoundRobin)
            .unwrap()
            .with_outlier_detection(outlier)
            .unwrap(),
    );
    let connector = MeshConnector::with_shared_routes(mesh.client(), routes.clone());
    let mut policy = HttpPolicy::default();
    policy.retries = 0; // observe the raw outcomes
    let client = ResilientClient::new(connector, policy).unwrap();
    let b_endpoint: std::net::SocketAddr = "127.0.0.1:8001".parse().unwrap();

    let mut failures = 0;
    for _ in 0..10 {
        let response = client
            .request(
                Request::get("http://inventory.shop/")
                    .body(Bytes::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        if response.status() == 503 {
            failures += 1;
        }
    }
    // Two 503s eject b; after that everything goes to a.
    assert_eq!(failures, 2);
    assert!(routes.is_ejected("inventory.shop", b_endpoint));

    // b recovers; after its ejection time it is picked again and succeeds.
    broken.store(false, Ordering::SeqCst);
    tokio::time::timeout(STEP, async {
        loop {
            let response = client
                .request(
                    Request::get("http://inventory.shop/")
                        .body(Bytes::new())
                        .unwrap(),
                )
                .await
                .unwrap();
            if body_of(response).await == "b" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("b never came back");
    assert!(!routes.is_ejected("inventory.shop", b_endpoint));
}

async fn body_of(response: Response<Incoming>) -> String {
    String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}
