//! Discovery backends count their own failures, and a `Mesh` reports them per backend as
//! `mesh_discovery_errors_total{source=...}` next to `mesh_discovery_updates_total` and
//! `mesh_discovery_healthy`: rejected edits of the discovery file, and lookups a DNS server
//! refuses.

use std::time::Duration;

use mesh_client::{
    discovery::{Discovery, FileDiscovery},
    mesh::Mesh,
};

const STEP: Duration = Duration::from_secs(20);
const ID: &str = "spiffe://cluster.local/ns/shop/sa/inventory";

fn doc(address: &str) -> String {
    format!(
        "services:\n  - host: inventory.shop\n    identities: [{ID}]\n    endpoints:\n      - address: {address}\n"
    )
}

/// The value of `name{source="<source>"}` in the mesh's metrics (0 when absent).
fn metric(mesh: &Mesh, name: &str, source: &str) -> f64 {
    let text = mesh.telemetry().encode_classic();
    let prefix = format!("{name}{{source=\"{source}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0.0, |v| v.parse().unwrap())
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    tokio::time::timeout(STEP, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

#[tokio::test]
async fn rejected_file_edits_are_counted_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.yaml");
    std::fs::write(&path, doc("10.0.0.1:80")).unwrap();
    let discovery = FileDiscovery::watch(&path, Duration::from_millis(20)).unwrap();
    assert_eq!(discovery.kind(), "file");
    assert_eq!(discovery.status().errors, 0);

    std::fs::write(&path, "services:\n  - hots: inventory.shop\n").unwrap();
    eventually("the bad edit", || discovery.status().errors == 1).await;
    // The same bad contents are not re-parsed or re-counted on later polls.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(discovery.status().errors, 1);
    std::fs::remove_file(&path).unwrap();
    eventually("the missing file", || discovery.status().errors == 2).await;

    std::fs::write(&path, doc("10.0.0.2:80")).unwrap();
    eventually("the fix", || discovery.status().last_error.is_none()).await;
    let status = discovery.status();
    assert_eq!((status.errors, status.updates), (2, 2));
    assert_eq!(discovery.current().version(), 2);
}

#[tokio::test]
async fn a_mesh_reports_errors_per_backend() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("services.yaml");
    std::fs::write(&file, doc("10.0.0.1:80")).unwrap();
    // A DNS server that refuses every query (RCODE 5), as a misconfigured or unauthorized
    // resolver does: lookups fail at once.
    let dns_socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dns = dns_socket.local_addr().unwrap();
    let refuser = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = dns_socket.recv_from(&mut buf).await {
            if n < 12 {
                continue;
            }
            // The query itself, turned into a response: QR set, RA clear, RCODE = REFUSED.
            buf[2] |= 0x80;
            buf[3] = 0x05;
            let _ = dns_socket.send_to(&buf[..n], from).await;
        }
    });
    let yaml = format!(
        r#"
identity: {{ spiffe_id: spiffe://cluster.local/ns/shop/sa/orders, dev_ca: {{ dir: {ca} }} }}
discovery:
  file: {file}
  dns:
    servers: ["{dns}"]
    services:
      - host: payments.shop.svc.cluster.local
        ports: [{{ port: 8080, protocol: http }}]
        identities: [spiffe://cluster.local/ns/shop/sa/payments]
        a: payments.test
        port: 8080
"#,
        ca = dir.path().join("ca").display(),
        file = file.display(),
    );
    let mesh = tokio::time::timeout(STEP, Mesh::from_yaml(&yaml))
        .await
        .expect("the mesh started in time")
        .unwrap();

    // Every backend has its own series.
    let text = mesh.telemetry().encode_classic();
    for source in ["static", "file", "dns", "merged"] {
        assert!(
            text.contains(&format!(
                "mesh_discovery_updates_total{{source=\"{source}\"}}"
            )),
            "{source} missing:\n{text}"
        );
    }
    // The DNS lookup failed: counted, and the backend is unhealthy.
    assert!(metric(&mesh, "mesh_discovery_errors_total", "dns") >= 1.0);
    assert_eq!(metric(&mesh, "mesh_discovery_healthy", "dns"), 0.0);
    assert_eq!(metric(&mesh, "mesh_discovery_errors_total", "file"), 0.0);
    assert_eq!(metric(&mesh, "mesh_discovery_healthy", "file"), 1.0);

    // A bad edit of the discovery file is counted against the file backend only.
    std::fs::write(
        &file,
        "services:\n  - host: inventory.shop\n    endpoints: [{ adress: 1 }]\n",
    )
    .unwrap();
    eventually("the file error in the metrics", || {
        metric(&mesh, "mesh_discovery_errors_total", "file") == 1.0
    })
    .await;
    assert_eq!(metric(&mesh, "mesh_discovery_healthy", "file"), 0.0);
    assert_eq!(metric(&mesh, "mesh_discovery_errors_total", "static"), 0.0);
    assert_eq!(metric(&mesh, "mesh_discovery_errors_total", "merged"), 0.0);
    // The last good version stays in force.
    assert!(
        mesh.discovery()
            .current()
            .service("inventory.shop")
            .is_some()
    );
    refuser.abort();
}
