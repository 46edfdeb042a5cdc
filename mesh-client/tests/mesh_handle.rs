//! The `Mesh` handle end to end: two workloads built from YAML, sharing a development CA
//! directory, talking HTTP and raw TCP over real HBONE on loopback, with policy files enforced.

mod support;

use std::{convert::Infallible, path::Path};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use mesh_client::{
    http::{HttpService, PeerIdentity},
    mesh::{InboundApp, InboundServer, Mesh, MeshError},
};
use support::{STEP, echo_server, round_trip};

const INVENTORY: &str = "spiffe://cluster.local/ns/shop/sa/inventory";
const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";
const INTRUDER: &str = "spiffe://cluster.local/ns/other/sa/intruder";
const HOST: &str = "inventory.shop.svc.cluster.local";

/// Answers with the caller's SPIFFE ID and the path.
fn app() -> HttpService {
    HttpService::new(tower::service_fn(|request: Request<Incoming>| async move {
        let peer = request.extensions().get::<PeerIdentity>().cloned();
        let text = format!(
            "{} {}{}",
            peer.map_or("anonymous".to_owned(), |p| p.id.to_string()),
            request.uri().path(),
            // Shows whether a bearer token reached the application.
            if request.headers().contains_key("authorization") {
                " +token"
            } else {
                ""
            }
        );
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
    }))
}

const POLICY: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: orders-read-stock, namespace: shop }
spec:
  selector: { matchLabels: { app: inventory } }
  action: ALLOW
  rules:
  - from: [{ source: { principals: ["cluster.local/ns/shop/sa/orders"] } }]
    to: [{ operation: { methods: ["GET"], paths: ["/stock*"] } }]
  - from: [{ source: { principals: ["cluster.local/ns/shop/sa/orders"] } }]
    to: [{ operation: { ports: ["9000"] } }]
"#;

/// The inventory workload: HTTP in-process, port 9000 forwarded to an echo server.
async fn inventory(dir: &Path, echo_port: u16) -> (Mesh, InboundServer) {
    inventory_with(dir, echo_port, POLICY).await
}

async fn inventory_with(dir: &Path, echo_port: u16, policy_text: &str) -> (Mesh, InboundServer) {
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, policy_text).unwrap();
    let yaml = format!(
        r#"
workload: {{ name: inventory, namespace: shop, labels: {{ app: inventory }} }}
identity:
  spiffe_id: {INVENTORY}
  dev_ca: {{ dir: {ca} }}
inbound:
  listen: 127.0.0.1:0
  forward: {{ 9000: "127.0.0.1:{echo_port}" }}
policies: [{policy}]
"#,
        ca = dir.join("ca").display(),
        policy = policy.display(),
    );
    let mesh = Mesh::from_yaml(&yaml).await.unwrap();
    let server = mesh.serve(InboundApp::Http(app())).await.unwrap();
    (mesh, server)
}

/// A caller with `spiffe_id` that knows the inventory service behind `server`.
async fn caller(dir: &Path, spiffe_id: &str, server: &InboundServer) -> Mesh {
    let hbone_port = server.local_addr().port();
    let yaml = format!(
        r#"
identity:
  spiffe_id: {spiffe_id}
  dev_ca: {{ dir: {ca} }}
services:
  - host: {HOST}
    ports: [{{ port: 8080, protocol: http }}, {{ port: 9000 }}]
    identities: [{INVENTORY}]
    endpoints: [{{ address: "127.0.0.1:8080", hbone_port: {hbone_port} }}]
"#,
        ca = dir.join("ca").display(),
    );
    Mesh::from_yaml(&yaml).await.unwrap()
}

async fn get(mesh: &Mesh, path: &str) -> (StatusCode, String) {
    get_with(mesh, path, None).await
}

async fn get_with(mesh: &Mesh, path: &str, bearer: Option<&str>) -> (StatusCode, String) {
    let mut request = Request::get(format!("http://{HOST}:8080{path}"));
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(Bytes::new()).unwrap();
    let response = tokio::time::timeout(STEP, mesh.http_client().request(request))
        .await
        .unwrap()
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn http_through_the_mesh_with_l7_authorization() {
    let dir = tempfile::tempdir().unwrap();
    let (_inventory, server) = inventory(dir.path(), 9).await;
    let orders = caller(dir.path(), ORDERS, &server).await;
    assert_eq!(orders.identity().as_str(), ORDERS);

    let (status, body) = get(&orders, "/stock/42").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, format!("{ORDERS} /stock/42"));

    // Same caller, path outside the ALLOW rule: 403 from the policy, not from the app.
    let (status, body) = get(&orders, "/admin").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("RBAC: access denied"), "{body}");

    // Another identity of the same trust domain gets nothing.
    let intruder = caller(dir.path(), INTRUDER, &server).await;
    let (status, _) = get(&intruder, "/stock/42").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(server.shutdown().await, 0);
}

#[tokio::test]
async fn raw_tunnels_are_forwarded_and_authorized_per_tunnel() {
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_server().await;
    let (_inventory, server) = inventory(dir.path(), echo.port()).await;
    let orders = caller(dir.path(), ORDERS, &server).await;

    let mut tunnel = tokio::time::timeout(STEP, orders.connect(&format!("{HOST}:9000")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tunnel.peer_identity().unwrap().as_str(), INVENTORY);
    assert_eq!(round_trip(&mut tunnel, b"ping").await, b"ping");
    drop(tunnel);

    let intruder = caller(dir.path(), INTRUDER, &server).await;
    let denied = tokio::time::timeout(STEP, intruder.connect(&format!("{HOST}:9000")))
        .await
        .unwrap()
        .unwrap_err();
    match &denied {
        // A 401 is final: no retry against the same policy.
        MeshError::Tunnel {
            attempts, source, ..
        } => {
            assert_eq!(*attempts, 1, "{denied}");
            assert_eq!(source.status(), Some(StatusCode::UNAUTHORIZED), "{denied}");
        }
        other => panic!("expected a denied tunnel, got {other}"),
    }
    assert_eq!(server.shutdown().await, 0);
}

#[tokio::test]
async fn connect_retries_on_another_endpoint_when_one_is_dead() {
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_server().await;
    let (_inventory, server) = inventory(dir.path(), echo.port()).await;
    // A port nothing listens on: bind, note, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let yaml = format!(
        r#"
identity: {{ spiffe_id: {ORDERS}, dev_ca: {{ dir: {ca} }} }}
services:
  - host: {HOST}
    ports: [{{ port: 9000 }}]
    identities: [{INVENTORY}]
    endpoints:
      - {{ address: "127.0.0.1:9000", hbone_port: {live} }}
      - {{ address: "127.0.0.2:9000", hbone_port: {dead_port} }}
"#,
        ca = dir.path().join("ca").display(),
        live = server.local_addr().port(),
    );
    let orders = Mesh::from_yaml(&yaml).await.unwrap();
    for i in 0..10u8 {
        let mut tunnel = tokio::time::timeout(STEP, orders.connect(&format!("{HOST}:9000")))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("tunnel {i}: {e}"));
        assert_eq!(round_trip(&mut tunnel, &[i]).await, [i]);
    }
}

#[tokio::test]
async fn workloads_starting_together_agree_on_one_development_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("shared-ca");
    let starts = (0..4).map(|i| {
        let yaml = format!(
            "identity: {{ spiffe_id: spiffe://cluster.local/ns/shop/sa/w{i}, dev_ca: {{ dir: {} }} }}",
            ca.display()
        );
        tokio::spawn(async move { Mesh::from_yaml(&yaml).await.unwrap() })
    });
    let mut roots = Vec::new();
    for start in starts {
        let mesh = tokio::time::timeout(STEP, start).await.unwrap().unwrap();
        roots.push(format!("{:?}", mesh.tls().credentials().bundles()));
    }
    assert!(roots.windows(2).all(|w| w[0] == w[1]), "different CAs");
    assert!(ca.join("ca.pem").exists());
    // No staging directories are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".dev-ca-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn bad_settings_fail_with_the_setting_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "identity: { files: { dir: /nonexistent }, dev_ca: {} }".to_owned(),
            "both `files` and `dev_ca`",
        ),
        (
            "identity: { spiffe_id: not-a-spiffe-id }".to_owned(),
            "identity.spiffe_id",
        ),
        (
            "inbound: { listen: localhost }".to_owned(),
            "inbound.listen",
        ),
        (
            "identity: { dev_ca: { svid_ttl: forever } }".to_owned(),
            "identity.dev_ca.svid_ttl",
        ),
        ("identiti: {}".to_owned(), "identiti"),
        (
            format!(
                "identity: {{ dev_ca: {{ dir: {} }} }}\npolicies: [{}]",
                dir.path().join("ca").display(),
                dir.path().join("missing.yaml").display()
            ),
            "missing.yaml",
        ),
        (
            "identity: { files: { cert: /nonexistent/svid.pem } }".to_owned(),
            "identity.files.key",
        ),
    ];
    for (yaml, expected) in cases {
        let error = Mesh::from_yaml(&yaml).await.unwrap_err().to_string();
        assert!(error.contains(expected), "{yaml}: {error}");
    }
}

/// An ES256 key: the signing key and its public JWKS.
fn jwt_key() -> (jsonwebtoken::EncodingKey, String) {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let point = pair.public_key_raw();
    let jwks = serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..]),
    }]});
    (
        jsonwebtoken::EncodingKey::from_ec_der(&pair.serialize_der()),
        jwks.to_string(),
    )
}

fn token(key: &jsonwebtoken::EncodingKey, sub: &str, exp_from_now: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("k1".to_owned());
    let claims = serde_json::json!({
        "iss": "https://issuer.test", "sub": sub, "aud": "shop", "exp": now + exp_from_now,
    });
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

#[tokio::test]
async fn jwt_request_authentication_feeds_authorization() {
    let dir = tempfile::tempdir().unwrap();
    let (key, jwks) = jwt_key();
    let policy = format!(
        r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{ name: jwt, namespace: shop }}
spec:
  jwtRules:
  - issuer: https://issuer.test
    audiences: [shop]
    jwks: '{jwks}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{ name: alice-only, namespace: shop }}
spec:
  rules:
  - from: [{{ source: {{ requestPrincipals: ["https://issuer.test/alice"] }} }}]
"#
    );
    let (_inventory, server) = inventory_with(dir.path(), 9, &policy).await;
    let orders = caller(dir.path(), ORDERS, &server).await;

    // A valid token of the allowed principal; the token is not forwarded to the app.
    let alice = token(&key, "alice", 600);
    let (status, body) = get_with(&orders, "/private", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, format!("{ORDERS} /private"));
    // No token: authentication passes, authorization finds no request principal.
    let (status, _) = get_with(&orders, "/private", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A valid token of another principal: 403. An expired or forged one: 401.
    let bob = token(&key, "bob", 600);
    assert_eq!(
        get_with(&orders, "/private", Some(&bob)).await.0,
        StatusCode::FORBIDDEN
    );
    let expired = token(&key, "alice", -3600);
    assert_eq!(
        get_with(&orders, "/private", Some(&expired)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (other_key, _) = jwt_key();
    let forged = token(&other_key, "alice", 600);
    let (status, body) = get_with(&orders, "/private", Some(&forged)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        !body.contains("issuer.test"),
        "the answer names no configuration: {body}"
    );
    assert_eq!(server.shutdown().await, 0);
}

#[allow(dead_code)]
mod redis_server;

#[tokio::test]
async fn inbound_rate_limits_local_and_shared_through_redis() {
    let Some(redis) = redis_server::RedisServer::start() else {
        // The fixture fails the test itself when CI is set and redis-server is missing.
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local.yaml");
    std::fs::write(
        &local,
        "rules: [{ name: per-caller, key: [source_principal], limit: { max_tokens: 3, fill_interval: 1h } }]",
    )
    .unwrap();
    let global = dir.path().join("global.yaml");
    std::fs::write(
        &global,
        "rules: [{ name: stock, match: { path_prefixes: [/stock] }, limit: { max_tokens: 2, fill_interval: 1h } }]",
    )
    .unwrap();
    // Two replicas of inventory share the global limit; each has its own local one.
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let yaml = format!(
            r#"
workload: {{ namespace: shop }}
identity: {{ spiffe_id: {INVENTORY}, dev_ca: {{ dir: {ca} }} }}
inbound: {{ listen: 127.0.0.1:0 }}
rate_limit:
  local: {local}
  global: {{ rules: {global}, redis: "{url}", timeout: 500ms }}
"#,
            ca = dir.path().join("ca").display(),
            local = local.display(),
            global = global.display(),
            url = redis.url(),
        );
        let mesh = Mesh::from_yaml(&yaml).await.unwrap();
        let server = mesh.serve(InboundApp::Http(app())).await.unwrap();
        replicas.push((mesh, server));
    }
    let first = caller(dir.path(), ORDERS, &replicas[0].1).await;
    let second = caller(dir.path(), ORDERS, &replicas[1].1).await;

    // /stock: two requests in total across both replicas, then 429 from either.
    assert_eq!(get(&first, "/stock/1").await.0, StatusCode::OK);
    assert_eq!(get(&second, "/stock/2").await.0, StatusCode::OK);
    let request = Request::get(format!("http://{HOST}:8080/stock/3"))
        .body(Bytes::new())
        .unwrap();
    let limited = tokio::time::timeout(STEP, second.http_client().request(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().contains_key("retry-after"), "{limited:?}");
    // The local limit of the first replica: 3 per caller, this one already spent 1.
    assert_eq!(get(&first, "/other").await.0, StatusCode::OK);
    assert_eq!(get(&first, "/other").await.0, StatusCode::OK);
    assert_eq!(get(&first, "/other").await.0, StatusCode::TOO_MANY_REQUESTS);
    for (_, server) in replicas {
        server.shutdown().await;
    }
}
