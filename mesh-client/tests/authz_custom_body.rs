//! CUSTOM authorization with `include_request_body_in_check` (Istio's
//! `includeRequestBodyInCheck`, Envoy's `with_request_body`): two `Mesh` workloads over real
//! HBONE on loopback, a real hyper authorizer deciding on the body it receives, and an
//! application that reports exactly which body it got.

mod support;

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::TokioIo;
use mesh_client::{
    http::HttpService,
    mesh::{InboundApp, InboundServer, Mesh, MeshError},
};
use support::STEP;
use tokio::{net::TcpListener, task::JoinHandle};

const INVENTORY: &str = "spiffe://cluster.local/ns/shop/sa/inventory";
const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";
const HOST: &str = "inventory.shop.svc.cluster.local";
/// The whole of one test.
const TEST_LIMIT: Duration = Duration::from_secs(120);

async fn limited<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(TEST_LIMIT, test)
        .await
        .expect("test timed out");
}

/// FNV-1a, to compare large bodies by a short text.
fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `len` bytes that differ from offset to offset, so a lost, doubled or moved chunk shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// What the authorizer received in one check.
#[derive(Clone, Debug)]
struct Seen {
    headers: HeaderMap,
    body: Bytes,
}

/// A real HTTP authorizer on loopback: it refuses (403) a body holding `deny`, else allows.
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
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let deny = body.windows(4).any(|w| w == b"deny");
                            log.lock().unwrap().push(Seen {
                                headers: parts.headers,
                                body,
                            });
                            let mut response =
                                Response::new(Full::new(Bytes::from_static(if deny {
                                    b"body refused"
                                } else {
                                    b""
                                })));
                            if deny {
                                *response.status_mut() = StatusCode::FORBIDDEN;
                            }
                            Ok::<_, Infallible>(response)
                        }
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

/// Answers `len=<bytes> sum=<checksum> trailer=<x-check trailer or ->`, counting calls.
fn app(calls: Arc<AtomicUsize>) -> HttpService {
    HttpService::new(tower::service_fn(move |request: Request<Incoming>| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let collected = request.into_body().collect().await.unwrap();
            let trailer = collected
                .trailers()
                .and_then(|t| t.get("x-check"))
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            let body = collected.to_bytes();
            let text = format!(
                "len={} sum={} trailer={trailer}",
                body.len(),
                checksum(&body)
            );
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
        }
    }))
}

fn expected(body: &[u8], trailer: &str) -> String {
    format!(
        "len={} sum={} trailer={trailer}",
        body.len(),
        checksum(body)
    )
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

fn provider(authorizer: SocketAddr, body: &str) -> String {
    format!(
        r#"
extension_providers:
  - name: checker
    envoy_ext_authz_http:
      service: {ip}
      port: {port}
      timeout: 5s
      include_request_headers_in_check: ["x-envoy-*"]
      include_request_body_in_check: {body}
"#,
        ip = authorizer.ip(),
        port = authorizer.port(),
    )
}

struct Workloads {
    _inventory: Mesh,
    _server: InboundServer,
    orders: Mesh,
    calls: Arc<AtomicUsize>,
}

async fn inventory_yaml(dir: &Path, providers: &str) -> String {
    let policy_path = dir.join("policy.yaml");
    std::fs::write(&policy_path, POLICY).unwrap();
    format!(
        r#"
workload: {{ name: inventory, namespace: shop, labels: {{ app: inventory }} }}
identity:
  spiffe_id: {INVENTORY}
  dev_ca: {{ dir: {ca} }}
inbound: {{ listen: 127.0.0.1:0 }}
policies: [{policy}]
{providers}
"#,
        ca = dir.join("ca").display(),
        policy = policy_path.display(),
    )
}

async fn workloads(dir: &Path, providers: &str) -> Workloads {
    let inventory = Mesh::from_yaml(&inventory_yaml(dir, providers).await)
        .await
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let server = inventory
        .serve(InboundApp::Http(app(calls.clone())))
        .await
        .unwrap();
    let yaml = format!(
        r#"
identity: {{ spiffe_id: {ORDERS}, dev_ca: {{ dir: {ca} }} }}
services:
  - host: {HOST}
    ports: [{{ port: 8080, protocol: http }}]
    identities: [{INVENTORY}]
    endpoints: [{{ address: "127.0.0.1:8080", hbone_port: {hbone} }}]
"#,
        ca = dir.join("ca").display(),
        hbone = server.local_addr().port(),
    );
    let orders = Mesh::from_yaml(&yaml).await.unwrap();
    Workloads {
        _inventory: inventory,
        _server: server,
        orders,
        calls,
    }
}

/// A request with a `Content-Length` body through the mesh HTTP client.
async fn send(mesh: &Mesh, method: &str, path: &str, body: Vec<u8>) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(format!("http://{HOST}:8080{path}"))
        // A caller cannot tell the authorizer its body is whole.
        .header("x-envoy-auth-partial-body", "forged")
        .body(Bytes::from(body))
        .unwrap();
    let response = tokio::time::timeout(STEP, mesh.http_client().request(request))
        .await
        .expect("request timed out")
        .unwrap();
    let status = response.status();
    let body = tokio::time::timeout(STEP, response.into_body().collect())
        .await
        .expect("response body timed out")
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A request body fed frame by frame from a channel (no length known).
struct Streamed(tokio::sync::mpsc::Receiver<Frame<Bytes>>);

impl Body for Streamed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|f| f.map(Ok))
    }
}

/// A request whose body streams in `chunks` without a `Content-Length` and ends with an
/// `x-check` trailer, sent with HTTP/2 over a tunnel to the HTTP port.
async fn stream(mesh: &Mesh, path: &str, chunks: Vec<Vec<u8>>) -> (StatusCode, String) {
    let tunnel = tokio::time::timeout(STEP, mesh.connect(&format!("{HOST}:8080")))
        .await
        .expect("tunnel timed out")
        .unwrap();
    let (mut sender, connection) = tokio::time::timeout(
        STEP,
        hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(tunnel),
        ),
    )
    .await
    .expect("handshake timed out")
    .unwrap();
    let driver = tokio::spawn(connection);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let body = Streamed(rx);
    let feeder = tokio::spawn(async move {
        for chunk in chunks {
            if tx.send(Frame::data(Bytes::from(chunk))).await.is_err() {
                return;
            }
        }
        let mut trailers = HeaderMap::new();
        trailers.insert("x-check", "tail".parse().unwrap());
        let _ = tx.send(Frame::trailers(trailers)).await;
    });
    let request = Request::post(format!("http://{HOST}:8080{path}"))
        .body(body)
        .unwrap();
    let response = tokio::time::timeout(STEP, sender.send_request(request))
        .await
        .expect("streamed request timed out")
        .unwrap();
    let status = response.status();
    let body = tokio::time::timeout(STEP, response.into_body().collect())
        .await
        .expect("response body timed out")
        .unwrap()
        .to_bytes();
    feeder.abort();
    driver.abort();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn authorizer_sees_the_body_and_decides_on_it() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let authz = Authorizer::start().await;
        let w = workloads(
            dir.path(),
            &provider(authz.addr, "{ max_request_bytes: 64 }"),
        )
        .await;

        let order = b"ship order 7 to alice".to_vec();
        let (status, text) = send(&w.orders, "POST", "/orders", order.clone()).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(text, expected(&order, "-"));
        let seen = authz.seen();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].body, Bytes::from(order.clone()));
        assert_eq!(seen[0].headers["content-length"], order.len().to_string());
        assert_eq!(seen[0].headers["x-envoy-auth-partial-body"], "false");

        // The body decides: the authorizer refuses, the application is never called.
        let calls = w.calls.load(Ordering::SeqCst);
        let (status, text) =
            send(&w.orders, "PUT", "/orders/7", b"please deny this".to_vec()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(text, "body refused");
        assert_eq!(w.calls.load(Ordering::SeqCst), calls);
        assert_eq!(
            authz.seen()[1].body,
            Bytes::from_static(b"please deny this")
        );

        // No body: an empty, whole body is checked.
        let (status, text) = send(&w.orders, "GET", "/orders", Vec::new()).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let get = &authz.seen()[2];
        assert!(get.body.is_empty());
        assert_eq!(get.headers["x-envoy-auth-partial-body"], "false");

        // Exactly the limit, streamed in pieces with a trailer: whole, and the app gets it all.
        let body = pattern(64);
        let (status, text) = stream(
            &w.orders,
            "/orders",
            vec![body[..10].to_vec(), body[10..].to_vec()],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(text, expected(&body, "tail"));
        let streamed = &authz.seen()[3];
        assert_eq!(streamed.body, Bytes::from(body));
        assert_eq!(streamed.headers["content-length"], "64");
        assert_eq!(streamed.headers["x-envoy-auth-partial-body"], "false");
    })
    .await;
}

#[tokio::test]
async fn body_over_the_limit_is_refused_413_without_asking() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let authz = Authorizer::start().await;
        let w = workloads(
            dir.path(),
            &provider(
                authz.addr,
                "{ max_request_bytes: 16, allow_partial_message: false }",
            ),
        )
        .await;

        // Declared too large (Content-Length): refused before reading.
        let (status, text) = send(&w.orders, "POST", "/orders", pattern(17)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
        // Streamed too large (no Content-Length): refused once the 17th byte arrives.
        let (status, text) = stream(
            &w.orders,
            "/orders",
            vec![pattern(10), pattern(10), pattern(100)],
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
        assert!(authz.seen().is_empty(), "{:?}", authz.seen());
        assert_eq!(w.calls.load(Ordering::SeqCst), 0);

        // At the limit: checked and served.
        let (status, text) = send(&w.orders, "POST", "/orders", pattern(16)).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(text, expected(&pattern(16), "-"));
        assert_eq!(authz.seen().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn partial_message_checks_the_start_and_the_app_gets_every_byte() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let authz = Authorizer::start().await;
        let w = workloads(
            dir.path(),
            &provider(
                authz.addr,
                "{ max_request_bytes: 1000, allow_partial_message: true, pack_as_bytes: true }",
            ),
        )
        .await;

        let big = pattern(1024 * 1024);
        let (status, text) = send(&w.orders, "POST", "/upload", big.clone()).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(text, expected(&big, "-"));
        let seen = authz.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].body, Bytes::copy_from_slice(&big[..1000]));
        assert_eq!(seen[0].headers["content-length"], "1000");
        assert_eq!(seen[0].headers["x-envoy-auth-partial-body"], "true");

        // Streamed in uneven chunks with a trailer: the check gets the first 1000 bytes, the
        // application the whole body once, in order, and the trailer.
        let chunks: Vec<Vec<u8>> = big.chunks(7919).map(<[u8]>::to_vec).collect();
        let (status, text) = stream(&w.orders, "/upload", chunks).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(text, expected(&big, "tail"));
        let seen = authz.seen();
        assert_eq!(seen[1].body, Bytes::copy_from_slice(&big[..1000]));
        assert_eq!(seen[1].headers["x-envoy-auth-partial-body"], "true");

        // The start decides even when the rest is large.
        let mut refused = b"deny".to_vec();
        refused.extend(pattern(5000));
        let (status, _) = send(&w.orders, "POST", "/upload", refused).await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // Not under the CUSTOM policy: streamed to the application without a check.
        let calls = authz.seen().len();
        let (status, text) = send(&w.orders, "POST", "/public/upload", big.clone()).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(text, expected(&big, "-"));
        assert_eq!(authz.seen().len(), calls);
    })
    .await;
}

#[tokio::test]
async fn body_settings_mistakes_name_their_field() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let at = "extension_providers[0].envoy_ext_authz_http.include_request_body_in_check";
        let cases = [
            (
                "{ max_request_bytes: 10, max_bytes: 5 }",
                format!("{at}.max_bytes"),
            ),
            (
                "{ max_request_bytes: ten }",
                format!("{at}.max_request_bytes"),
            ),
            (
                "{ max_request_bytes: 10, allow_partial_message: 3 }",
                format!("{at}.allow_partial_message"),
            ),
            (
                "{ allow_partial_message: true }",
                format!("{at}.max_request_bytes"),
            ),
        ];
        let authorizer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for (body, field) in cases {
            let yaml = inventory_yaml(dir.path(), &provider(authorizer, body)).await;
            let err: MeshError = Mesh::from_yaml(&yaml).await.expect_err(body);
            assert!(err.to_string().contains(&field), "{body}: {err}");
        }
    })
    .await;
}
