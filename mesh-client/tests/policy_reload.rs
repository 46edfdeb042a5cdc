//! Live edits of a workload's policy files: an edit applies within a few seconds without a
//! restart and without dropping connections; a broken edit is refused with the file, field and
//! reason, and the policies in force before it stay in force. Real workloads over mTLS HBONE.

mod support;

use std::{convert::Infallible, path::Path, time::Duration};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use mesh_client::{
    http::HttpService,
    mesh::{InboundApp, InboundServer, Mesh},
};
use support::STEP;

const LEDGER: &str = "spiffe://cluster.local/ns/bank/sa/ledger";
const TELLER: &str = "spiffe://cluster.local/ns/bank/sa/teller";
const HOST: &str = "ledger.bank.svc.cluster.local";

/// An ALLOW policy letting `principal` in (and no one else).
fn allow(principal: &str) -> String {
    format!(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{ name: ledger-callers, namespace: bank }}
spec:
  action: ALLOW
  rules:
  - from: [{{ source: {{ principals: ["{principal}"] }} }}]
"#
    )
}

/// Replaces `path`'s content at once (write, then rename), as config management tools and
/// Kubernetes ConfigMap updates do, so the watcher never reads half a file.
fn replace(path: &Path, text: &str) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, text).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

/// The ledger: HTTP in-process; port 9000 forwarded to `echo` when given.
async fn ledger(dir: &Path, policy: &Path) -> (Mesh, InboundServer) {
    ledger_forwarding(dir, policy, None).await
}

async fn ledger_forwarding(
    dir: &Path,
    policy: &Path,
    echo: Option<std::net::SocketAddr>,
) -> (Mesh, InboundServer) {
    let forward = echo.map_or_else(String::new, |e| format!(", forward: {{ 9000: \"{e}\" }}"));
    let yaml = format!(
        r#"
workload: {{ name: ledger, namespace: bank }}
identity: {{ spiffe_id: {LEDGER}, dev_ca: {{ dir: {ca} }} }}
inbound: {{ listen: "127.0.0.1:0"{forward} }}
policies: [{policy}]
"#,
        ca = dir.join("ca").display(),
        policy = policy.display(),
    );
    let mesh = Mesh::from_yaml(&yaml).await.unwrap();
    let app = HttpService::new(tower::service_fn(|_request: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"balance"))))
    }));
    let server = mesh.serve(InboundApp::Http(app)).await.unwrap();
    (mesh, server)
}

async fn teller(dir: &Path, server: &InboundServer) -> Mesh {
    let yaml = format!(
        r#"
identity: {{ spiffe_id: {TELLER}, dev_ca: {{ dir: {ca} }} }}
services:
  - host: {HOST}
    ports: [{{ port: 8080, protocol: http }}, {{ port: 9000 }}]
    identities: [{LEDGER}]
    endpoints: [{{ address: "127.0.0.1:8080", hbone_port: {port} }}]
"#,
        ca = dir.join("ca").display(),
        port = server.local_addr().port(),
    );
    Mesh::from_yaml(&yaml).await.unwrap()
}

async fn status(mesh: &Mesh) -> StatusCode {
    let request = Request::get(format!("http://{HOST}:8080/"))
        .body(Bytes::new())
        .unwrap();
    let response = tokio::time::timeout(STEP, mesh.http_client().request(request))
        .await
        .expect("request timed out")
        .expect("request failed");
    let status = response.status();
    response.into_body().collect().await.unwrap();
    status
}

/// Waits (bounded) until requests get `wanted`: the watcher checks the files every second.
async fn wait_for(mesh: &Mesh, wanted: StatusCode) {
    tokio::time::timeout(STEP, async {
        while status(mesh).await != wanted {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("requests never got {wanted}"));
}

#[tokio::test]
async fn policy_edits_apply_live_and_broken_edits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, allow("cluster.local/ns/bank/sa/auditor")).unwrap();
    let (server_mesh, server) = ledger(dir.path(), &policy).await;
    let client = teller(dir.path(), &server).await;

    // Only the auditor is allowed: the teller gets 403.
    assert_eq!(status(&client).await, StatusCode::FORBIDDEN);
    // The teller is added: allowed, with no restart, over the same connection.
    replace(&policy, &allow("cluster.local/ns/bank/sa/teller"));
    wait_for(&client, StatusCode::OK).await;
    assert_eq!(server_mesh.policy_status().reloads, 1);
    assert_eq!(client.hbone().stats().connections_opened, 1);

    // A broken edit (an unknown field) is refused, naming file and field...
    replace(
        &policy,
        &allow("cluster.local/ns/bank/sa/teller").replace("action: ALLOW", "acton: ALLOW"),
    );
    tokio::time::timeout(STEP, async {
        while server_mesh.policy_status().rejected == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the broken edit was never noticed");
    let refused = server_mesh.policy_status();
    let error = refused.last_error.expect("the reason is kept");
    assert!(error.contains("policy.yaml"), "{error}");
    assert!(error.contains("acton"), "{error}");
    assert_eq!(refused.reloads, 1);
    // ...and the policy in force before it stays in force.
    assert_eq!(status(&client).await, StatusCode::OK);

    // A good edit after it applies and clears the error: the teller is out again.
    replace(&policy, &allow("cluster.local/ns/bank/sa/auditor"));
    wait_for(&client, StatusCode::FORBIDDEN).await;
    let status_now = server_mesh.policy_status();
    assert_eq!(status_now.reloads, 2);
    assert_eq!(status_now.last_error, None);
}

/// Sends `data` through the echo tunnel and reads it back, leaving the tunnel open.
async fn echo_once<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    data: &[u8],
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::time::timeout(STEP, async {
        stream.write_all(data).await.unwrap();
        let mut back = vec![0; data.len()];
        stream.read_exact(&mut back).await.unwrap();
        assert_eq!(back, data);
    })
    .await
    .expect("echo timed out");
}

#[tokio::test]
async fn a_policy_added_later_applies_to_raw_tunnels_too() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    // No policy at first: everything is allowed, forwarded tunnels included.
    std::fs::write(&policy, "").unwrap();
    let echo = support::echo_server().await;
    let (server_mesh, server) = ledger_forwarding(dir.path(), &policy, Some(echo)).await;
    let client = teller(dir.path(), &server).await;
    let mut tunnel = tokio::time::timeout(STEP, client.connect(&format!("{HOST}:9000")))
        .await
        .unwrap()
        .expect("tunnel allowed while no policy applies");
    echo_once(&mut tunnel, b"ping").await;

    // A policy allowing only the auditor arrives: new tunnels from the teller are refused.
    replace(&policy, &allow("cluster.local/ns/bank/sa/auditor"));
    tokio::time::timeout(STEP, async {
        while server_mesh.policy_status().reloads == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the edit was never applied");
    let error = tokio::time::timeout(STEP, client.connect(&format!("{HOST}:9000")))
        .await
        .unwrap()
        .expect_err("the new policy refuses the teller")
        .to_string();
    assert!(error.contains("401"), "{error}");
    // The tunnel opened before the edit is not cut.
    echo_once(&mut tunnel, b"pong").await;
    assert_eq!(support::round_trip(&mut tunnel, b"bye").await, b"bye");
}
