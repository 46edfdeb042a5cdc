//! Runs the `quickstart` launcher and checks it shows what the README promises: the server
//! listening as inventory, the client's GET answered 200 with a body naming the caller's SPIFFE
//! ID, both processes stopping cleanly, and the scratch directory removed. Then runs the modes
//! alone, as the README shows them.

use std::{path::Path, process::Stdio, time::Duration};

use tokio::process::Command;

/// Generous bound for the whole run (it takes well under a second), so a hang fails the test
/// instead of stalling the suite.
const DEADLINE: Duration = Duration::from_secs(90);
const CLIENT_ID: &str = "spiffe://quickstart.mesh.local/ns/shop/sa/orders";
const SERVER_ID: &str = "spiffe://quickstart.mesh.local/ns/shop/sa/inventory";

#[tokio::test]
async fn quickstart_serves_http_through_hbone_naming_the_caller() {
    let child = Command::new(env!("CARGO_BIN_EXE_quickstart"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start quickstart");
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("quickstart did not finish within {DEADLINE:?}"))
        .expect("wait for quickstart");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!(
        "status: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(out.status.success(), "{all}");

    let line = |prefix: &str| {
        stdout
            .lines()
            .map(str::trim_start)
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?}\n{all}"))
            .to_owned()
    };
    let listening = line("[server] listening on 127.0.0.1:");
    assert!(listening.ends_with(&format!(" as {SERVER_ID}")), "{all}");
    assert!(
        line("[client] tunnel open; mTLS verified the server as").ends_with(SERVER_ID),
        "{all}"
    );
    assert_eq!(
        line("[client] HTTP/1.1 "),
        "[client] HTTP/1.1 200 OK",
        "{all}"
    );
    assert!(
        line("[client] {").contains(&format!(r#""caller":"{CLIENT_ID}""#)),
        "{all}"
    );
    assert_eq!(
        line("[server] GET /stock from"),
        format!("[server] GET /stock from {CLIENT_ID}: 200 OK"),
        "{all}"
    );
    assert!(
        line("[server] stopped").contains("0 tunnels cut off"),
        "{all}"
    );
    assert!(line("ok:").contains("orders reached inventory"), "{all}");
    assert!(stderr.is_empty(), "{all}");

    // The SVIDs lived in a temporary directory that is gone afterwards.
    let first = line("1. a development CA");
    let dir = first
        .split(" into ")
        .nth(1)
        .and_then(|rest| rest.strip_suffix(':'))
        .unwrap_or_else(|| panic!("no directory in {first:?}"));
    assert!(!Path::new(dir).exists(), "{dir} was left behind\n{all}");
}

/// The modes on their own, as the README shows them: `quickstart server` answers a client that
/// half-closes right after its request (as netcat or `meshctl hbone connect` do), and
/// `quickstart client` refuses a server that is not the identity it expects.
#[tokio::test]
async fn modes_run_alone_serve_half_closing_clients_and_refuse_the_wrong_server() {
    use mesh_client::hbone::{Destination, HboneClient, HboneClientConfig};
    use mesh_tls::{DevCa, ExpectedIdentities, MeshTls, TlsOptions, write_svid};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    let tmp = tempfile::tempdir().unwrap();
    let ca = DevCa::generate("quickstart.mesh.local".parse().unwrap()).unwrap();
    for (name, id) in [("inventory", SERVER_ID), ("orders", CLIENT_ID)] {
        let svid = ca
            .issue(&id.parse().unwrap(), Duration::from_secs(600))
            .unwrap();
        write_svid(&tmp.path().join(name), &svid, &ca.bundle()).unwrap();
    }
    let identity = |name: &str| {
        let dir = tmp.path().join(name);
        [
            "--cert",
            "svid.pem",
            "--key",
            "svid.key",
            "--bundle",
            "bundle.pem",
        ]
        .chunks(2)
        .flat_map(|pair| [pair[0].to_owned(), dir.join(pair[1]).display().to_string()])
        .collect::<Vec<_>>()
    };

    let mut server = Command::new(env!("CARGO_BIN_EXE_quickstart"))
        .arg("server")
        .args(identity("inventory"))
        .args(["--admin", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start quickstart server");
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("listening line in time")
        .unwrap()
        .expect("a listening line");
    let addr: std::net::SocketAddr = first
        .strip_prefix("listening on ")
        .and_then(|rest| rest.split_once(" as "))
        .and_then(|(addr, _)| addr.parse().ok())
        .unwrap_or_else(|| panic!("not a listening line: {first:?}"));
    let second = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("admin line in time")
        .unwrap()
        .expect("an admin line");
    let admin: std::net::SocketAddr = second
        .strip_prefix("admin endpoint on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("not an admin line: {second:?}"));
    let (status, body) = admin_get(admin, "/healthz/ready").await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));

    // A raw HTTP/1.1 request, then END_STREAM at once; the answer must still come.
    let creds = ca
        .credentials(&CLIENT_ID.parse().unwrap(), Duration::from_secs(600))
        .unwrap();
    let client = HboneClient::new(
        MeshTls::new(creds, TlsOptions::default()).unwrap(),
        HboneClientConfig::default(),
    );
    let dest = Destination {
        hbone_addr: addr,
        target_port: 8080,
        expected: ExpectedIdentities::one(SERVER_ID.parse().unwrap()),
    };
    let answer = tokio::time::timeout(DEADLINE, async {
        let mut tunnel = client.connect(&dest).await.unwrap();
        tunnel
            .write_all(b"GET /stock HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
            .await
            .unwrap();
        tunnel.shutdown().await.unwrap();
        let mut answer = Vec::new();
        tunnel.read_to_end(&mut answer).await.unwrap();
        String::from_utf8(answer).unwrap()
    })
    .await
    .expect("answer in time");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.ends_with(&format!(
            r#"{{"service":"inventory","caller":"{CLIENT_ID}","item":"widgets","in_stock":42}}"#
        )),
        "{answer}"
    );

    // The admin endpoint counted the tunnel as its destination, with both identities.
    let (status, metrics) = admin_get(admin, "/metrics").await;
    assert_eq!(status, 200, "{metrics}");
    let opened = metrics
        .lines()
        .find(|l| l.starts_with("istio_tcp_connections_opened_total{"))
        .unwrap_or_else(|| panic!("no tunnel counted in\n{metrics}"));
    for label in [
        "reporter=\"destination\"".to_owned(),
        format!("source_principal=\"{CLIENT_ID}\""),
        format!("destination_principal=\"{SERVER_ID}\""),
    ] {
        assert!(opened.contains(&label), "{label} missing in {opened}");
    }
    assert!(opened.ends_with(" 1"), "{opened}");
    let (status, dump) = admin_get(admin, "/config_dump").await;
    assert_eq!(status, 200, "{dump}");
    assert!(dump.contains(&format!("\"listen\": \"{addr}\"")), "{dump}");

    let wrong = "spiffe://quickstart.mesh.local/ns/shop/sa/payments";
    let refused = Command::new(env!("CARGO_BIN_EXE_quickstart"))
        .arg("client")
        .args(identity("orders"))
        .args(["--server", &addr.to_string(), "--expect-id", wrong])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let refused = tokio::time::timeout(DEADLINE, refused)
        .await
        .expect("client finished in time")
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(wrong) && stderr.contains(SERVER_ID),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&refused.stdout).contains("HTTP/1.1"),
        "no request may be sent to the wrong server"
    );

    // Closing stdin stops the server cleanly.
    drop(server.stdin.take());
    let status = tokio::time::timeout(DEADLINE, server.wait())
        .await
        .expect("server stopped in time")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// `GET path` from an admin endpoint over HTTP/1.1: the status code and the body.
async fn admin_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::time::timeout(DEADLINE, async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tcp.read_to_string(&mut response).await.unwrap();
        let (head, body) = response
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
        (status, body.to_owned())
    })
    .await
    .unwrap_or_else(|_| panic!("GET {path} took longer than {DEADLINE:?}"))
}
