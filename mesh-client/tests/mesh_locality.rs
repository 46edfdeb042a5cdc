//! Locality and retry host selection through the `Mesh` handle alone: a caller configured with
//! `Mesh::from_yaml` (its `workload.locality`, or its topology labels) and endpoints that are
//! in-process server meshes on loopback, each in its own locality, reached over real HBONE.
//!
//! - traffic stays in the caller's zone, then region, then the DestinationRule's `failover`
//!   region as servers shut down (outlier detection ejects them);
//! - a retry goes to an endpoint other than the one that failed (Envoy's `previous_hosts`), for
//!   the HTTP client and for `Mesh::connect`.

mod support;

use std::{
    collections::BTreeMap,
    convert::Infallible,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use mesh_client::{
    http::HttpService,
    mesh::{InboundApp, InboundServer, Mesh},
};
use support::STEP;

const SERVER: &str = "spiffe://cluster.local/ns/shop/sa/inventory";
const HOST: &str = "inventory.shop.svc.cluster.local";

/// One endpoint: a workload answering `status` with its name, counting the requests it got.
struct Server {
    _mesh: Mesh,
    inbound: InboundServer,
    name: &'static str,
    requests: Arc<AtomicUsize>,
}

async fn server(dir: &Path, name: &'static str, status: StatusCode) -> Server {
    let yaml = format!(
        "identity: {{ spiffe_id: {SERVER}, dev_ca: {{ dir: {} }} }}\ninbound: {{ listen: 127.0.0.1:0, drain_timeout: 1s }}",
        dir.join("ca").display()
    );
    let mesh = tokio::time::timeout(STEP, Mesh::from_yaml(&yaml))
        .await
        .expect("server start timed out")
        .unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let app = HttpService::new(tower::service_fn(move |_request: Request<Incoming>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut response = Response::new(Full::new(Bytes::from_static(name.as_bytes())));
            *response.status_mut() = status;
            Ok::<_, Infallible>(response)
        }
    }));
    let inbound = tokio::time::timeout(STEP, mesh.serve(InboundApp::Http(app)))
        .await
        .expect("serve timed out")
        .unwrap();
    Server {
        _mesh: mesh,
        inbound,
        name,
        requests,
    }
}

impl Server {
    /// Its line in `services[].endpoints` (each has its own target port, all on 127.0.0.1).
    fn endpoint(&self, i: usize, locality: &str) -> String {
        format!(
            "      - {{ address: \"127.0.0.1:{}\", hbone_port: {}, locality: {locality} }}\n",
            9081 + i,
            self.inbound.local_addr().port()
        )
    }

    async fn shutdown(self) {
        tokio::time::timeout(STEP, self.inbound.shutdown())
            .await
            .expect("shutdown timed out");
    }
}

/// A caller whose `workload:` section is `workload`, calling `endpoints` under `traffic`.
async fn caller(dir: &Path, workload: &str, endpoints: &str, traffic: &str) -> Mesh {
    let yaml = format!(
        r#"
workload: {workload}
identity: {{ spiffe_id: spiffe://cluster.local/ns/shop/sa/orders, dev_ca: {{ dir: {ca} }} }}
services:
  - host: {HOST}
    ports: [{{ port: 9080, protocol: http }}]
    identities: [{SERVER}]
    endpoints:
{endpoints}    traffic_policy: {traffic}
"#,
        ca = dir.join("ca").display(),
    );
    tokio::time::timeout(STEP, Mesh::from_yaml(&yaml))
        .await
        .expect("caller start timed out")
        .unwrap()
}

async fn get(mesh: &Mesh, user: &str) -> (StatusCode, String) {
    let request = Request::get(format!("http://{HOST}:9080/"))
        .header("x-user", user)
        .body(Bytes::new())
        .unwrap();
    let response = tokio::time::timeout(STEP, mesh.http_client().request(request))
        .await
        .expect("request timed out")
        .expect("request failed");
    let status = response.status();
    let body = tokio::time::timeout(STEP, response.into_body().collect())
        .await
        .expect("body timed out")
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Who answered `n` requests, all of which must succeed.
async fn answers(mesh: &Mesh, n: usize) -> BTreeMap<String, usize> {
    answers_for(mesh, "user", n).await
}

/// [`answers`] for users `{prefix}-0` to `{prefix}-{n - 1}` (the `x-user` header).
async fn answers_for(mesh: &Mesh, prefix: &str, n: usize) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for i in 0..n {
        let (status, name) = get(mesh, &format!("{prefix}-{i}")).await;
        assert_eq!(status, StatusCode::OK, "{name}");
        *out.entry(name).or_default() += 1;
    }
    out
}

fn only(name: &str, n: usize) -> BTreeMap<String, usize> {
    BTreeMap::from([(name.to_owned(), n)])
}

#[tokio::test]
async fn traffic_stays_near_the_workload_and_fails_over_to_the_configured_region() {
    let dir = tempfile::tempdir().unwrap();
    let a = server(dir.path(), "us-east-a", StatusCode::OK).await;
    let b = server(dir.path(), "us-east-b", StatusCode::OK).await;
    let eu = server(dir.path(), "eu-west", StatusCode::OK).await;
    let west = server(dir.path(), "us-west", StatusCode::OK).await;
    let endpoints = [
        a.endpoint(0, "us-east/a"),
        b.endpoint(1, "us-east/b"),
        west.endpoint(2, "us-west/a"),
        eu.endpoint(3, "eu-west/a"),
    ]
    .concat();
    let traffic = r#"
      load_balancer:
        simple: round_robin
        locality_lb_setting: { failover: [{ from: us-east, to: eu-west }] }
      outlier_detection: { consecutive_5xx_errors: 1, interval: 1s, base_ejection_time: 5m, max_ejection_percent: 100 }
      http:
        - retries: { attempts: 3, retry_on: "connect-failure,reset" }
"#;
    let client = caller(
        dir.path(),
        "{ name: orders, locality: { region: us-east, zone: a } }",
        &endpoints,
        traffic,
    )
    .await;
    assert_eq!(
        client.settings().locality.to_string(),
        "us-east/a",
        "the configured locality"
    );

    // The caller's zone takes everything while it is healthy.
    assert_eq!(answers(&client, 8).await, only(a.name, 8));

    // The zone's server goes away: its region's other zone next (Envoy's default order).
    a.shutdown().await;
    assert_eq!(answers(&client, 8).await, only(b.name, 8));

    // The whole region is gone: the failover region, although us-west is just as remote.
    b.shutdown().await;
    assert_eq!(answers(&client, 8).await, only(eu.name, 8));
    assert_eq!(west.requests.load(Ordering::SeqCst), 0);

    eu.shutdown().await;
    assert_eq!(answers(&client, 4).await, only(west.name, 4));
    west.shutdown().await;
}

#[tokio::test]
async fn topology_labels_give_the_locality_and_without_one_traffic_is_spread() {
    let dir = tempfile::tempdir().unwrap();
    let near = server(dir.path(), "near", StatusCode::OK).await;
    let far = server(dir.path(), "far", StatusCode::OK).await;
    let endpoints = [near.endpoint(0, "eu-west/c"), far.endpoint(1, "eu-west/d")].concat();
    let traffic = "{ load_balancer: { simple: round_robin }, outlier_detection: { consecutive_5xx_errors: 5 } }";
    let labelled = caller(
        dir.path(),
        "{ labels: { app: orders, topology.kubernetes.io/region: eu-west } }",
        &endpoints,
        traffic,
    )
    .await;
    // Only the region known: both endpoints are in it and equally near, so both serve.
    assert_eq!(answers(&labelled, 6).await.len(), 2);

    let labelled = caller(
        dir.path(),
        "{ labels: { topology.kubernetes.io/region: eu-west, topology.kubernetes.io/zone: c } }",
        &endpoints,
        traffic,
    )
    .await;
    assert_eq!(labelled.settings().locality.to_string(), "eu-west/c");
    assert_eq!(answers(&labelled, 6).await, only(near.name, 6));

    // No locality at all: no preference, round robin over both.
    let anywhere = caller(dir.path(), "{ name: orders }", &endpoints, traffic).await;
    assert_eq!(
        answers(&anywhere, 6).await,
        BTreeMap::from([(near.name.to_owned(), 3), (far.name.to_owned(), 3)])
    );
    near.shutdown().await;
    far.shutdown().await;
}

#[tokio::test]
async fn a_retry_goes_to_another_endpoint_than_the_one_that_failed() {
    let dir = tempfile::tempdir().unwrap();
    let bad = server(dir.path(), "bad", StatusCode::SERVICE_UNAVAILABLE).await;
    let good = server(dir.path(), "good", StatusCode::OK).await;
    let endpoints = [bad.endpoint(0, "us-east/a"), good.endpoint(1, "us-east/a")].concat();
    // No outlier detection: `bad` is never ejected, so only the retry host predicate keeps
    // requests that first land on it from failing. A consistent hash sends a user to the same
    // endpoint every time (a plain re-pick would always find `bad` again); random picks
    // would find it again half of the time.
    for (load_balancer, bad_gets_first_attempts) in [
        ("{ consistent_hash: { http_header_name: x-user } }", true),
        ("{ simple: random }", true),
        ("{ simple: least_request }", false),
    ] {
        let traffic = format!(
            "{{ load_balancer: {load_balancer}, http: [{{ retries: {{ attempts: 1, retry_on: 5xx }} }}] }}"
        );
        let before = bad.requests.load(Ordering::SeqCst);
        // Ten requests per caller, so every retry fits in the default retry budget (10 plus
        // 20% of the requests in 10 s) whatever the first attempts hit; three callers, so the
        // failing endpoint surely gets some first attempts.
        for round in 0..3 {
            let client = caller(dir.path(), "{ locality: us-east/a }", &endpoints, &traffic).await;
            assert_eq!(
                answers_for(&client, &format!("round-{round}"), 10).await,
                only(good.name, 10),
                "{load_balancer}"
            );
        }
        assert!(
            !bad_gets_first_attempts || bad.requests.load(Ordering::SeqCst) > before,
            "{load_balancer}: first attempts reached the failing endpoint and were retried"
        );
    }
    bad.shutdown().await;
    good.shutdown().await;
}

#[tokio::test]
async fn connect_retries_go_to_an_endpoint_not_tried_yet() {
    let dir = tempfile::tempdir().unwrap();
    let live = server(dir.path(), "live", StatusCode::OK).await;
    let dead = server(dir.path(), "dead", StatusCode::OK).await;
    let endpoints = [dead.endpoint(0, "us-east/a"), live.endpoint(1, "us-east/a")].concat();
    // The dead endpoint refuses connections from now on.
    dead.shutdown().await;
    // Random picks and no ejection: re-picking blindly, one connect in eight would try the
    // dead endpoint on all three attempts; avoiding it, the second attempt reaches `live`.
    let client = caller(
        dir.path(),
        "{}",
        &endpoints,
        "{ load_balancer: { simple: random } }",
    )
    .await;
    for _ in 0..12 {
        let stream = tokio::time::timeout(STEP, client.connect(&format!("{HOST}:9080")))
            .await
            .expect("connect timed out")
            .expect("a connect attempt reaches the live endpoint");
        assert_eq!(
            stream.peer_identity().map(|p| p.as_str()),
            Some(SERVER),
            "tunnel to the live server"
        );
    }
    live.shutdown().await;
}
