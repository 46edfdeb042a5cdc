//! Runs `meshctl hbone serve` and `meshctl hbone connect` as processes, with certificates made by
//! `meshctl ca`, over loopback: echo (small, empty and 1 MiB, which needs half-close to end),
//! forwarding to a TCP target, refusals (wrong identity, unreachable target, bad authority),
//! rotation of the server's SVID, and the graceful drain on SIGTERM.
//!
//! Every wait is bounded by [`STEP`], and nothing sleeps to synchronize: the server is ready when
//! it prints its `listening on` line, and log lines are awaited as they arrive.

mod hbone_support;

use hbone_support::*;
use tokio::net::TcpListener;

#[tokio::test]
async fn echo_returns_exactly_what_was_sent() {
    let pki = Pki::new().await;
    let server = Server::start(&pki, &["--echo"]).await;

    let out = pki
        .connect(
            server.addr,
            "127.0.0.1:8080",
            SERVER_ID,
            b"hello through hbone\n",
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(out.stdout, b"hello through hbone\n", "{}", describe(&out));
    assert!(out.stderr.is_empty(), "{}", describe(&out));

    // Nothing to send: stdin's immediate end half-closes the tunnel and the echo ends it.
    let out = pki
        .connect(server.addr, "127.0.0.1:8080", SERVER_ID, b"")
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(out.stdout.is_empty(), "{}", describe(&out));
}

#[tokio::test]
async fn echo_carries_one_mebibyte_and_ends_on_half_close() {
    let pki = Pki::new().await;
    let server = Server::start(&pki, &["--echo"]).await;
    let data = payload();
    let out = pki
        .connect(server.addr, "127.0.0.1:8080", SERVER_ID, &data)
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(out.stdout.len(), data.len(), "{}", describe(&out));
    assert!(
        out.stdout == data,
        "the echoed bytes differ from the sent ones"
    );
}

#[tokio::test]
async fn wrong_expected_identity_is_refused_with_both_identities_named() {
    let pki = Pki::new().await;
    let server = Server::start(&pki, &["--echo"]).await;
    let wrong = "spiffe://example.org/ns/shop/sa/payments";
    let out = pki
        .connect(server.addr, "127.0.0.1:8080", wrong, b"secret")
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(out.stdout.is_empty(), "{}", describe(&out));
    let err = stderr(&out);
    assert!(err.starts_with("meshctl: "), "{}", describe(&out));
    assert_eq!(err.lines().count(), 1, "{}", describe(&out));
    assert!(
        err.contains(wrong) && err.contains(SERVER_ID),
        "{}",
        describe(&out)
    );
}

#[tokio::test]
async fn forward_reaches_a_tcp_target_and_logs_the_peer() {
    // The target reads to end-of-file (which needs the client's half-close to travel through
    // both hops), then answers and closes.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let target_task = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        tcp.read_to_end(&mut got).await.unwrap();
        let answer = format!("target read {:?}", String::from_utf8_lossy(&got));
        tcp.write_all(answer.as_bytes()).await.unwrap();
        tcp.shutdown().await.unwrap();
    });

    let pki = Pki::new().await;
    let mut server = Server::start(&pki, &["--forward", &target.to_string()]).await;
    let out = pki
        .connect(server.addr, "127.0.0.1:8080", SERVER_ID, b"ping")
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(out.stdout, b"target read \"ping\"", "{}", describe(&out));
    tokio::time::timeout(STEP, target_task)
        .await
        .expect("target finished")
        .expect("target task");

    let line = server
        .wait_for_log(&format!("tunnel from {CLIENT_ID}"))
        .await;
    assert!(line.contains("target=127.0.0.1:8080"), "{line}");
}

#[tokio::test]
async fn unreachable_forward_target_is_a_503() {
    // A port that was just free: nothing listens there.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let pki = Pki::new().await;
    let server = Server::start(&pki, &["--forward", &closed.to_string()]).await;
    let out = pki
        .connect(server.addr, "127.0.0.1:8080", SERVER_ID, b"ping")
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("meshctl: ") && err.contains("HTTP 503"),
        "{}",
        describe(&out)
    );
}

#[tokio::test]
async fn authority_ip_other_than_the_dialed_ip_is_bad_input() {
    let pki = Pki::new().await;
    // Rejected before any dialing, so no server is needed.
    let to: SocketAddr = "127.0.0.1:15008".parse().unwrap();
    for authority in ["127.0.0.2:8080", "inventory.shop:8080"] {
        let out = pki.connect(to, authority, SERVER_ID, b"").await;
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        let err = stderr(&out);
        assert!(err.starts_with("meshctl: invalid --authority"), "{err}");
        assert!(
            err.contains("HBONE requires the CONNECT authority's IP to be the IP dialed with --to"),
            "{err}"
        );
        assert!(err.contains("use --authority 127.0.0.1:8080"), "{err}");
    }
}

#[tokio::test]
async fn bad_arguments_and_files_exit_2() {
    let pki = Pki::new().await;
    let to: SocketAddr = "127.0.0.1:15008".parse().unwrap();

    let out = pki
        .connect(to, "127.0.0.1:8080", "not-a-spiffe-id", b"")
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).starts_with("meshctl: invalid --expect-id"),
        "{}",
        describe(&out)
    );

    // The client's certificate with the server's key.
    let mut args = pki.connect_args(to, "127.0.0.1:8080", SERVER_ID);
    let key = args.iter().position(|a| a == "--key").unwrap() + 1;
    args[key] = args[key].replace("client", "server");
    let out = run(&args, b"").await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("cannot load this workload's identity"),
        "{}",
        describe(&out)
    );

    // serve needs exactly one of --echo and --forward.
    for delivery in [vec![], vec!["--echo", "--forward", "127.0.0.1:1"]] {
        let mut args = strings(&["hbone", "serve", "--listen", "127.0.0.1:0"]);
        args.extend(pki.identity("server"));
        args.extend(strings(&delivery));
        let out = run(&args, b"").await;
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    }
}

#[tokio::test]
async fn a_rotated_server_svid_is_picked_up_without_a_restart() {
    let pki = Pki::new().await;
    let mut server = Server::start(&pki, &["--echo"]).await;
    // `ca issue` replaces each file atomically; the server polls them every second.
    pki.issue("server", SERVER_ID).await;
    let line = server.wait_for_log("reloaded the SVID").await;
    assert!(line.contains(SERVER_ID), "{line}");
    let out = pki
        .connect(server.addr, "127.0.0.1:8080", SERVER_ID, b"after rotation")
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(out.stdout, b"after rotation", "{}", describe(&out));
}

/// SIGTERM drains: the open tunnel keeps working until its client finishes, then the server
/// exits 0 on its own.
#[cfg(unix)]
#[tokio::test]
async fn sigterm_lets_open_tunnels_finish_then_exits_0() {
    let pki = Pki::new().await;
    let mut server = Server::start(&pki, &["--echo"]).await;

    let mut client = meshctl()
        .args(pki.connect_args(server.addr, "127.0.0.1:8080", SERVER_ID))
        .stdin(Stdio::piped())
        .spawn()
        .expect("start meshctl connect");
    let mut stdin = client.stdin.take().expect("stdin is piped");
    let mut stdout = client.stdout.take().expect("stdout is piped");
    // One byte there and back: the tunnel is open.
    stdin.write_all(b"a").await.unwrap();
    let mut first = [0u8; 1];
    tokio::time::timeout(STEP, stdout.read_exact(&mut first))
        .await
        .expect("echo of the first byte")
        .expect("read the first byte");
    assert_eq!(&first, b"a");

    let pid = server.child.id().expect("server is running").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(kill.success());
    server.wait_for_log("SIGTERM received: draining").await;

    // Still served while draining.
    stdin.write_all(b"bc").await.unwrap();
    drop(stdin);
    let mut rest = Vec::new();
    tokio::time::timeout(STEP, stdout.read_to_end(&mut rest))
        .await
        .expect("echo of the rest")
        .expect("read the rest");
    assert_eq!(rest, b"bc");
    let client_status = tokio::time::timeout(STEP, client.wait())
        .await
        .expect("client exits")
        .expect("wait for client");
    assert!(client_status.success(), "{client_status:?}");

    let status = server.wait().await;
    let logs = server.drain_logs().await;
    assert_eq!(status.code(), Some(0), "{logs}");
    assert!(logs.contains(&format!("tunnel from {CLIENT_ID}")), "{logs}");
    assert!(logs.contains("stopped; every tunnel finished"), "{logs}");
}
