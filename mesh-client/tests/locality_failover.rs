//! Istio's `localityLbSetting` over real HBONE: endpoints in several regions (in-process servers
//! on loopback), a caller in `us-east`, and a DestinationRule saying where traffic goes when the
//! local region dies (`failover`) and how retries leave a failing region
//! (`retryRemoteLocalities`).

mod support;

use std::{
    collections::BTreeMap,
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use mesh_client::{
    discovery::StaticDiscovery,
    hbone::{Delivery, HboneServer},
    http::HttpService,
    resilience::ResilientClient,
    routing::BalancedDestinations,
};
use mesh_core::{
    balance::Policy,
    model::{Endpoint, Locality, Service, ServiceName, Snapshot},
    traffic::{TrafficConfig, parse_resources},
};
use support::*;

const HOST: &str = "inventory.shop.svc.cluster.local";

/// A server answering its name, or 503 while `failing` is set.
async fn region_server(mesh: &Mesh, name: &'static str, failing: Arc<AtomicBool>) -> HboneServer {
    let service = HttpService::new(tower::service_fn(move |_req: Request<Incoming>| {
        let failing = failing.load(Ordering::SeqCst);
        async move {
            let mut response = Response::new(Full::new(Bytes::from(name)));
            if failing {
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            }
            Ok::<_, Infallible>(response)
        }
    }));
    mesh.server(Delivery::Http(service)).await
}

fn snapshot(servers: &[(&HboneServer, &str)]) -> Snapshot {
    let service =
        Service::new(ServiceName::new(HOST).unwrap()).with_expected_identity(id(SERVER_ID));
    let endpoints: Vec<Endpoint> = servers
        .iter()
        .enumerate()
        .map(|(i, (server, locality))| {
            Endpoint::new(format!("127.0.0.1:{}", 8000 + i).parse().unwrap())
                .with_hbone_port(server.local_addr().port())
                .with_locality(locality.parse().unwrap())
        })
        .collect();
    Snapshot::new(1).with_service(service, endpoints.into())
}

fn traffic(outlier: &str, retries: &str) -> Arc<TrafficConfig> {
    let yaml = format!(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{ name: inventory, namespace: shop }}
spec:
  host: {HOST}
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting:
        failover: [{{ from: us-east, to: eu-west }}]
    outlierDetection: {outlier}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{ name: inventory, namespace: shop }}
spec:
  hosts: [{HOST}]
  http:
    - route: [{{ destination: {{ host: {HOST} }} }}]
      retries: {retries}
"#
    );
    Arc::new(TrafficConfig::from_resources(parse_resources(&yaml).unwrap()).unwrap())
}

struct Setup {
    client: ResilientClient,
    east: Option<HboneServer>,
    eu: Option<HboneServer>,
    west: HboneServer,
    east_failing: Arc<AtomicBool>,
}

async fn setup(traffic: Arc<TrafficConfig>) -> Setup {
    let mesh = Mesh::new();
    let east_failing = Arc::new(AtomicBool::new(false));
    let east = region_server(&mesh, "us-east", east_failing.clone()).await;
    let west = region_server(&mesh, "us-west", Arc::default()).await;
    let eu = region_server(&mesh, "eu-west", Arc::default()).await;
    let discovery = Arc::new(StaticDiscovery::new(snapshot(&[
        (&east, "us-east/a"),
        (&west, "us-west/a"),
        (&eu, "eu-west/a"),
    ])));
    let routes = Arc::new(
        BalancedDestinations::new(discovery.clone(), Policy::RoundRobin)
            .unwrap()
            .with_locality(Locality::new("us-east", "a", ""))
            .with_labels(BTreeMap::from([("app".to_owned(), "orders".to_owned())])),
    );
    routes.set_traffic(traffic);
    let client = ResilientClient::routed(mesh.client(), routes, discovery);
    Setup {
        client,
        east: Some(east),
        eu: Some(eu),
        west,
        east_failing,
    }
}

/// One GET: the status and the name of the region that answered.
async fn get(client: &ResilientClient) -> (StatusCode, String) {
    let request = Request::get(format!("http://{HOST}/"))
        .body(Bytes::new())
        .unwrap();
    let response = tokio::time::timeout(STEP, client.request(request))
        .await
        .expect("request timed out")
        .expect("request failed");
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

async fn answers(client: &ResilientClient, n: usize) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let (status, region) = get(client).await;
        assert_eq!(status, StatusCode::OK, "{region}");
        *out.entry(region).or_default() += 1;
    }
    out
}

#[tokio::test]
async fn traffic_fails_over_to_the_configured_region_when_the_local_one_dies() {
    let mut s = setup(traffic(
        "{ consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 5m, maxEjectionPercent: 100 }",
        "{ attempts: 3, retryOn: connect-failure }",
    ))
    .await;
    // Healthy local region: it takes everything.
    assert_eq!(
        answers(&s.client, 6).await,
        BTreeMap::from([("us-east".into(), 6)])
    );

    // The local server dies: the first attempt fails to connect, outlier detection ejects it
    // and the retry (and every request after) goes to eu-west, the failover target, although
    // us-west is just as remote.
    s.east
        .take()
        .unwrap()
        .shutdown(Duration::from_secs(1))
        .await;
    assert_eq!(
        answers(&s.client, 10).await,
        BTreeMap::from([("eu-west".into(), 10)])
    );

    // eu-west dies too: only then does us-west get traffic.
    s.eu.take().unwrap().shutdown(Duration::from_secs(1)).await;
    assert_eq!(
        answers(&s.client, 10).await,
        BTreeMap::from([("us-west".into(), 10)])
    );
    s.west.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn retry_remote_localities_moves_retries_out_of_a_failing_region() {
    // Outlier detection on (so localities are prioritised) but never ejecting: only retries
    // can leave the failing local region.
    let outlier = "{ consecutive5xxErrors: 0, consecutiveGatewayErrors: 0 }";
    let s = setup(traffic(
        outlier,
        "{ attempts: 2, retryOn: 5xx, retryRemoteLocalities: true }",
    ))
    .await;
    s.east_failing.store(true, Ordering::SeqCst);
    // Attempt 0 and the first retry stay local (Istio's update frequency of 2); the second
    // retry avoids the local level and lands in the failover region.
    for _ in 0..3 {
        assert_eq!(get(&s.client).await, (StatusCode::OK, "eu-west".to_owned()));
    }

    // Without retryRemoteLocalities every attempt stays in the local region.
    let s = setup(traffic(outlier, "{ attempts: 2, retryOn: 5xx }")).await;
    s.east_failing.store(true, Ordering::SeqCst);
    let (status, region) = get(&s.client).await;
    assert_eq!(
        (status, region.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "us-east")
    );
}
