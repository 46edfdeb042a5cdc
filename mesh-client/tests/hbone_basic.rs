//! HBONE over loopback: echo, large transfers, half-close, concurrency, handler delivery and the
//! CONNECT headers a ztunnel peer expects.

mod support;

use std::{sync::Arc, time::Duration};

use mesh_client::hbone::{Delivery, InboundTunnel};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn echo_through_a_tunnel() {
    let mesh = Mesh::new();
    let target = echo_server().await;
    let server = mesh.forwarding_to(target).await;
    let client = mesh.client();
    let mut tunnel = tokio::time::timeout(STEP, client.connect(&dest(&server, 8080)))
        .await
        .unwrap()
        .unwrap();
    let out = round_trip(&mut tunnel, b"hello through hbone").await;
    assert_eq!(out, b"hello through hbone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_transfer_keeps_every_byte() {
    let mesh = Mesh::new();
    let target = echo_server().await;
    let server = mesh.forwarding_to(target).await;
    let client = mesh.client();
    let mut tunnel = client.connect(&dest(&server, 8080)).await.unwrap();
    let data: Vec<u8> = (0..64 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let out = tokio::time::timeout(Duration::from_secs(120), round_trip(&mut tunnel, &data))
        .await
        .unwrap();
    assert_eq!(out.len(), data.len());
    assert_eq!(checksum(&out), checksum(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_tunnels() {
    let mesh = Mesh::new();
    let target = echo_server().await;
    let server = mesh.forwarding_to(target).await;
    let client = mesh.client();
    let d = dest(&server, 8080);
    let mut tasks = Vec::new();
    for i in 0..500u32 {
        let (client, d) = (client.clone(), d.clone());
        tasks.push(tokio::spawn(async move {
            let mut tunnel = client.connect(&d).await.unwrap();
            let msg = format!("tunnel {i}");
            let out = round_trip(&mut tunnel, msg.as_bytes()).await;
            assert_eq!(out, msg.as_bytes());
        }));
    }
    for t in tasks {
        tokio::time::timeout(STEP, t).await.unwrap().unwrap();
    }
    // 500 tunnels at up to 100 streams per connection.
    assert!(
        client.stats().connections_opened <= 5,
        "{:?}",
        client.stats()
    );
}

#[tokio::test]
async fn half_close_works_in_both_directions() {
    let mesh = Mesh::new();
    // A target that reads to EOF, then answers, then closes: needs client->server half-close.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        tcp.read_to_end(&mut got).await.unwrap();
        tcp.write_all(format!("read {} bytes", got.len()).as_bytes())
            .await
            .unwrap();
        tcp.shutdown().await.unwrap();
    });
    let server = mesh.forwarding_to(target).await;
    let client = mesh.client();
    let mut tunnel = client.connect(&dest(&server, 8080)).await.unwrap();
    tunnel.write_all(b"0123456789").await.unwrap();
    tunnel.shutdown().await.unwrap(); // FIN towards the target...
    let mut answer = String::new();
    // ...and the target's answer still arrives, followed by its FIN (EOF here).
    tokio::time::timeout(STEP, tunnel.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer, "read 10 bytes");

    // The other direction: the target closes its side first; we can still send.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        tcp.write_all(b"bye").await.unwrap();
        tcp.shutdown().await.unwrap(); // FIN from the target
        let mut got = Vec::new();
        tcp.read_to_end(&mut got).await.unwrap();
        tx.send(got).unwrap();
    });
    let server = mesh.forwarding_to(target).await;
    let mut tunnel = client.connect(&dest(&server, 8080)).await.unwrap();
    let mut first = Vec::new();
    tokio::time::timeout(STEP, tunnel.read_to_end(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, b"bye");
    tunnel.write_all(b"still here").await.unwrap();
    tunnel.shutdown().await.unwrap();
    let got = tokio::time::timeout(STEP, rx).await.unwrap().unwrap();
    assert_eq!(got, b"still here");
}

#[tokio::test]
async fn handler_delivery_sees_peer_identity_and_ztunnel_headers() {
    let mesh = Mesh::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handler = Arc::new(move |tunnel: InboundTunnel| {
        let tx = tx.clone();
        tokio::spawn(async move {
            let InboundTunnel {
                peer,
                target,
                headers,
                mut stream,
                ..
            } = tunnel;
            stream.write_all(b"welcome").await.unwrap();
            stream.shutdown().await.unwrap();
            tx.send((peer, target, headers)).unwrap();
        });
    });
    let server = mesh.server(Delivery::Handler(handler)).await;
    let client = mesh.client();
    let mut tunnel = client.connect(&dest(&server, 9090)).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(STEP, tunnel.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"welcome");
    let (peer, target, headers) = tokio::time::timeout(STEP, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(peer, id(CLIENT_ID));
    assert_eq!(
        target,
        std::net::SocketAddr::new(server.local_addr().ip(), 9090)
    );
    let forwarded = headers["forwarded"].to_str().unwrap();
    assert!(forwarded.starts_with("for=\"127.0.0.1:"), "{forwarded}");
    let traceparent = headers["traceparent"].to_str().unwrap();
    assert!(
        traceparent.starts_with("00-") && traceparent.len() == 55,
        "{traceparent}"
    );
    assert_eq!(headers["baggage"], "k8s.namespace.name=shop");
}

#[tokio::test]
async fn a_tunnel_reader_that_never_reads_does_not_block_others() {
    let mesh = Mesh::new();
    // The handler floods each tunnel with 32 MiB.
    let handler = Arc::new(|tunnel: InboundTunnel| {
        tokio::spawn(async move {
            let mut stream = tunnel.stream;
            let chunk = vec![7u8; 1 << 20];
            for _ in 0..32 {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            let _ = stream.shutdown().await;
        });
    });
    let server = mesh.server(Delivery::Handler(handler)).await;
    let client = mesh.client();
    let d = dest(&server, 9090);
    let _stalled = client.connect(&d).await.unwrap(); // never read
    // A second tunnel on the same connection still flows completely.
    let mut reader = client.connect(&d).await.unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    tokio::time::timeout(STEP, async {
        loop {
            let n = reader.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            total += n;
        }
    })
    .await
    .unwrap();
    assert_eq!(total, 32 << 20);
    assert_eq!(client.stats().connections_opened, 1);
}

#[tokio::test]
async fn resets_are_mapped_in_both_directions() {
    let mesh = Mesh::new();
    let client = mesh.client();

    // Client RST_STREAM -> TCP RST at the target.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 16];
        let first = tcp.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..first], b"hi");
        tcp.write_all(b"ack").await.unwrap();
        tx.send(tcp.read(&mut buf).await.map_err(|e| e.kind()))
            .unwrap();
    });
    let server = mesh.forwarding_to(target).await;
    let mut tunnel = client.connect(&dest(&server, 8080)).await.unwrap();
    tunnel.write_all(b"hi").await.unwrap();
    let mut ack = [0u8; 3];
    tunnel.read_exact(&mut ack).await.unwrap();
    tunnel.reset();
    let seen = tokio::time::timeout(STEP, rx).await.unwrap().unwrap();
    assert_eq!(
        seen,
        Err(std::io::ErrorKind::ConnectionReset),
        "target saw {seen:?}"
    );

    // TCP RST from the target -> RST_STREAM -> ConnectionReset for the client.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tcp = tcp;
        let mut buf = [0u8; 2];
        tcp.read_exact(&mut buf).await.unwrap();
        socket2::SockRef::from(&tcp)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(tcp); // abortive close: RST
    });
    let server = mesh.forwarding_to(target).await;
    let mut tunnel = client.connect(&dest(&server, 8080)).await.unwrap();
    tunnel.write_all(b"go").await.unwrap();
    let mut buf = [0u8; 1];
    let result = tokio::time::timeout(STEP, tunnel.read(&mut buf))
        .await
        .unwrap();
    assert_eq!(
        result.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset)
    );
}

#[tokio::test]
async fn tunnels_held_by_a_handler_stay_counted_until_dropped() {
    let mesh = Mesh::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // The handler keeps each stream alive outside the task that accepted it.
    let handler = Arc::new(move |tunnel: InboundTunnel| {
        tx.send(tunnel.stream).unwrap();
    });
    let server = mesh.server(Delivery::Handler(handler)).await;
    let client = mesh.client();
    let d = dest(&server, 9090);
    let _a = client.connect(&d).await.unwrap();
    let _b = client.connect(&d).await.unwrap();
    let held_a = tokio::time::timeout(STEP, rx.recv())
        .await
        .unwrap()
        .unwrap();
    let held_b = tokio::time::timeout(STEP, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(server.stats().tunnels, 2);
    drop(held_a);
    assert_eq!(server.stats().tunnels, 1);
    drop(held_b);
    assert_eq!(server.stats().tunnels, 0);
}
