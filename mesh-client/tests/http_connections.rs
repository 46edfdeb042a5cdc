//! Upstream HTTP connections of `Mesh::http_client()`: HTTP/1.1 keep-alive (one request at a
//! time per connection, a connection whose response is still being read is not handed out
//! again, one the server closes is not reused) and the DestinationRule's `connectionPool`
//! (`maxRequestsPerConnection` and `tcp.maxConnectionDuration` for HTTP/1.1 and HTTP/2,
//! `tcp.connectTimeout`). Real workloads on loopback over mTLS HBONE.

mod support;

use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header::CONNECTION};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use mesh_client::{
    http::HttpService,
    mesh::{InboundApp, InboundServer, Mesh},
};
use support::STEP;

const SERVER_ID: &str = "spiffe://cluster.local/ns/shop/sa/catalog";
const HOST: &str = "catalog.shop.svc.cluster.local";
/// Larger than what hyper reads ahead into a response body, so a connection stays busy until
/// its caller reads the body; eight of them still fit in the HBONE connection window (16 MiB).
const BIG: usize = 1 << 20;

/// `/big` answers `BIG` bytes, `/close` answers and closes the connection, anything else `ok`.
async fn catalog(dir: &std::path::Path) -> (Mesh, InboundServer) {
    let yaml = format!(
        "identity: {{ spiffe_id: {SERVER_ID}, dev_ca: {{ dir: {} }} }}\ninbound: {{ listen: \"127.0.0.1:0\" }}",
        dir.join("ca").display()
    );
    let mesh = Mesh::from_yaml(&yaml).await.unwrap();
    let app = HttpService::new(tower::service_fn(|request: Request<Incoming>| async move {
        let response = match request.uri().path() {
            "/big" => Response::new(Full::new(Bytes::from(vec![7u8; BIG]))),
            "/close" => {
                let mut response = Response::new(Full::new(Bytes::from_static(b"bye")));
                response
                    .headers_mut()
                    .insert(CONNECTION, http::HeaderValue::from_static("close"));
                response
            }
            _ => Response::new(Full::new(Bytes::from_static(b"ok"))),
        };
        Ok::<_, Infallible>(response)
    }));
    let server = mesh.serve(InboundApp::Http(app)).await.unwrap();
    (mesh, server)
}

async fn client(dir: &std::path::Path, server: &InboundServer) -> Mesh {
    let yaml = format!(
        r#"
identity: {{ spiffe_id: spiffe://cluster.local/ns/shop/sa/frontend, dev_ca: {{ dir: {ca} }} }}
services:
  - host: {HOST}
    ports: [{{ port: 8080, protocol: http }}]
    identities: [{SERVER_ID}]
    endpoints: [{{ address: "127.0.0.1:8080", hbone_port: {port} }}]
"#,
        ca = dir.join("ca").display(),
        port = server.local_addr().port(),
    );
    Mesh::from_yaml(&yaml).await.unwrap()
}

async fn send(mesh: &Mesh, path: &str) -> Response<Incoming> {
    let request = Request::get(format!("http://{HOST}:8080{path}"))
        .body(Bytes::new())
        .unwrap();
    tokio::time::timeout(STEP, mesh.http_client().request(request))
        .await
        .expect("request timed out")
        .expect("request failed")
}

async fn read(response: Response<Incoming>) -> Bytes {
    tokio::time::timeout(STEP, response.into_body().collect())
        .await
        .expect("body timed out")
        .expect("body failed")
        .to_bytes()
}

/// Waits until the server holds `tunnels` open tunnels (they close asynchronously).
async fn wait_for_tunnels(server: &InboundServer, tunnels: usize) {
    tokio::time::timeout(STEP, async {
        while server.stats().tunnels != tunnels {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "server holds {} tunnels, expected {tunnels}",
            server.stats().tunnels
        )
    });
}

#[tokio::test]
async fn a_connection_still_reading_a_response_is_not_handed_out_again() {
    let dir = tempfile::tempdir().unwrap();
    let (_server_mesh, server) = catalog(dir.path()).await;
    let mesh = client(dir.path(), &server).await;

    // The big response is not read yet: its connection is busy.
    let big = send(&mesh, "/big").await;
    assert_eq!(big.status(), StatusCode::OK);
    // So the next request takes a second connection (a second tunnel) and succeeds at once.
    assert_eq!(read(send(&mesh, "/").await).await, "ok");
    assert_eq!(server.stats().tunnels, 2);
    // Reading the big response to the end frees its connection.
    assert_eq!(read(big).await.len(), BIG);
    // From now on sequential requests reuse the two kept connections; no tunnel is added.
    for _ in 0..10 {
        assert_eq!(read(send(&mesh, "/").await).await, "ok");
    }
    assert_eq!(server.stats().tunnels, 2);
    assert_eq!(mesh.hbone().stats().connections_opened, 1);
}

#[tokio::test]
async fn a_connection_the_server_closes_is_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (_server_mesh, server) = catalog(dir.path()).await;
    let mesh = client(dir.path(), &server).await;

    assert_eq!(read(send(&mesh, "/").await).await, "ok");
    assert_eq!(server.stats().tunnels, 1);
    // The server answers and closes: the tunnel goes away and is not used again.
    assert_eq!(read(send(&mesh, "/close").await).await, "bye");
    wait_for_tunnels(&server, 0).await;
    // The next requests open one new connection and keep it.
    for _ in 0..3 {
        assert_eq!(read(send(&mesh, "/").await).await, "ok");
    }
    assert_eq!(server.stats().tunnels, 1);
}

#[tokio::test]
async fn concurrent_requests_get_a_connection_each_and_keep_them() {
    let dir = tempfile::tempdir().unwrap();
    let (_server_mesh, server) = catalog(dir.path()).await;
    let mesh = client(dir.path(), &server).await;

    // Eight responses held open at once need eight connections.
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(send(&mesh, "/big").await);
    }
    assert_eq!(server.stats().tunnels, 8);
    for response in held {
        assert_eq!(read(response).await.len(), BIG);
    }
    // All eight are kept and reused: eight more requests in parallel open nothing new.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let mesh = mesh.clone();
        tasks.spawn(async move { read(send(&mesh, "/").await).await });
    }
    let answers = tasks.join_all().await;
    assert!(answers.iter().all(|a| a == "ok"), "{answers:?}");
    assert_eq!(server.stats().tunnels, 8);
}

/// A client whose DestinationRule-style `traffic_policy` for the catalog is `policy`.
async fn client_with(dir: &std::path::Path, hbone_port: u16, policy: &str) -> Mesh {
    client_speaking(dir, hbone_port, "http", policy).await
}

/// As [`client_with`], the port speaking `protocol`.
async fn client_speaking(
    dir: &std::path::Path,
    hbone_port: u16,
    protocol: &str,
    policy: &str,
) -> Mesh {
    let yaml = format!(
        r#"
identity: {{ spiffe_id: spiffe://cluster.local/ns/shop/sa/frontend, dev_ca: {{ dir: {ca} }} }}
services:
  - host: {HOST}
    ports: [{{ port: 8080, protocol: {protocol} }}]
    identities: [{SERVER_ID}]
    endpoints: [{{ address: "127.0.0.1:8080", hbone_port: {hbone_port} }}]
    traffic_policy: {policy}
"#,
        ca = dir.join("ca").display(),
    );
    Mesh::from_yaml(&yaml).await.unwrap()
}

/// With `maxRequestsPerConnection: 2` on a port speaking `protocol`, every connection (and its
/// tunnel) carries two requests and is then closed; the next request opens another.
async fn connections_retire_after_two_requests(protocol: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (_server_mesh, server) = catalog(dir.path()).await;
    let mesh = client_speaking(
        dir.path(),
        server.local_addr().port(),
        protocol,
        "{ connection_pool: { http: { max_requests_per_connection: 2 } } }",
    )
    .await;
    for _ in 0..3 {
        // Two requests share a connection...
        assert_eq!(read(send(&mesh, "/").await).await, "ok");
        assert_eq!(server.stats().tunnels, 1);
        assert_eq!(read(send(&mesh, "/").await).await, "ok");
        // ...which is then closed: its tunnel goes away, and the next request opens another.
        wait_for_tunnels(&server, 0).await;
    }
}

#[tokio::test]
async fn max_requests_per_connection_retires_connections() {
    connections_retire_after_two_requests("http").await;
}

#[tokio::test]
async fn max_requests_per_connection_retires_http2_connections_too() {
    connections_retire_after_two_requests("http2").await;
}

/// With `maxConnectionDuration: 1s` on a port speaking `protocol`: a connection is reused until
/// that age, is not handed out after it (a new one is opened) while the response in flight on
/// it still arrives whole, and closes once that response is read; an idle connection closes at
/// its age with no request to notice.
async fn connections_retire_at_their_max_duration(protocol: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (_server_mesh, server) = catalog(dir.path()).await;
    let mesh = client_speaking(
        dir.path(),
        server.local_addr().port(),
        protocol,
        "{ connection_pool: { tcp: { max_connection_duration: 1s } } }",
    )
    .await;
    assert_eq!(read(send(&mesh, "/").await).await, "ok");
    // Young: reused, for a response left unread for now.
    let big = send(&mesh, "/big").await;
    assert_eq!(server.stats().tunnels, 1);

    // Letting the connection reach its age is the point of the test.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    // Old: not handed out again; the next request opens a second connection.
    let reopened = std::time::Instant::now();
    assert_eq!(read(send(&mesh, "/").await).await, "ok");
    assert_eq!(server.stats().tunnels, 2, "{protocol}");
    // The response in flight on the old connection still arrives whole.
    assert_eq!(read(big).await.len(), BIG);
    // Then the old connection closes, and the new one, idle, at its own age.
    wait_for_tunnels(&server, 0).await;
    assert!(
        reopened.elapsed() >= Duration::from_millis(900),
        "{protocol}: closed after {:?}",
        reopened.elapsed()
    );
    assert_eq!(read(send(&mesh, "/").await).await, "ok");
    assert_eq!(server.stats().tunnels, 1);
}

#[tokio::test]
async fn max_connection_duration_retires_http1_connections() {
    connections_retire_at_their_max_duration("http").await;
}

#[tokio::test]
async fn max_connection_duration_retires_http2_connections() {
    connections_retire_at_their_max_duration("http2").await;
}

/// A TCP listener that accepts and never says a word: a TLS handshake with it cannot finish.
async fn silent_endpoint() -> (u16, tokio::task::JoinHandle<()>) {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    (port, task)
}

#[tokio::test]
async fn connect_timeout_bounds_raw_tunnels() {
    let dir = tempfile::tempdir().unwrap();
    let (port, accepting) = silent_endpoint().await;
    let mesh = client_with(
        dir.path(),
        port,
        "{ connection_pool: { tcp: { connect_timeout: 200ms } } }",
    )
    .await;
    let error = tokio::time::timeout(
        Duration::from_secs(5),
        mesh.connect(&format!("{HOST}:8080")),
    )
    .await
    .expect("the connect timeout did not apply")
    .unwrap_err()
    .to_string();
    assert!(error.contains("connectTimeout"), "{error}");
    accepting.abort();
}

#[tokio::test]
async fn connect_timeout_bounds_opening_a_tunnel() {
    let dir = tempfile::tempdir().unwrap();
    let (port, accepting) = silent_endpoint().await;
    let mesh = client_with(
        dir.path(),
        port,
        "{ connection_pool: { tcp: { connect_timeout: 200ms } }, http: [{ route: [{ destination: { host: catalog.shop.svc.cluster.local } }], retries: { attempts: 0 } }] }",
    )
    .await;
    let request = Request::get(format!("http://{HOST}:8080/"))
        .body(Bytes::new())
        .unwrap();
    let started = std::time::Instant::now();
    // Well under the HBONE client's own 10 s limit.
    let error = tokio::time::timeout(Duration::from_secs(5), mesh.http_client().request(request))
        .await
        .expect("the connect timeout did not apply")
        .unwrap_err()
        .to_string();
    assert!(error.contains("connectTimeout"), "{error}");
    assert!(started.elapsed() >= Duration::from_millis(200), "{error}");
    accepting.abort();
}
