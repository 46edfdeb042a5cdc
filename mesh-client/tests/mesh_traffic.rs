//! Traffic policy through the `Mesh` handle: VirtualService-style routes choose subsets by
//! request attributes, retries follow the route, and subsets hold only their labelled
//! endpoints. Real workloads on loopback, each its own HBONE listener.

mod support;

use std::{
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

const REVIEWS: &str = "spiffe://cluster.local/ns/shop/sa/reviews";
const HOST: &str = "reviews.shop.svc.cluster.local";

/// A reviews workload answering with its version; the first `fail_first` requests get 503.
/// It listens on `ip` (each version on its own loopback address, as pods have their own).
async fn reviews(
    dir: &Path,
    ip: &str,
    version: &'static str,
    fail_first: usize,
) -> (Mesh, InboundServer) {
    let yaml = format!(
        "identity: {{ spiffe_id: {REVIEWS}, dev_ca: {{ dir: {} }} }}\ninbound: {{ listen: \"{ip}:0\" }}",
        dir.join("ca").display()
    );
    let mesh = Mesh::from_yaml(&yaml).await.unwrap();
    let failures = Arc::new(AtomicUsize::new(fail_first));
    let app = HttpService::new(tower::service_fn(move |_request: Request<Incoming>| {
        let failures = failures.clone();
        async move {
            let failing = failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            let mut response = Response::new(Full::new(Bytes::from_static(version.as_bytes())));
            if failing {
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            }
            Ok::<_, Infallible>(response)
        }
    }));
    let server = mesh.serve(InboundApp::Http(app)).await.unwrap();
    (mesh, server)
}

async fn get(mesh: &Mesh, path: &str, user: Option<&str>) -> (StatusCode, String) {
    let mut request = Request::get(format!("http://{HOST}:9080{path}"));
    if let Some(user) = user {
        request = request.header("end-user", user);
    }
    let response = tokio::time::timeout(
        STEP,
        mesh.http_client()
            .request(request.body(Bytes::new()).unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn routes_pick_subsets_by_request_and_retry_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    // v2 fails its first two requests; the route to it retries 2 times on 5xx.
    let (_v1, v1) = reviews(dir.path(), "127.0.0.1", "v1", 0).await;
    let (_v2, v2) = reviews(dir.path(), "127.0.0.2", "v2", 2).await;
    let yaml = format!(
        r#"
identity: {{ spiffe_id: spiffe://cluster.local/ns/shop/sa/productpage, dev_ca: {{ dir: {ca} }} }}
services:
  - host: {HOST}
    ports: [{{ port: 9080, protocol: http }}]
    identities: [{REVIEWS}]
    endpoints:
      - {{ address: "127.0.0.1:9080", hbone_port: {p1}, labels: {{ version: v1 }} }}
      - {{ address: "127.0.0.2:9080", hbone_port: {p2}, labels: {{ version: v2 }} }}
    traffic_policy:
      load_balancer: {{ simple: round_robin }}
      subsets:
        - {{ name: v1, labels: {{ version: v1 }} }}
        - {{ name: v2, labels: {{ version: v2 }} }}
      http:
        - match: [{{ headers: {{ end-user: {{ exact: jason }} }} }}]
          route: [{{ destination: {{ subset: v2 }} }}]
          retries: {{ attempts: 2, retry_on: 5xx }}
        - match: [{{ uri: {{ prefix: /v2-only }} }}]
          route: [{{ destination: {{ subset: v2 }} }}]
          retries: {{ attempts: 0 }}
        - route: [{{ destination: {{ subset: v1 }} }}]
"#,
        ca = dir.path().join("ca").display(),
        p1 = v1.local_addr().port(),
        p2 = v2.local_addr().port(),
    );
    let productpage = Mesh::from_yaml(&yaml).await.unwrap();

    // The default route: every request lands on v1, never on v2.
    for _ in 0..6 {
        assert_eq!(
            get(&productpage, "/", None).await,
            (StatusCode::OK, "v1".to_owned())
        );
    }
    // jason goes to v2; its two 503s are retried away by the route's policy.
    assert_eq!(
        get(&productpage, "/", Some("jason")).await,
        (StatusCode::OK, "v2".to_owned())
    );
    assert_eq!(
        v2.stats().connections,
        1,
        "all attempts reused one HBONE connection"
    );
    // A route without retries shows v2's answer as it is (v2 is healthy again by now).
    assert_eq!(
        get(&productpage, "/v2-only", None).await,
        (StatusCode::OK, "v2".to_owned())
    );
}

#[tokio::test]
async fn an_unknown_subset_or_a_missing_route_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
identity: {{ spiffe_id: spiffe://cluster.local/ns/shop/sa/productpage, dev_ca: {{ dir: {ca} }} }}
services:
  - host: {HOST}
    ports: [{{ port: 9080, protocol: http }}]
    identities: [{REVIEWS}]
    traffic_policy:
      http:
        - route: [{{ destination: {{ subset: v3 }} }}]
"#,
        ca = dir.path().join("ca").display(),
    );
    let error = Mesh::from_yaml(&yaml).await.unwrap_err().to_string();
    assert!(error.contains("v3"), "{error}");

    let yaml = format!(
        r#"
identity: {{ spiffe_id: spiffe://cluster.local/ns/shop/sa/productpage, dev_ca: {{ dir: {ca} }} }}
services:
  - host: {HOST}
    ports: [{{ port: 9080, protocol: http }}]
    identities: [{REVIEWS}]
    traffic_policy:
      http:
        - match: [{{ uri: {{ prefix: /api }} }}]
          route: [{{ destination: {{ host: {HOST} }} }}]
"#,
        ca = dir.path().join("ca").display(),
    );
    let mesh = Mesh::from_yaml(&yaml).await.unwrap();
    let request = Request::get(format!("http://{HOST}:9080/other"))
        .body(Bytes::new())
        .unwrap();
    let error = mesh.http_client().request(request).await.unwrap_err();
    assert!(error.to_string().contains("no route"), "{error}");
}

#[tokio::test]
async fn grpc_through_the_mesh_by_channel_and_by_call() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "identity: {{ spiffe_id: {REVIEWS}, dev_ca: {{ dir: {} }} }}\ninbound: {{ listen: 127.0.0.1:0 }}",
        dir.path().join("ca").display()
    );
    let server_mesh = Mesh::from_yaml(&yaml).await.unwrap();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("shop.Reviews", tonic_health::ServingStatus::Serving)
        .await;
    let routes = tonic::service::Routes::new(health);
    let server = server_mesh
        .serve(InboundApp::Http(HttpService::new(routes)))
        .await
        .unwrap();
    let yaml = format!(
        r#"
identity: {{ spiffe_id: spiffe://cluster.local/ns/shop/sa/productpage, dev_ca: {{ dir: {ca} }} }}
services:
  - host: {HOST}
    ports: [{{ port: 50051, protocol: grpc }}]
    identities: [{REVIEWS}]
    endpoints: [{{ address: "127.0.0.1:50051", hbone_port: {port} }}]
"#,
        ca = dir.path().join("ca").display(),
        port = server.local_addr().port(),
    );
    let client_mesh = Mesh::from_yaml(&yaml).await.unwrap();
    let request = || HealthCheckRequest {
        service: "shop.Reviews".into(),
    };
    let uri = format!("http://{HOST}:50051");

    let mut by_channel = HealthClient::new(client_mesh.grpc_channel(&uri).unwrap());
    let status = tokio::time::timeout(STEP, by_channel.check(request()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.into_inner().status(), ServingStatus::Serving);

    let mut by_call = HealthClient::with_origin(client_mesh.grpc_client(), uri.parse().unwrap());
    let status = tokio::time::timeout(STEP, by_call.check(request()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.into_inner().status(), ServingStatus::Serving);
    let missing = tokio::time::timeout(
        STEP,
        by_call.check(HealthCheckRequest {
            service: "shop.Nope".into(),
        }),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn deadlines_propagate_in_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "identity: {{ spiffe_id: {REVIEWS}, dev_ca: {{ dir: {} }} }}\ninbound: {{ listen: 127.0.0.1:0 }}",
        dir.path().join("ca").display()
    );
    let server_mesh = Mesh::from_yaml(&yaml).await.unwrap();
    // Echoes the deadline it was given; `/slow` never answers in time.
    let app = HttpService::new(tower::service_fn(|request: Request<Incoming>| async move {
        if request.uri().path() == "/slow" {
            std::future::pending::<()>().await;
        }
        let deadline = request
            .headers()
            .get("x-envoy-expected-rq-timeout-ms")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(deadline))))
    }));
    let server = server_mesh.serve(InboundApp::Http(app)).await.unwrap();
    let yaml = format!(
        r#"
identity: {{ spiffe_id: spiffe://cluster.local/ns/shop/sa/productpage, dev_ca: {{ dir: {ca} }} }}
services:
  - host: {HOST}
    ports: [{{ port: 9080, protocol: http }}]
    identities: [{REVIEWS}]
    endpoints: [{{ address: "127.0.0.1:9080", hbone_port: {port} }}]
    traffic_policy:
      http:
        - route: [{{ destination: {{ host: {HOST} }} }}]
          timeout: 2s
"#,
        ca = dir.path().join("ca").display(),
        port = server.local_addr().port(),
    );
    let client = Mesh::from_yaml(&yaml).await.unwrap();

    // Outbound: the upstream learns how long the caller waits (at most the route's 2 s).
    let (status, body) = get(&client, "/", None).await;
    assert_eq!(status, StatusCode::OK);
    let ms: u64 = body.parse().unwrap();
    assert!(ms > 0 && ms <= 2000, "{ms}");

    // Inherited: a request that carries 300 ms gets no more than that, whatever the route.
    let request = Request::get(format!("http://{HOST}:9080/slow"))
        .header("x-envoy-expected-rq-timeout-ms", "300")
        .body(Bytes::new())
        .unwrap();
    let error = tokio::time::timeout(STEP, client.http_client().request(request))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        error.to_string().contains("timed out after 300ms"),
        "{error}"
    );
}

/// A workload whose `/healthz` answers 200 or 503 as `healthy` says; other paths answer its
/// name.
async fn checked(
    dir: &Path,
    ip: &str,
    name: &'static str,
    healthy: Arc<std::sync::atomic::AtomicBool>,
) -> (Mesh, InboundServer) {
    let yaml = format!(
        "identity: {{ spiffe_id: {REVIEWS}, dev_ca: {{ dir: {} }} }}\ninbound: {{ listen: \"{ip}:0\" }}",
        dir.join("ca").display()
    );
    let mesh = Mesh::from_yaml(&yaml).await.unwrap();
    let app = HttpService::new(tower::service_fn(move |request: Request<Incoming>| {
        let healthy = healthy.clone();
        async move {
            let mut response = Response::new(Full::new(Bytes::from_static(name.as_bytes())));
            if request.uri().path() == "/healthz" && !healthy.load(Ordering::SeqCst) {
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            }
            Ok::<_, Infallible>(response)
        }
    }));
    let server = mesh.serve(InboundApp::Http(app)).await.unwrap();
    (mesh, server)
}

/// Sends requests until the last `run` answers all satisfy `want`.
async fn until_run_of(mesh: &Mesh, run: usize, want: impl Fn(&str) -> bool) {
    tokio::time::timeout(STEP, async {
        let mut streak = 0;
        while streak < run {
            let (_, body) = get(mesh, "/", None).await;
            streak = if want(&body) { streak + 1 } else { 0 };
        }
    })
    .await
    .expect("the balancer never converged");
}

#[tokio::test]
async fn active_health_checks_take_failing_endpoints_out_and_back() {
    use std::sync::atomic::AtomicBool;
    let dir = tempfile::tempdir().unwrap();
    let a_healthy = Arc::new(AtomicBool::new(true));
    let b_healthy = Arc::new(AtomicBool::new(false));
    let (_a, a) = checked(dir.path(), "127.0.0.1", "a", a_healthy.clone()).await;
    let (_b, b) = checked(dir.path(), "127.0.0.2", "b", b_healthy.clone()).await;
    let yaml = format!(
        r#"
identity: {{ spiffe_id: spiffe://cluster.local/ns/shop/sa/productpage, dev_ca: {{ dir: {ca} }} }}
services:
  - host: {HOST}
    ports: [{{ port: 9080, protocol: http }}]
    identities: [{REVIEWS}]
    endpoints:
      - {{ address: "127.0.0.1:9080", hbone_port: {pa} }}
      - {{ address: "127.0.0.2:9080", hbone_port: {pb} }}
    traffic_policy: {{ load_balancer: {{ simple: round_robin }} }}
    health_check: {{ kind: http, path: /healthz, interval: 100ms, timeout: 100ms, unhealthy_threshold: 2 }}
"#,
        ca = dir.path().join("ca").display(),
        pa = a.local_addr().port(),
        pb = b.local_addr().port(),
    );
    let client = Mesh::from_yaml(&yaml).await.unwrap();
    // b fails its checks: after two probes only a answers, though b serves "/" fine.
    until_run_of(&client, 10, |body| body == "a").await;
    // b recovers, a starts failing: traffic moves over.
    b_healthy.store(true, Ordering::SeqCst);
    a_healthy.store(false, Ordering::SeqCst);
    until_run_of(&client, 10, |body| body == "b").await;
}

#[tokio::test]
async fn health_check_settings_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    for (check, field) in [
        ("{ kind: tcp, path: /x }", "health_check.path"),
        ("{ kind: http, interval: 1s, timeout: 5s }", "health_check"),
        ("{ kind: grpc }", "health_check.kind"),
        ("{ kind: http, unhealthy_threshold: 0 }", "health_check"),
    ] {
        let yaml = format!(
            "identity: {{ dev_ca: {{ dir: {ca} }} }}\nservices: [{{ host: {HOST}, identities: [{REVIEWS}], health_check: {check} }}]",
            ca = dir.path().join("ca").display()
        );
        let error = Mesh::from_yaml(&yaml).await.unwrap_err().to_string();
        assert!(error.contains(field), "{check}: {error}");
    }
}

#[tokio::test]
async fn http_connections_are_kept_alive_per_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (_v1, v1) = reviews(dir.path(), "127.0.0.1", "v1", 0).await;
    let yaml = format!(
        r#"
identity: {{ spiffe_id: spiffe://cluster.local/ns/shop/sa/productpage, dev_ca: {{ dir: {ca} }} }}
services:
  - host: {HOST}
    ports: [{{ port: 9080, protocol: http }}]
    identities: [{REVIEWS}]
    endpoints: [{{ address: "127.0.0.1:9080", hbone_port: {port} }}]
"#,
        ca = dir.path().join("ca").display(),
        port = v1.local_addr().port(),
    );
    let client = Mesh::from_yaml(&yaml).await.unwrap();
    for _ in 0..5 {
        assert_eq!(
            get(&client, "/", None).await,
            (StatusCode::OK, "v1".to_owned())
        );
    }
    // One tunnel carried all five requests and stays open, idle, for the next.
    assert_eq!(v1.stats().tunnels, 1);
    assert_eq!(client.hbone().stats().connections_opened, 1);
}
