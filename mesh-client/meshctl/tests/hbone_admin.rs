//! `meshctl hbone serve --admin ADDR`: readiness, metrics, `/config_dump`, `/logging` and
//! `meshctl status` against a running server, and the flag's bad input.

mod hbone_support;

use hbone_support::*;

#[tokio::test]
async fn admin_flag_serves_readiness_metrics_and_config_dump() {
    let pki = Pki::new().await;
    let mut server = Server::start_with(&pki, &["--echo"], &["--admin", "127.0.0.1:0"]).await;
    let line = server.next_stdout_line().await;
    let admin: SocketAddr = line
        .strip_prefix("admin endpoint on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("expected `admin endpoint on ADDR`, got {line:?}"));
    assert_eq!(admin.ip().to_string(), "127.0.0.1");

    let (status, body) = http_get(admin, "/healthz/ready").await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));

    // One echo tunnel, then the destination's TCP metrics show it.
    let out = pki
        .connect(server.addr, "127.0.0.1:8080", SERVER_ID, b"counted\n")
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(out.stdout, b"counted\n");

    let (status, metrics) = http_get(admin, "/metrics").await;
    assert_eq!(status, 200, "{metrics}");
    let opened = metrics
        .lines()
        .find(|l| l.starts_with("istio_tcp_connections_opened_total{"))
        .unwrap_or_else(|| panic!("no istio_tcp_connections_opened_total in\n{metrics}"));
    assert!(opened.contains("reporter=\"destination\""), "{opened}");
    assert!(
        opened.contains(&format!("source_principal=\"{CLIENT_ID}\"")),
        "{opened}"
    );
    assert!(
        opened.contains(&format!("destination_principal=\"{SERVER_ID}\"")),
        "{opened}"
    );
    assert!(opened.ends_with(" 1"), "{opened}");
    // The tunnel ends when the client has read the echo; its close is recorded by then or soon
    // after, so only its bytes are checked (the tunnel sent 8 of them back).
    let received = metrics
        .lines()
        .find(|l| l.starts_with("istio_tcp_received_bytes_total{"))
        .unwrap_or_else(|| panic!("no istio_tcp_received_bytes_total in\n{metrics}"));
    assert!(received.ends_with(" 8"), "{received}");
    assert!(
        metrics.contains(&format!(
            "mesh_certificate_expiry_timestamp_seconds{{spiffe_id=\"{SERVER_ID}\"}}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("mesh_tls_handshakes_total{direction=\"inbound\",result=\"success\""),
        "{metrics}"
    );
    let (status, same) = http_get(admin, "/stats/prometheus").await;
    assert_eq!(status, 200);
    assert!(
        same.contains("istio_tcp_connections_opened_total{"),
        "{same}"
    );

    let (status, dump) = http_get(admin, "/config_dump").await;
    assert_eq!(status, 200, "{dump}");
    assert!(
        dump.contains(&format!("\"spiffe_id\": \"{SERVER_ID}\"")),
        "{dump}"
    );
    assert!(
        dump.contains(&format!("\"listen\": \"{}\"", server.addr)),
        "{dump}"
    );
    assert!(dump.contains("\"mode\": \"echo\""), "{dump}");

    // `meshctl status` reads the same endpoint.
    let status = run(&strings(&["status", &admin.to_string()]), b"").await;
    assert_eq!(status.status.code(), Some(0), "{}", describe(&status));
    assert!(
        String::from_utf8_lossy(&status.stdout).contains(SERVER_ID),
        "{}",
        describe(&status)
    );

    let (status, level) = http_get(admin, "/logging").await;
    assert_eq!((status, level.as_str()), (200, "filter: info\n"));
}

#[tokio::test]
async fn admin_flag_needs_an_address() {
    let pki = Pki::new().await;
    let mut args = strings(&["hbone", "serve", "--listen", "127.0.0.1:0", "--echo"]);
    args.extend(pki.identity("server"));
    args.extend(strings(&["--admin", "localhost:15020"]));
    let out = run(&args, b"").await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(stderr(&out).contains("--admin"), "{}", describe(&out));
}
