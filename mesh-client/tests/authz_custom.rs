//! CUSTOM AuthorizationPolicies delegating to a real external HTTP authorizer (Envoy
//! `ext_authz` over HTTP, Istio's `envoyExtAuthzHttp` provider): two `Mesh` workloads over real
//! HBONE on loopback, the authorizer a hyper server deciding by headers.

mod support;

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mesh_client::{
    http::{HttpService, PeerIdentity},
    mesh::{InboundApp, InboundServer, Mesh, MeshError},
};
use support::{STEP, echo_server};
use tokio::{net::TcpListener, task::JoinHandle};

const INVENTORY: &str = "spiffe://cluster.local/ns/shop/sa/inventory";
const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";
const HOST: &str = "inventory.shop.svc.cluster.local";
/// The whole of one test.
const TEST_LIMIT: Duration = Duration::from_secs(90);

async fn limited<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(TEST_LIMIT, test)
        .await
        .expect("test timed out");
}

/// The value of the metric sample `name` whose labels include all of `labels`, from the
/// classic text format (0 when absent).
fn metric(mesh: &Mesh, name: &str, labels: &[&str]) -> f64 {
    mesh.telemetry()
        .encode_classic()
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What the authorizer saw of one check request.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    headers: HeaderMap,
}

/// A real HTTP authorizer on loopback. It decides by `x-user`: `alice` is allowed (200 with
/// `x-user-id` and `x-internal`), `slow` is answered after 5 s, `crash` gets 500, anyone else
/// 401 with a body and headers.
struct Authorizer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Drop for Authorizer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Authorizer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let log = log.clone();
                        async move { Ok::<_, Infallible>(decide(request, &log).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Self { addr, seen, task }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn decide(request: Request<Incoming>, log: &Mutex<Vec<Seen>>) -> Response<Full<Bytes>> {
    log.lock().unwrap().push(Seen {
        method: request.method().to_string(),
        path: request
            .uri()
            .path_and_query()
            .map_or("", |p| p.as_str())
            .to_owned(),
        headers: request.headers().clone(),
    });
    let user = request
        .headers()
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let response = |status: u16, body: &'static str| {
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    };
    match user.as_str() {
        "alice" => {
            let mut r = response(200, "ignored");
            r.headers_mut().insert("x-user-id", "42".parse().unwrap());
            r.headers_mut()
                .insert("x-internal", "secret".parse().unwrap());
            r.headers_mut()
                .insert("x-authz-note", "checked".parse().unwrap());
            r
        }
        "slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            response(200, "")
        }
        "crash" => response(500, "authorizer broke"),
        _ => {
            let mut r = response(401, "who are you?");
            r.headers_mut()
                .insert("x-reason", "unknown-user".parse().unwrap());
            r.headers_mut().insert("x-hidden", "1".parse().unwrap());
            r.headers_mut()
                .insert("www-authenticate", "Basic realm=shop".parse().unwrap());
            r
        }
    }
}

/// Answers with the path and what the authorizer added.
fn app() -> HttpService {
    HttpService::new(tower::service_fn(|request: Request<Incoming>| async move {
        let peer = request.extensions().get::<PeerIdentity>().cloned();
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        let text = format!(
            "{} {} user-id={} internal={}",
            peer.map_or("anonymous".to_owned(), |p| p.id.to_string()),
            request.uri().path(),
            header("x-user-id"),
            header("x-internal"),
        );
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
    }))
}

const POLICY: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ext-authz, namespace: shop }
spec:
  selector: { matchLabels: { app: inventory } }
  action: CUSTOM
  provider: { name: checker }
  rules:
  - to: [{ operation: { notPaths: ["/public*"] } }]
"#;

fn provider(authorizer: SocketAddr, extra: &str) -> String {
    format!(
        r#"
extension_providers:
  - name: checker
    envoy_ext_authz_http:
      service: {ip}
      port: {port}
      path_prefix: /ext
      timeout: 300ms
      include_request_headers_in_check: [x-user, "x-trace-*"]
      include_additional_headers_in_check: {{ x-checked-by: inventory }}
      headers_to_upstream_on_allow: [x-user-id]
      headers_to_downstream_on_deny: [x-reason]
      headers_to_downstream_on_allow: ["x-authz-*"]
      {extra}
"#,
        ip = authorizer.ip(),
        port = authorizer.port(),
    )
}

async fn inventory(
    dir: &Path,
    providers: &str,
    policy: &str,
    forward: u16,
) -> Result<(Mesh, InboundServer), MeshError> {
    let policy_path = dir.join("policy.yaml");
    std::fs::write(&policy_path, policy).unwrap();
    let yaml = format!(
        r#"
workload: {{ name: inventory, namespace: shop, labels: {{ app: inventory }} }}
identity:
  spiffe_id: {INVENTORY}
  dev_ca: {{ dir: {ca} }}
inbound:
  listen: 127.0.0.1:0
  forward: {{ 9000: "127.0.0.1:{forward}" }}
policies: [{policy}]
{providers}
"#,
        ca = dir.join("ca").display(),
        policy = policy_path.display(),
    );
    let mesh = Mesh::from_yaml(&yaml).await?;
    let server = mesh.serve(InboundApp::Http(app())).await?;
    Ok((mesh, server))
}

async fn orders(dir: &Path, server: &InboundServer) -> Mesh {
    let yaml = format!(
        r#"
identity: {{ spiffe_id: {ORDERS}, dev_ca: {{ dir: {ca} }} }}
services:
  - host: {HOST}
    ports: [{{ port: 8080, protocol: http }}, {{ port: 9000 }}]
    identities: [{INVENTORY}]
    endpoints: [{{ address: "127.0.0.1:8080", hbone_port: {hbone} }}]
"#,
        ca = dir.join("ca").display(),
        hbone = server.local_addr().port(),
    );
    Mesh::from_yaml(&yaml).await.unwrap()
}

async fn get(mesh: &Mesh, path: &str, user: &str) -> (StatusCode, HeaderMap, String) {
    let request = Request::get(format!("http://{HOST}:8080{path}"))
        .header("x-user", user)
        .header("x-trace-id", "t-1")
        .header("cookie", "session=secret")
        .header("x-user-id", "forged")
        .body(Bytes::new())
        .unwrap();
    let response = tokio::time::timeout(STEP, mesh.http_client().request(request))
        .await
        .unwrap()
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn authorizer_allows_with_injected_headers_and_denies_with_its_answer() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let authz = Authorizer::start().await;
        let (inventory, server) = inventory(dir.path(), &provider(authz.addr, ""), POLICY, 9)
            .await
            .unwrap();
        let orders = orders(dir.path(), &server).await;

        // Allowed: the authorizer's x-user-id replaces the forged one; x-internal is not listed.
        let (status, headers, body) = get(&orders, "/stock/1?q=2", "alice").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(headers["x-authz-note"], "checked");
        assert!(!headers.contains_key("x-internal"), "{headers:?}");
        assert_eq!(body, format!("{ORDERS} /stock/1 user-id=42 internal=-"));
        let seen = authz.seen();
        assert_eq!(seen.len(), 1, "{seen:?}");
        let check = &seen[0];
        assert_eq!(check.method, "GET");
        assert_eq!(check.path, "/ext/stock/1?q=2");
        assert_eq!(check.headers["host"], format!("{HOST}:8080"));
        assert_eq!(check.headers["x-user"], "alice");
        assert_eq!(check.headers["x-trace-id"], "t-1");
        assert_eq!(check.headers["x-checked-by"], "inventory");
        assert!(!check.headers.contains_key("cookie"), "{check:?}");
        assert!(!check.headers.contains_key("x-user-id"), "{check:?}");

        // Denied: the authorizer's status, body, listed header and www-authenticate.
        let (status, headers, body) = get(&orders, "/stock/1", "mallory").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body, "who are you?");
        assert_eq!(headers["x-reason"], "unknown-user");
        assert_eq!(headers["www-authenticate"], "Basic realm=shop");
        assert!(!headers.contains_key("x-hidden"), "{headers:?}");
        assert_eq!(authz.seen().len(), 2);

        // Both outcomes are counted under the CUSTOM policy.
        let custom = ["layer=\"http\"", "policy=\"shop/ext-authz\""];
        let with = |action: &'static str| {
            let mut labels = custom.to_vec();
            labels.push(action);
            metric(&inventory, "mesh_authz_decisions_total", &labels)
        };
        assert_eq!(with("action=\"allow\""), 1.0);
        assert_eq!(with("action=\"deny\""), 1.0);

        // Outside the CUSTOM rule: no check at all.
        let (status, _, body) = get(&orders, "/public/info", "mallory").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(authz.seen().len(), 2);
        assert_eq!(server.shutdown().await, 0);
    })
    .await;
}

#[tokio::test]
async fn authorizer_failures_fail_closed_with_status_on_error() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let authz = Authorizer::start().await;
        let providers = provider(authz.addr, "status_on_error: \"500\"");
        let (_inventory, server) = inventory(dir.path(), &providers, POLICY, 9).await.unwrap();
        let orders = orders(dir.path(), &server).await;

        // Timeout (300 ms, the authorizer takes 5 s).
        let started = std::time::Instant::now();
        let (status, _, body) = get(&orders, "/stock/1", "slow").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        assert!(body.is_empty(), "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
        // A 5xx from the authorizer is an error, not a denial to pass on.
        let (status, _, body) = get(&orders, "/stock/1", "crash").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.contains("broke"), "{body}");
        assert_eq!(server.shutdown().await, 0);
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_authorizer_fails_closed_with_403_by_default() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        // A port nothing listens on: bind, note, close.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let (_inventory, server) = inventory(dir.path(), &provider(dead_addr, ""), POLICY, 9)
            .await
            .unwrap();
        let orders = orders(dir.path(), &server).await;
        let (status, _, body) = get(&orders, "/stock/1", "alice").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(server.shutdown().await, 0);
    })
    .await;
}

#[tokio::test]
async fn authorizer_failures_fail_open_when_configured() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let authz = Authorizer::start().await;
        let providers = provider(authz.addr, "fail_open: true");
        let (_inventory, server) = inventory(dir.path(), &providers, POLICY, 9).await.unwrap();
        let orders = orders(dir.path(), &server).await;
        let (status, _, body) = get(&orders, "/stock/1", "slow").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, format!("{ORDERS} /stock/1 user-id=forged internal=-"));
        // A real denial is still a denial.
        let (status, _, _) = get(&orders, "/stock/1", "mallory").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(server.shutdown().await, 0);
    })
    .await;
}

#[tokio::test]
async fn raw_tunnels_under_a_custom_policy_stay_denied() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let authz = Authorizer::start().await;
        let echo = echo_server().await;
        let (_inventory, server) =
            inventory(dir.path(), &provider(authz.addr, ""), POLICY, echo.port())
                .await
                .unwrap();
        let orders = orders(dir.path(), &server).await;
        let denied = tokio::time::timeout(STEP, orders.connect(&format!("{HOST}:9000")))
            .await
            .unwrap()
            .unwrap_err();
        match &denied {
            MeshError::Tunnel { source, .. } => {
                assert_eq!(source.status(), Some(StatusCode::UNAUTHORIZED), "{denied}");
            }
            other => panic!("expected a denied tunnel, got {other}"),
        }
        assert!(authz.seen().is_empty());
        assert_eq!(server.shutdown().await, 0);
    })
    .await;
}

#[tokio::test]
async fn a_policy_naming_an_unknown_provider_fails_the_load() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let policy = POLICY.replace("name: checker", "name: opa");
        let error = inventory(
            dir.path(),
            &provider("127.0.0.1:9".parse().unwrap(), ""),
            &policy,
            9,
        )
        .await
        .expect_err("the load must fail");
        let text = error.to_string();
        assert!(text.contains("policy.yaml"), "{text}");
        assert!(text.contains("\"opa\""), "{text}");
        assert!(text.contains("configured: checker"), "{text}");
        assert!(text.contains("extension_providers"), "{text}");
    })
    .await;
}
