//! Every way a tunnel can be refused, as the client sees it and as the server answers it.

mod support;

use std::{collections::HashMap, time::Duration};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use mesh_client::hbone::{
    Delivery, Destination, ForwardTo, HboneServerConfig, TunnelError, Verdict,
};
use mesh_tls::{ExpectedIdentities, HandshakeError, PeerCertError};
use rustls::AlertDescription;
use support::*;

async fn free_port() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn policy_denial_is_401_and_not_retryable() {
    let mesh = Mesh::new();
    let server = mesh.forwarding_to(echo_server().await).await;
    server.set_policy(|req: &mesh_client::hbone::InboundRequest<'_>| {
        if req.peer.service_account() == Some("orders") {
            Verdict::Deny("orders may not call inventory".into())
        } else {
            Verdict::Allow
        }
    });
    let err = mesh
        .client()
        .connect(&dest(&server, 8080))
        .await
        .unwrap_err();
    assert!(matches!(err, TunnelError::Denied { .. }), "{err}");
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn unreachable_target_is_503_and_retryable() {
    let mesh = Mesh::new();
    let closed = free_port().await; // nothing listens there any more
    let server = mesh.forwarding_to(closed).await;
    let err = mesh
        .client()
        .connect(&dest(&server, 8080))
        .await
        .unwrap_err();
    assert!(matches!(err, TunnelError::Unavailable { .. }), "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn own_ports_and_unknown_ports_are_503() {
    let mesh = Mesh::new();
    let server = mesh.server(Delivery::Forward(ForwardTo::Authority)).await;
    let client = mesh.client();
    // The HBONE port itself: a loop through the mesh.
    let err = client
        .connect(&dest(&server, server.local_addr().port()))
        .await
        .unwrap_err();
    assert!(matches!(err, TunnelError::Unavailable { .. }), "{err}");
    // A configured admin port.
    let err = client.connect(&dest(&server, 15020)).await.unwrap_err();
    assert!(matches!(err, TunnelError::Unavailable { .. }), "{err}");

    let echo = echo_server().await;
    let by_port = mesh
        .server(Delivery::Forward(ForwardTo::ByPort(HashMap::from([(
            8080, echo,
        )]))))
        .await;
    let err = client.connect(&dest(&by_port, 9999)).await.unwrap_err();
    assert!(matches!(err, TunnelError::Unavailable { .. }), "{err}");
    let mut ok = client.connect(&dest(&by_port, 8080)).await.unwrap();
    assert_eq!(round_trip(&mut ok, b"mapped").await, b"mapped");
}

/// Sends hand-made requests over a mesh mTLS + HTTP/2 connection.
async fn raw_h2(mesh: &Mesh, server: std::net::SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tls = mesh.tls(CLIENT_ID);
    let tcp = tokio::net::TcpStream::connect(server).await.unwrap();
    let (stream, _) = tls
        .connect(tcp, server.ip(), &ExpectedIdentities::one(id(SERVER_ID)))
        .await
        .unwrap();
    let (send, conn) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(conn);
    send
}

async fn status_of(send: &mut h2::client::SendRequest<Bytes>, req: Request<()>) -> StatusCode {
    let ready = send.clone().ready().await.unwrap();
    *send = ready;
    let (resp, _body) = send.send_request(req, true).unwrap();
    tokio::time::timeout(STEP, resp)
        .await
        .unwrap()
        .unwrap()
        .status()
}

#[tokio::test]
async fn malformed_connects_are_400() {
    let mesh = Mesh::new();
    let server = mesh.forwarding_to(echo_server().await).await;
    let mut send = raw_h2(&mesh, server.local_addr()).await;

    // Authority IP is not the address the connection arrived on.
    let req = Request::builder()
        .method(Method::CONNECT)
        .uri("127.0.0.2:8080")
        .body(())
        .unwrap();
    assert_eq!(status_of(&mut send, req).await, StatusCode::BAD_REQUEST);
    // A hostname authority is not ip:port.
    let req = Request::builder()
        .method(Method::CONNECT)
        .uri("inventory.shop:8080")
        .body(())
        .unwrap();
    assert_eq!(status_of(&mut send, req).await, StatusCode::BAD_REQUEST);
    // Not a CONNECT at all.
    let req = Request::builder()
        .method(Method::GET)
        .uri(format!("https://{}/", server.local_addr()))
        .body(())
        .unwrap();
    assert_eq!(status_of(&mut send, req).await, StatusCode::BAD_REQUEST);
    // And a correct one on the same connection still works.
    let req = Request::builder()
        .method(Method::CONNECT)
        .uri("127.0.0.1:8080")
        .body(())
        .unwrap();
    assert_eq!(status_of(&mut send, req).await, StatusCode::OK);
}

#[tokio::test]
async fn wrong_server_identity_is_a_tls_error() {
    let mesh = Mesh::new();
    let server = mesh.forwarding_to(echo_server().await).await;
    let d = Destination {
        expected: ExpectedIdentities::one(id("spiffe://example.org/ns/shop/sa/payments")),
        ..dest(&server, 8080)
    };
    let err = mesh.client().connect(&d).await.unwrap_err();
    match &err {
        TunnelError::Tls {
            source:
                HandshakeError::PeerCertificate(PeerCertError::UnexpectedIdentity { presented, .. }),
            ..
        } => {
            assert_eq!(presented, &id(SERVER_ID));
        }
        other => panic!("expected an identity mismatch, got {other}"),
    }
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn server_rejecting_our_certificate_is_a_tls_error() {
    let mesh = Mesh::new();
    let server = mesh.forwarding_to(echo_server().await).await;
    // A client from another CA that nevertheless trusts the server's CA.
    let other = Mesh::new();
    let creds = other
        .ca
        .credentials(&id(CLIENT_ID), Duration::from_secs(3600))
        .unwrap();
    creds.set_bundles(mesh.ca.bundle_set());
    let tls = mesh_tls::MeshTls::new(creds, mesh_tls::TlsOptions::default()).unwrap();
    let client = mesh_client::hbone::HboneClient::new(tls, Default::default());
    let err = client.connect(&dest(&server, 8080)).await.unwrap_err();
    assert!(
        matches!(
            &err,
            TunnelError::Tls {
                source: HandshakeError::RejectedByPeer {
                    alert: AlertDescription::UnknownCA,
                    ..
                },
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn refused_hbone_port_is_a_retryable_connect_error() {
    let mesh = Mesh::new();
    let d = Destination {
        hbone_addr: free_port().await,
        target_port: 8080,
        expected: ExpectedIdentities::one(id(SERVER_ID)),
    };
    let err = mesh.client().connect(&d).await.unwrap_err();
    assert!(matches!(err, TunnelError::Connect { .. }), "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn stalled_handshakes_do_not_wedge_the_server() {
    let mesh = Mesh::new();
    let tls = {
        let creds = mesh
            .ca
            .credentials(&id(SERVER_ID), Duration::from_secs(3600))
            .unwrap();
        let mut options = mesh_tls::TlsOptions::default();
        options.handshake_timeout = Duration::from_millis(300);
        mesh_tls::MeshTls::new(creds, options).unwrap()
    };
    let mut config = HboneServerConfig::default();
    config.listen = "127.0.0.1:0".parse().unwrap();
    let server = mesh_client::hbone::HboneServer::bind(
        tls,
        config,
        Delivery::Forward(ForwardTo::Fixed(echo_server().await)),
    )
    .await
    .unwrap();
    // Ten peers connect and never say anything.
    let mut silent = Vec::new();
    for _ in 0..10 {
        silent.push(
            tokio::net::TcpStream::connect(server.local_addr())
                .await
                .unwrap(),
        );
    }
    // A real client is served meanwhile.
    let mut tunnel = tokio::time::timeout(STEP, mesh.client().connect(&dest(&server, 8080)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(round_trip(&mut tunnel, b"not wedged").await, b"not wedged");
    drop(tunnel);
    // The silent ones are cut off by the handshake timeout.
    tokio::time::timeout(STEP, async {
        while server.stats().connections > 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("stalled connections were not closed");
    for mut s in silent {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(STEP, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0, "the server should have closed the stalled connection");
    }
}

#[tokio::test]
async fn oversized_headers_are_refused_without_harming_other_clients() {
    let mesh = Mesh::new();
    let server = mesh.forwarding_to(echo_server().await).await;
    let mut send = raw_h2(&mesh, server.local_addr()).await;
    let huge = "x".repeat(100 * 1024); // over the 64 KiB header list limit
    let req = Request::builder()
        .method(Method::CONNECT)
        .uri("127.0.0.1:8080")
        .header("x-padding", huge)
        .body(())
        .unwrap();
    let outcome = async {
        let ready = send.clone().ready().await?;
        send = ready;
        let (resp, _body) = send.send_request(req, true)?;
        resp.await
    };
    match tokio::time::timeout(STEP, outcome).await.unwrap() {
        Ok(response) => assert_ne!(
            response.status(),
            StatusCode::OK,
            "oversized CONNECT was accepted"
        ),
        Err(e) => assert!(e.is_reset() || e.is_go_away() || e.is_io(), "{e}"),
    }
    // Other clients are unaffected.
    let mut tunnel = mesh.client().connect(&dest(&server, 8080)).await.unwrap();
    assert_eq!(round_trip(&mut tunnel, b"fine").await, b"fine");
}
