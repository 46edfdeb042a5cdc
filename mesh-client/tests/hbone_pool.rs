//! Connection pooling, idle release and graceful drain.

mod support;

use std::time::Duration;

use mesh_client::hbone::{HboneClientConfig, TunnelError};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn fifty_sequential_tunnels_cost_one_handshake() {
    let mesh = Mesh::new();
    let server = mesh.forwarding_to(echo_server().await).await;
    let client = mesh.client();
    for i in 0..50 {
        let mut t = client.connect(&dest(&server, 8080)).await.unwrap();
        let msg = format!("#{i}");
        assert_eq!(round_trip(&mut t, msg.as_bytes()).await, msg.as_bytes());
    }
    assert_eq!(client.stats().connections_opened, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_fifty_concurrent_tunnels_use_at_most_three_connections() {
    let mesh = Mesh::new();
    let server = mesh.forwarding_to(echo_server().await).await;
    let client = mesh.client();
    let d = dest(&server, 8080);
    // Open all 250 before closing any, so they are truly concurrent.
    let mut opens = Vec::new();
    for _ in 0..250 {
        let (client, d) = (client.clone(), d.clone());
        opens.push(tokio::spawn(
            async move { client.connect(&d).await.unwrap() },
        ));
    }
    let mut tunnels = Vec::new();
    for o in opens {
        tunnels.push(tokio::time::timeout(STEP, o).await.unwrap().unwrap());
    }
    let stats = client.stats();
    assert_eq!(stats.streams_open, 250);
    assert!(stats.connections_opened <= 3, "{stats:?}");
    for (i, t) in tunnels.iter_mut().enumerate() {
        let msg = format!("{i}");
        t.write_all(msg.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; msg.len()];
        tokio::time::timeout(STEP, t.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(buf, msg.as_bytes());
    }
    drop(tunnels);
    assert_eq!(client.stats().streams_open, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_to_a_new_destination_dials_once() {
    let mesh = Mesh::new();
    let server = mesh.forwarding_to(echo_server().await).await;
    let client = mesh.client();
    let d = dest(&server, 8080);
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (client, d) = (client.clone(), d.clone());
        tasks.push(tokio::spawn(
            async move { client.connect(&d).await.map(drop) },
        ));
    }
    for t in tasks {
        tokio::time::timeout(STEP, t)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
    assert_eq!(client.stats().connections_opened, 1);
}

#[tokio::test]
async fn a_burst_to_a_dead_destination_shares_the_failure() {
    let mesh = Mesh::new();
    // Accepts TCP but never answers TLS: every dial waits for the handshake timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let creds = mesh
        .ca
        .credentials(&id(CLIENT_ID), Duration::from_secs(3600))
        .unwrap();
    let mut options = mesh_tls::TlsOptions::default();
    options.handshake_timeout = Duration::from_millis(300);
    let client = mesh_client::hbone::HboneClient::new(
        mesh_tls::MeshTls::new(creds, options).unwrap(),
        HboneClientConfig::default(),
    );
    let d = mesh_client::hbone::Destination {
        hbone_addr: addr,
        target_port: 80,
        expected: mesh_tls::ExpectedIdentities::one(id(SERVER_ID)),
    };
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (client, d) = (client.clone(), d.clone());
        tasks.push(tokio::spawn(
            async move { client.connect(&d).await.map(drop) },
        ));
    }
    for t in tasks {
        let err = tokio::time::timeout(STEP, t)
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(err, TunnelError::Tls { .. } | TunnelError::Connect { .. }),
            "{err}"
        );
    }
    // Ten waiters did not queue ten sequential handshake timeouts.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(client.stats().connections_opened, 0);
}

#[tokio::test]
async fn idle_connections_are_released_and_replaced() {
    let mesh = Mesh::new();
    let server = mesh.forwarding_to(echo_server().await).await;
    let mut config = HboneClientConfig::default();
    config.idle_timeout = Duration::from_millis(200);
    let client = mesh.client_with(config);
    let mut t = client.connect(&dest(&server, 8080)).await.unwrap();
    assert_eq!(round_trip(&mut t, b"x").await, b"x");
    drop(t);
    tokio::time::timeout(STEP, async {
        while client.stats().connections_open > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("idle connection was not released");
    // The server notices the close too.
    tokio::time::timeout(STEP, async {
        while server.stats().connections > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("server kept the released connection");
    let mut t = client.connect(&dest(&server, 8080)).await.unwrap();
    assert_eq!(round_trip(&mut t, b"y").await, b"y");
    assert_eq!(client.stats().connections_opened, 2);
}

#[tokio::test]
async fn closed_client_refuses_new_tunnels() {
    let mesh = Mesh::new();
    let server = mesh.forwarding_to(echo_server().await).await;
    let client = mesh.client();
    client.connect(&dest(&server, 8080)).await.unwrap();
    client.close();
    let err = client.connect(&dest(&server, 8080)).await.unwrap_err();
    assert!(matches!(err, TunnelError::PoolClosed), "{err}");
}

#[tokio::test]
async fn drain_lets_open_tunnels_finish_and_refuses_new_ones() {
    let mesh = Mesh::new();
    let server = mesh.forwarding_to(echo_server().await).await;
    let addr = server.local_addr();
    let client = mesh.client();
    let d = dest(&server, 8080);
    let mut open = client.connect(&d).await.unwrap();
    let drained = tokio::spawn(server.shutdown(Duration::from_secs(10)));
    // The open tunnel keeps working during the drain.
    open.write_all(b"during drain").await.unwrap();
    let mut buf = [0u8; 12];
    tokio::time::timeout(STEP, open.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"during drain");
    // New tunnels are refused: GOAWAY on the pooled connection, and nobody listens any more.
    let fresh = mesh.client();
    let err = tokio::time::timeout(STEP, fresh.connect(&d))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    // Finishing the tunnel completes the drain with nothing cut off.
    open.shutdown().await.unwrap();
    let mut rest = Vec::new();
    open.read_to_end(&mut rest).await.unwrap();
    drop(open);
    let cut = tokio::time::timeout(STEP, drained).await.unwrap().unwrap();
    assert_eq!(cut, 0);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener still open"
    );
}

#[tokio::test]
async fn drain_deadline_cuts_remaining_tunnels() {
    let mesh = Mesh::new();
    let server = mesh.forwarding_to(echo_server().await).await;
    let client = mesh.client();
    let mut open = client.connect(&dest(&server, 8080)).await.unwrap();
    let cut = tokio::time::timeout(STEP, server.shutdown(Duration::from_millis(200)))
        .await
        .unwrap();
    assert_eq!(cut, 1);
    let mut buf = [0u8; 1];
    let result = tokio::time::timeout(STEP, open.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(result, Ok(0) | Err(_)), "{result:?}");
}

/// A TCP proxy that can stop forwarding (without closing), like a peer whose host vanished.
async fn freezable_proxy(
    upstream: std::net::SocketAddr,
) -> (std::net::SocketAddr, tokio_util::sync::CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let freeze = tokio_util::sync::CancellationToken::new();
    let f = freeze.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let f = f.clone();
            tokio::spawn(async move {
                let mut outbound = tokio::net::TcpStream::connect(upstream).await.unwrap();
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    () = f.cancelled() => {
                        // Hold both sockets open but move no more bytes.
                        std::future::pending::<()>().await;
                    }
                }
            });
        }
    });
    (addr, freeze)
}

#[tokio::test]
async fn keepalive_detects_a_vanished_peer() {
    let mesh = Mesh::new();
    let server = mesh.forwarding_to(echo_server().await).await;
    let (proxy, freeze) = freezable_proxy(server.local_addr()).await;
    let mut config = HboneClientConfig::default();
    config.keepalive_interval = Duration::from_millis(100);
    config.keepalive_timeout = Duration::from_millis(300);
    let client = mesh.client_with(config);
    let d = mesh_client::hbone::Destination {
        hbone_addr: proxy,
        ..dest(&server, 8080)
    };
    // The authority must be the dialed IP: the proxy is on 127.0.0.1 like the server.
    let mut t = client.connect(&d).await.unwrap();
    assert_eq!(round_trip(&mut t, b"alive").await, b"alive");
    drop(t);
    assert_eq!(client.stats().connections_open, 1);
    freeze.cancel();
    tokio::time::timeout(STEP, async {
        while client.stats().connections_open > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("keepalive did not close the dead connection");
}
