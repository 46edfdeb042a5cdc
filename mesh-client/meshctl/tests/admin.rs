//! `meshctl status` and `meshctl endpoints` against real workloads: two meshes built from YAML
//! in this process, a raw tunnel between them over HBONE on loopback, and the built meshctl
//! binary reading their admin endpoints.

use std::{
    net::SocketAddr,
    process::{Output, Stdio},
    time::Duration,
};

use mesh_client::mesh::{InboundApp, Mesh};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    process::Command,
};

/// Upper bound for every step; on loopback each takes milliseconds.
const STEP: Duration = Duration::from_secs(30);
const INVENTORY: &str = "spiffe://cluster.local/ns/shop/sa/inventory";
const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";
const HOST: &str = "inventory.shop.svc.cluster.local";

async fn meshctl(args: &[&str]) -> Output {
    let run = Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(STEP, run)
        .await
        .unwrap_or_else(|_| panic!("meshctl {args:?} did not finish within {STEP:?}"))
        .expect("run meshctl")
}

fn describe(out: &Output) -> String {
    format!(
        "status: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn echo_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_endpoints_read_a_running_workload() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let echo = echo_server().await;
    let inventory = Mesh::from_yaml(&format!(
        r#"
workload: {{ name: inventory, namespace: shop, labels: {{ app: inventory }} }}
identity: {{ spiffe_id: {INVENTORY}, dev_ca: {{ dir: {ca} }} }}
inbound: {{ listen: "127.0.0.1:0", forward: {{ 9000: "{echo}" }} }}
admin: {{ listen: "127.0.0.1:0" }}
"#,
        ca = ca.display()
    ))
    .await
    .unwrap();
    let server = inventory.serve(InboundApp::None).await.unwrap();
    let orders = Mesh::from_yaml(&format!(
        r#"
workload: {{ name: orders, namespace: shop }}
identity: {{ spiffe_id: {ORDERS}, dev_ca: {{ dir: {ca} }} }}
admin: {{ listen: "127.0.0.1:0" }}
services:
  - host: {HOST}
    ports: [{{ port: 9000 }}]
    identities: [{INVENTORY}]
    endpoints:
      - {{ address: "127.0.0.1:9000", hbone_port: {hbone}, locality: us-east1/b }}
      - {{ address: "127.0.0.2:9000", hbone_port: {hbone}, health: unhealthy, weight: 3 }}
"#,
        ca = ca.display(),
        hbone = server.local_addr().port(),
    ))
    .await
    .unwrap();

    let mut tunnel = tokio::time::timeout(STEP, orders.connect(&format!("{HOST}:9000")))
        .await
        .unwrap()
        .unwrap();
    tunnel.write_all(b"ping").await.unwrap();
    tunnel.shutdown().await.unwrap();
    let mut echoed = Vec::new();
    tokio::time::timeout(STEP, tunnel.read_to_end(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echoed, b"ping");
    drop(tunnel);

    let admin = orders.admin_addr().unwrap().to_string();
    let out = meshctl(&["status", &admin]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for expected in [
        format!("workload:    orders in shop ({ORDERS})"),
        "ready:       yes".to_owned(),
        format!("certificate: {ORDERS} expires "),
        "inbound:     not configured".to_owned(),
        "discovery:   version 1, 1 update, healthy".to_owned(),
        format!("  {HOST}  ports 9000/tcp  2 endpoints (1 healthy, 0 ejected)"),
        "policies:    authorization none; request authentication off; rate limit none".to_owned(),
        "outbound 0 requests (0 5xx), 1 tunnels".to_owned(),
        "telemetry:   metrics on, access log off".to_owned(),
    ] {
        assert!(text.contains(&expected), "missing {expected:?} in:\n{text}");
    }
    // The callee's side of the same tunnel.
    let out = meshctl(&[
        "status",
        &format!("http://{}/", inventory.admin_addr().unwrap()),
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        text.contains("inbound:     listening on 127.0.0.1:"),
        "{text}"
    );
    assert!(
        text.contains("inbound 0 requests (0 5xx), 1 tunnels"),
        "{text}"
    );

    // An unhealthy endpoint: listed, and exit status 1.
    let out = meshctl(&["endpoints", &admin, "inventory"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("{HOST}  ports 9000/tcp  identities {INVENTORY}")
    );
    assert!(lines[1].starts_with("ENDPOINT"), "{text}");
    let first: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        first,
        [
            "127.0.0.1:9000",
            &server.local_addr().port().to_string(),
            "healthy",
            "ok",
            "1",
            "us-east1/b",
            "-"
        ]
    );
    let second: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(
        &second[..5],
        [
            "127.0.0.2:9000",
            &server.local_addr().port().to_string(),
            "unhealthy",
            "ok",
            "3"
        ]
    );
    assert!(
        text.contains("outlier detection: on, 0 ejections"),
        "{text}"
    );

    // Unknown service: exit 2, naming the known ones.
    let out = meshctl(&["endpoints", &admin, "nosuch"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.starts_with("meshctl: invalid SERVICE \"nosuch\""),
        "{err}"
    );
    assert!(err.contains(HOST), "{err}");

    // Nothing listening: exit 2 with advice.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let out = meshctl(&["status", &closed_addr]).await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("cannot connect"), "{err}");
    assert!(err.contains("admin"), "{err}");
    let out = meshctl(&["status", "not-an-address"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_eq!(server.shutdown().await, 0);
}
