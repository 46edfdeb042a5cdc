//! PeerAuthentication enforced by the `Mesh` inbound listener, over real sockets: plaintext
//! clients (a plain hyper client, raw TCP) and mesh clients (HBONE) on the same port.

mod support;

use std::{convert::Infallible, future::Future, net::SocketAddr, path::Path, time::Duration};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mesh_client::{
    http::{HttpService, InboundPeer, PeerIdentity},
    mesh::{InboundApp, InboundConnection, InboundServer, Mesh},
};
use support::{STEP, echo_server, round_trip};
use tokio::net::TcpStream;

const INVENTORY: &str = "spiffe://cluster.local/ns/shop/sa/inventory";
const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";
const HOST: &str = "inventory.shop.svc.cluster.local";
const TEST_LIMIT: Duration = Duration::from_secs(90);

async fn limited<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(TEST_LIMIT, test)
        .await
        .expect("test timed out");
}

/// Answers `<principal or "plaintext"> <identity extension?> <path>`.
fn app() -> HttpService {
    HttpService::new(tower::service_fn(|request: Request<Incoming>| async move {
        let peer = request.extensions().get::<InboundPeer>().cloned().unwrap();
        let identity = request.extensions().get::<PeerIdentity>().is_some();
        let text = format!(
            "{} identity={identity} {}",
            peer.principal
                .map_or("plaintext".to_owned(), |p| p.to_string()),
            request.uri().path(),
        );
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
    }))
}

fn peer_authn(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
         metadata: {{ name: {name}, namespace: shop }}\nspec: {spec}\n---\n"
    )
}

/// A port that was free a moment ago (for configs that must name the listener's port).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

async fn inventory(
    dir: &Path,
    port: u16,
    policies: &str,
    forward: &str,
    app: InboundApp,
) -> (Mesh, InboundServer) {
    let policy = dir.join("policies.yaml");
    std::fs::write(&policy, policies).unwrap();
    let yaml = format!(
        r#"
workload: {{ name: inventory, namespace: shop, labels: {{ app: inventory }} }}
identity:
  spiffe_id: {INVENTORY}
  dev_ca: {{ dir: {ca} }}
inbound:
  listen: 127.0.0.1:{port}
  forward: {{ {forward} }}
policies: [{policy}]
"#,
        ca = dir.join("ca").display(),
        policy = policy.display(),
    );
    let mesh = Mesh::from_yaml(&yaml).await.unwrap();
    let server = mesh.serve(app).await.unwrap();
    (mesh, server)
}

async fn orders(dir: &Path, server: &InboundServer) -> Mesh {
    let yaml = format!(
        r#"
identity: {{ spiffe_id: {ORDERS}, dev_ca: {{ dir: {ca} }} }}
services:
  - host: {HOST}
    ports: [{{ port: 8080, protocol: http }}, {{ port: 7000 }}]
    identities: [{INVENTORY}]
    endpoints: [{{ address: "127.0.0.1:8080", hbone_port: {hbone} }}]
"#,
        ca = dir.join("ca").display(),
        hbone = server.local_addr().port(),
    );
    Mesh::from_yaml(&yaml).await.unwrap()
}

async fn mesh_get(mesh: &Mesh, path: &str) -> (StatusCode, String) {
    let request = Request::get(format!("http://{HOST}:8080{path}"))
        .body(Bytes::new())
        .unwrap();
    let response = tokio::time::timeout(STEP, mesh.http_client().request(request))
        .await
        .unwrap()
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A plain HTTP/1.1 request (no TLS, no mesh) straight to the listener.
async fn plain_get(addr: SocketAddr, path: &str) -> Result<(StatusCode, String), hyper::Error> {
    tokio::time::timeout(STEP, async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        let driver = tokio::spawn(connection);
        let request = Request::get(path)
            .header("host", "inventory")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let result = async {
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        }
        .await;
        drop(sender);
        driver.abort();
        result
    })
    .await
    .expect("plain request timed out")
}

#[tokio::test]
async fn permissive_serves_plaintext_and_hbone_on_one_port() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let policies = peer_authn("default", "{ mtls: { mode: PERMISSIVE } }");
        let (inventory, server) =
            inventory(dir.path(), 0, &policies, "", InboundApp::Http(app())).await;
        let (status, body) = plain_get(server.local_addr(), "/plain").await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, "plaintext identity=false /plain");

        let orders = orders(dir.path(), &server).await;
        let (status, body) = mesh_get(&orders, "/mesh").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, format!("{ORDERS} identity=true /mesh"));
        assert_eq!(server.plaintext_refused(), 0);

        // Both requests are in Istio's metrics at the destination: the plaintext one without
        // a source principal and with connection_security_policy="none".
        let requests: Vec<String> = inventory
            .telemetry()
            .encode_classic()
            .lines()
            .filter(|l| l.starts_with("istio_requests_total{"))
            .filter(|l| l.contains("reporter=\"destination\"") && l.ends_with(" 1"))
            .map(str::to_owned)
            .collect();
        let plain = requests
            .iter()
            .filter(|l| l.contains("connection_security_policy=\"none\""))
            .collect::<Vec<_>>();
        assert_eq!(plain.len(), 1, "{requests:#?}");
        assert!(
            plain[0].contains("source_principal=\"unknown\""),
            "{}",
            plain[0]
        );
        assert!(plain[0].contains("response_code=\"200\""), "{}", plain[0]);
        let mtls = requests
            .iter()
            .filter(|l| l.contains("connection_security_policy=\"mutual_tls\""))
            .collect::<Vec<_>>();
        assert_eq!(mtls.len(), 1, "{requests:#?}");
        assert!(
            mtls[0].contains(&format!("source_principal=\"{ORDERS}\"")),
            "{}",
            mtls[0]
        );
        assert_eq!(server.shutdown().await, 0);
    })
    .await;
}

#[tokio::test]
async fn strict_and_the_default_refuse_plaintext_but_serve_hbone() {
    limited(async {
        for policies in [
            peer_authn("default", "{ mtls: { mode: STRICT } }"),
            String::new(),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let (inventory, server) =
                inventory(dir.path(), 0, &policies, "", InboundApp::Http(app())).await;
            let refused = plain_get(server.local_addr(), "/plain").await;
            assert!(refused.is_err(), "{policies}: {refused:?}");
            assert_eq!(server.plaintext_refused(), 1, "{policies}");
            let refused = inventory
                .telemetry()
                .encode_classic()
                .lines()
                .filter(|l| l.starts_with("mesh_tls_handshakes_total{"))
                .filter(|l| l.contains("reason=\"plaintext_refused\""))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
            assert_eq!(refused, 1.0, "{policies}");
            let orders = orders(dir.path(), &server).await;
            let (status, _) = mesh_get(&orders, "/mesh").await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(server.shutdown().await, 0);
        }
    })
    .await;
}

#[tokio::test]
async fn a_policy_requiring_a_principal_denies_the_plaintext_peer() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let policies = peer_authn("default", "{ mtls: { mode: PERMISSIVE } }")
            + r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: orders-only, namespace: shop }
spec:
  action: ALLOW
  rules:
  - from: [{ source: { principals: ["cluster.local/ns/shop/sa/orders"] } }]
"#;
        let (_inventory, server) =
            inventory(dir.path(), 0, &policies, "", InboundApp::Http(app())).await;
        let (status, body) = plain_get(server.local_addr(), "/plain").await.unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body, "RBAC: access denied");
        let orders = orders(dir.path(), &server).await;
        let (status, _) = mesh_get(&orders, "/mesh").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(server.shutdown().await, 0);
    })
    .await;
}

#[tokio::test]
async fn port_level_mtls_keys_on_the_listener_port() {
    limited(async {
        // Namespace STRICT, the workload opens its listener port to plaintext.
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let policies = peer_authn("default", "{ mtls: { mode: STRICT } }")
            + &peer_authn(
                "inventory",
                &format!(
                    "{{ selector: {{ matchLabels: {{ app: inventory }} }}, \
                     portLevelMtls: {{ {port}: {{ mode: PERMISSIVE }} }} }}"
                ),
            );
        let (_inventory, server) =
            inventory(dir.path(), port, &policies, "", InboundApp::Http(app())).await;
        let (status, body) = plain_get(server.local_addr(), "/p").await.unwrap();
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "plaintext identity=false /p")
        );
        assert_eq!(server.shutdown().await, 0);

        // Namespace PERMISSIVE, another port's override does not apply; this one's does.
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let other = if port == 65535 { port - 1 } else { port + 1 };
        let open = peer_authn("default", "{ mtls: { mode: PERMISSIVE } }");
        let workload = |p: u16| {
            peer_authn(
                "inventory",
                &format!(
                    "{{ selector: {{ matchLabels: {{ app: inventory }} }}, \
                     portLevelMtls: {{ {p}: {{ mode: STRICT }} }} }}"
                ),
            )
        };
        let (_inventory, server) = inventory(
            dir.path(),
            port,
            &(open.clone() + &workload(other)),
            "",
            InboundApp::Http(app()),
        )
        .await;
        assert!(plain_get(server.local_addr(), "/p").await.is_ok());
        assert_eq!(server.shutdown().await, 0);
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let (_inventory, server) = inventory(
            dir.path(),
            port,
            &(open + &workload(port)),
            "",
            InboundApp::Http(app()),
        )
        .await;
        assert!(plain_get(server.local_addr(), "/p").await.is_err());
        assert_eq!(server.plaintext_refused(), 1);
        assert_eq!(server.shutdown().await, 0);
    })
    .await;
}

#[tokio::test]
async fn disable_forwards_plaintext_bytes_for_the_listener_port() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let echo = echo_server().await;
        let port = free_port();
        let policies = peer_authn("default", "{ mtls: { mode: DISABLE } }");
        let forward = format!("{port}: \"{echo}\"");
        let (_inventory, server) =
            inventory(dir.path(), port, &policies, &forward, InboundApp::None).await;
        let mut tcp = tokio::time::timeout(STEP, TcpStream::connect(server.local_addr()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            round_trip(&mut tcp, b"hello plaintext").await,
            b"hello plaintext"
        );
        drop(tcp);
        assert_eq!(server.plaintext_refused(), 0);
        assert_eq!(server.shutdown().await, 0);
    })
    .await;
}

#[tokio::test]
async fn a_connections_app_gets_hbone_tunnels_and_plaintext_peers() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
        // Echoes every connection and reports its principal and target port.
        let handler = std::sync::Arc::new(move |connection: InboundConnection| {
            let _ = seen_tx.send((connection.principal.clone(), connection.target.port()));
            tokio::spawn(async move {
                let mut stream = connection.stream;
                let (mut reader, mut writer) = tokio::io::split(&mut stream);
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut writer).await;
            });
        });
        let policies = peer_authn("default", "{ mtls: { mode: PERMISSIVE } }");
        let (_inventory, server) = inventory(
            dir.path(),
            0,
            &policies,
            "",
            InboundApp::Connections(handler),
        )
        .await;
        let mut plain = tokio::time::timeout(STEP, TcpStream::connect(server.local_addr()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(round_trip(&mut plain, b"plain").await, b"plain");
        let seen = seen_rx.recv().await.unwrap();
        assert_eq!(seen, (None, server.local_addr().port()));

        let orders = orders(dir.path(), &server).await;
        let mut tunnel = tokio::time::timeout(STEP, orders.connect(&format!("{HOST}:7000")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(round_trip(&mut tunnel, b"hbone").await, b"hbone");
        let (principal, port) = seen_rx.recv().await.unwrap();
        assert_eq!(principal.unwrap().as_str(), ORDERS);
        assert_eq!(port, 7000);
        drop((plain, tunnel));
        server.shutdown().await;
    })
    .await;
}
