//! Retries, budgets, timeouts and the circuit breaker against fault-injecting upstreams over
//! real HBONE.

mod support;

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use mesh_client::{
    hbone::{Delivery, HboneServer},
    http::{HttpService, MeshConnector, StaticDestinations},
    resilience::{HttpPolicy, RequestError, ResilientClient},
};
use mesh_core::resilience::{Limits, ResourceKind, RetryBudgetConfig};
use support::*;

/// A server whose answer to request number n (from 0) is decided by `fault`.
async fn faulty<F>(mesh: &Mesh, fault: F) -> (HboneServer, Arc<AtomicUsize>)
where
    F: Fn(usize) -> (StatusCode, Duration) + Send + Sync + 'static,
{
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let fault = Arc::new(fault);
    let service = HttpService::new(tower::service_fn(move |_req: Request<Incoming>| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        let (status, delay) = fault(n);
        async move {
            tokio::time::sleep(delay).await;
            let mut response = Response::new(Full::new(Bytes::from(format!("answer {n}"))));
            *response.status_mut() = status;
            Ok::<_, Infallible>(response)
        }
    }));
    (mesh.server(Delivery::Http(service)).await, count)
}

fn client(mesh: &Mesh, server: &HboneServer, policy: HttpPolicy) -> ResilientClient {
    let routes = StaticDestinations::new().with("inventory.shop", 80, dest(server, 80));
    ResilientClient::new(MeshConnector::new(mesh.client(), routes), policy).unwrap()
}

fn get() -> Request<Bytes> {
    Request::get("http://inventory.shop/stock")
        .body(Bytes::new())
        .unwrap()
}

async fn body(response: Response<Incoming>) -> String {
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

#[tokio::test]
async fn a_503_is_retried_and_then_succeeds() {
    let mesh = Mesh::new();
    let (server, count) = faulty(&mesh, |n| {
        if n < 2 {
            (StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO)
        } else {
            (StatusCode::OK, Duration::ZERO)
        }
    })
    .await;
    let client = client(&mesh, &server, HttpPolicy::default());
    let response = tokio::time::timeout(STEP, client.request(get()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(body(response).await, "answer 2");
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn retries_stop_at_the_attempt_limit_and_return_the_last_answer() {
    let mesh = Mesh::new();
    let (server, count) =
        faulty(&mesh, |_| (StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO)).await;
    let client = client(&mesh, &server, HttpPolicy::default()); // 2 retries
    let response = client.request(get()).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_post_that_was_sent_is_not_retried_unless_configured() {
    let mesh = Mesh::new();
    let (server, count) =
        faulty(&mesh, |_| (StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO)).await;
    let post = || {
        Request::post("http://inventory.shop/orders")
            .body(Bytes::from_static(b"{}"))
            .unwrap()
    };
    let c = client(&mesh, &server, HttpPolicy::default());
    assert_eq!(c.request(post()).await.unwrap().status(), 503);
    assert_eq!(count.load(Ordering::SeqCst), 1);
    let mut policy = HttpPolicy::default();
    policy.retry_non_idempotent = true;
    let c = client(&mesh, &server, policy);
    assert_eq!(c.request(post()).await.unwrap().status(), 503);
    assert_eq!(count.load(Ordering::SeqCst), 4);
    let _ = Method::POST;
}

#[tokio::test]
async fn an_outage_cannot_multiply_load_beyond_the_budget() {
    let mesh = Mesh::new();
    let (server, count) =
        faulty(&mesh, |_| (StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO)).await;
    let mut policy = HttpPolicy::default();
    policy.retries = 5;
    policy.budget = RetryBudgetConfig {
        budget_percent: 20,
        min_retries: 3,
        window: Duration::from_secs(10),
    };
    policy.backoff.base = Duration::from_millis(1);
    policy.backoff.max = Duration::from_millis(2);
    let client = client(&mesh, &server, policy);
    let requests = 100;
    for _ in 0..requests {
        assert_eq!(client.request(get()).await.unwrap().status(), 503);
    }
    let attempts = count.load(Ordering::SeqCst);
    // Without a budget this would be 600 attempts.
    assert!(
        attempts <= requests + requests * 20 / 100 + 3,
        "{attempts} attempts for {requests} requests"
    );
    assert!(attempts > requests, "some retries should have been allowed");
}

#[tokio::test]
async fn per_try_timeout_retries_a_slow_attempt() {
    let mesh = Mesh::new();
    let (server, count) = faulty(&mesh, |n| {
        if n == 0 {
            (StatusCode::OK, Duration::from_secs(5))
        } else {
            (StatusCode::OK, Duration::ZERO)
        }
    })
    .await;
    let mut policy = HttpPolicy::default();
    policy.per_try_timeout = Some(Duration::from_millis(200));
    policy.retry_on.gateway_error = true;
    let client = client(&mesh, &server, policy);
    let response = tokio::time::timeout(STEP, client.request(get()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body(response).await, "answer 1");
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn overall_timeout_bounds_the_request() {
    let mesh = Mesh::new();
    let (server, _) = faulty(&mesh, |_| (StatusCode::OK, Duration::from_secs(5))).await;
    let mut policy = HttpPolicy::default();
    policy.timeout = Some(Duration::from_millis(300));
    let client = client(&mesh, &server, policy);
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(STEP, client.request(get()))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, RequestError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn the_breaker_fails_fast_beyond_max_requests() {
    let mesh = Mesh::new();
    let (server, count) = faulty(&mesh, |_| (StatusCode::OK, Duration::from_millis(500))).await;
    let mut policy = HttpPolicy::default();
    policy.limits = Limits {
        max_requests: 2,
        ..Limits::default()
    };
    let client = client(&mesh, &server, policy);
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            c.request(get()).await.map(|r| r.status())
        }));
    }
    let mut ok = 0;
    let mut overflowed = 0;
    for t in tasks {
        match tokio::time::timeout(STEP, t).await.unwrap().unwrap() {
            Ok(status) => {
                assert_eq!(status, 200);
                ok += 1;
            }
            Err(RequestError::Overflow {
                kind: ResourceKind::Request,
                limit: 2,
                ..
            }) => overflowed += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!((ok, overflowed), (2, 3));
    assert_eq!(
        count.load(Ordering::SeqCst),
        2,
        "overflowed requests must not reach the server"
    );
    assert_eq!(
        client
            .breaker_stats("inventory.shop")
            .unwrap()
            .overflows(ResourceKind::Request),
        3
    );
}

#[tokio::test]
async fn connect_failures_are_retried_and_reported() {
    let mesh = Mesh::new();
    let dead = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let routes = StaticDestinations::new().with(
        "inventory.shop",
        80,
        mesh_client::hbone::Destination {
            hbone_addr: dead,
            target_port: 80,
            expected: mesh_tls::ExpectedIdentities::one(id(SERVER_ID)),
        },
    );
    let client = ResilientClient::new(
        MeshConnector::new(mesh.client(), routes),
        HttpPolicy::default(),
    )
    .unwrap();
    let err = client.request(get()).await.unwrap_err();
    match &err {
        RequestError::Failed { attempts, .. } => assert_eq!(*attempts, 3),
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("3 attempt(s)"), "{err}");
}
