//! Real loopback handshakes: success, and every way a peer can be wrong, each with its typed error.

mod support;

use std::time::Duration;

use mesh_tls::{
    AcceptedTrustDomains, BundleSet, ExpectedIdentities, HandshakeError, PeerCertError, TlsOptions,
};
use rustls::AlertDescription;
use support::*;

const SERVER: &str = "spiffe://example.org/ns/shop/sa/inventory";
const CLIENT: &str = "spiffe://example.org/ns/shop/sa/orders";

fn expect_server() -> ExpectedIdentities {
    ExpectedIdentities::one(id(SERVER))
}

fn rejected_by_peer(result: &Result<mesh_core::SpiffeId, HandshakeError>) -> AlertDescription {
    match result {
        Err(HandshakeError::RejectedByPeer { alert, .. }) => *alert,
        other => panic!("expected the peer to reject us with an alert, got {other:?}"),
    }
}

#[tokio::test]
async fn mutual_tls_yields_both_verified_identities() {
    let ca = ca("example.org");
    let server = mesh(creds(&ca, SERVER));
    let client = mesh(creds(&ca, CLIENT));
    let outcome = handshake(&server, &client, &expect_server()).await;
    assert_eq!(outcome.server.unwrap(), id(CLIENT));
    assert_eq!(outcome.client.unwrap(), id(SERVER));
}

#[tokio::test]
async fn negotiates_ztunnel_parameters_without_sni() {
    let ca = ca("example.org");
    let server = mesh(creds(&ca, SERVER));
    let client = mesh(creds(&ca, CLIENT));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (stream, _) = server.accept(tcp).await.unwrap();
        let conn = stream.get_ref().1;
        (
            conn.server_name().map(str::to_owned),
            conn.alpn_protocol().map(<[u8]>::to_vec),
        )
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (stream, _) = tokio::time::timeout(STEP, client.connect(tcp, addr.ip(), &expect_server()))
        .await
        .unwrap()
        .unwrap();
    let conn = stream.get_ref().1;
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let suite = conn.negotiated_cipher_suite().unwrap().suite();
    assert_eq!(suite, rustls::CipherSuite::TLS13_AES_256_GCM_SHA384);
    assert_eq!(
        conn.negotiated_key_exchange_group().unwrap().name(),
        rustls::NamedGroup::X25519
    );
    assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
    let (sni, alpn) = tokio::time::timeout(STEP, server_task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sni, None, "mesh clients must not send SNI");
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn foreign_trust_domain_is_rejected_unless_accepted() {
    let ours = ca("example.org");
    let theirs = ca("partner.org");
    let bundles = ours.bundle_set().with(theirs.bundle());
    let server_creds = creds(&ours, SERVER);
    server_creds.set_bundles(bundles.clone());
    let client_creds = creds(&theirs, "spiffe://partner.org/ns/x/sa/y");
    client_creds.set_bundles(bundles);
    let client = mesh(client_creds);

    // Default: only our own trust domain, even though a bundle for partner.org is loaded.
    let strict = mesh(server_creds.clone());
    let outcome = handshake(&strict, &client, &expect_server()).await;
    match outcome.server {
        Err(HandshakeError::PeerCertificate(PeerCertError::TrustDomainNotAccepted {
            id,
            accepted,
        })) => {
            assert_eq!(id.trust_domain_str(), "partner.org");
            assert_eq!(accepted.len(), 1);
            assert_eq!(accepted[0].as_str(), "example.org");
        }
        other => panic!("expected TrustDomainNotAccepted, got {other:?}"),
    }
    assert_eq!(
        rejected_by_peer(&outcome.client),
        AlertDescription::CertificateUnknown
    );

    // Federation: the server lists partner.org explicitly.
    let mut options = TlsOptions::default();
    options.accepted_trust_domains = AcceptedTrustDomains::List(vec![
        "example.org".parse().unwrap(),
        "partner.org".parse().unwrap(),
    ]);
    let federated = mesh_with(server_creds, options);
    let outcome = handshake(&federated, &client, &expect_server()).await;
    assert_eq!(
        outcome.server.unwrap(),
        id("spiffe://partner.org/ns/x/sa/y")
    );
    assert_eq!(outcome.client.unwrap(), id(SERVER));
}

#[tokio::test]
async fn accepted_trust_domain_without_bundle_is_reported() {
    let ours = ca("example.org");
    let theirs = ca("partner.org");
    let mut options = TlsOptions::default();
    options.accepted_trust_domains =
        AcceptedTrustDomains::List(vec!["partner.org".parse().unwrap()]);
    let server = mesh_with(creds(&ours, SERVER), options);
    let client_creds = creds(&theirs, "spiffe://partner.org/ns/x/sa/y");
    client_creds.set_bundles(ours.bundle_set().with(theirs.bundle()));
    let outcome = handshake(&server, &mesh(client_creds), &expect_server()).await;
    assert!(
        matches!(&outcome.server, Err(HandshakeError::PeerCertificate(PeerCertError::NoBundle { trust_domain, .. })) if trust_domain.as_str() == "partner.org"),
        "{:?}",
        outcome.server
    );
}

#[tokio::test]
async fn untrusted_root_is_rejected_with_unknown_ca() {
    let real = ca("example.org");
    let impostor = ca("example.org"); // same trust domain, different root
    let server = mesh(creds(&real, SERVER));
    let client_creds = creds(&impostor, CLIENT);
    client_creds.set_bundles(real.bundle_set()); // it trusts the server, the server doesn't trust it
    let outcome = handshake(&server, &mesh(client_creds), &expect_server()).await;
    assert!(
        matches!(
            outcome.server,
            Err(HandshakeError::PeerCertificate(
                PeerCertError::UntrustedRoot
            ))
        ),
        "{:?}",
        outcome.server
    );
    assert_eq!(
        rejected_by_peer(&outcome.client),
        AlertDescription::UnknownCA
    );

    // And the client rejects a server from an untrusted root the same way.
    let client = mesh(creds(&real, CLIENT));
    let bad_server = mesh(creds(&impostor, SERVER));
    let outcome = handshake(&bad_server, &client, &expect_server()).await;
    assert!(
        matches!(
            outcome.client,
            Err(HandshakeError::PeerCertificate(
                PeerCertError::UntrustedRoot
            ))
        ),
        "{:?}",
        outcome.client
    );
    assert_eq!(
        rejected_by_peer(&outcome.server),
        AlertDescription::UnknownCA
    );
}

#[tokio::test]
async fn expired_and_not_yet_valid_client_certificates_are_rejected() {
    let ca = ca("example.org");
    let server = mesh(creds(&ca, SERVER));
    let now = time::OffsetDateTime::now_utc();

    let mut expired = svid_params(CLIENT);
    expired.not_before = now - time::Duration::hours(2);
    expired.not_after = now - time::Duration::hours(1);
    let outcome = raw_client_against(&server, Some(leaf_signed_by(&ca, expired))).await;
    assert!(
        matches!(
            outcome.server,
            Err(HandshakeError::PeerCertificate(PeerCertError::Expired))
        ),
        "{:?}",
        outcome.server
    );
    assert_eq!(
        rejected_by_peer(&outcome.client),
        AlertDescription::CertificateExpired
    );

    let mut future = svid_params(CLIENT);
    future.not_before = now + time::Duration::hours(1);
    future.not_after = now + time::Duration::hours(2);
    let outcome = raw_client_against(&server, Some(leaf_signed_by(&ca, future))).await;
    assert!(
        matches!(
            outcome.server,
            Err(HandshakeError::PeerCertificate(PeerCertError::NotYetValid))
        ),
        "{:?}",
        outcome.server
    );
}

#[tokio::test]
async fn expired_server_certificate_is_rejected_by_the_client() {
    let ca = ca("example.org");
    let client = mesh(creds(&ca, CLIENT));
    let now = time::OffsetDateTime::now_utc();
    let mut expired = svid_params(SERVER);
    expired.not_before = now - time::Duration::hours(2);
    expired.not_after = now - time::Duration::seconds(1);
    let result =
        mesh_client_against_raw(leaf_signed_by(&ca, expired), &client, &expect_server()).await;
    assert!(
        matches!(
            result,
            Err(HandshakeError::PeerCertificate(PeerCertError::Expired))
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn leaf_without_uri_san_is_rejected() {
    let ca = ca("example.org");
    let server = mesh(creds(&ca, SERVER));
    let mut params = svid_params(CLIENT);
    params.subject_alt_names = vec![rcgen::SanType::DnsName(
        "orders.shop.svc".try_into().unwrap(),
    )];
    let outcome = raw_client_against(&server, Some(leaf_signed_by(&ca, params))).await;
    assert!(
        matches!(
            outcome.server,
            Err(HandshakeError::PeerCertificate(PeerCertError::NoSpiffeId))
        ),
        "{:?}",
        outcome.server
    );
    assert_eq!(
        rejected_by_peer(&outcome.client),
        AlertDescription::CertificateUnknown
    );
}

#[tokio::test]
async fn leaf_with_two_uri_sans_is_rejected() {
    let ca = ca("example.org");
    let server = mesh(creds(&ca, SERVER));
    let mut params = svid_params(CLIENT);
    params.subject_alt_names.push(rcgen::SanType::URI(
        "spiffe://example.org/ns/shop/sa/admin".try_into().unwrap(),
    ));
    let outcome = raw_client_against(&server, Some(leaf_signed_by(&ca, params))).await;
    assert!(
        matches!(
            outcome.server,
            Err(HandshakeError::PeerCertificate(
                PeerCertError::MultipleUriSans { count: 2 }
            ))
        ),
        "{:?}",
        outcome.server
    );
}

#[tokio::test]
async fn invalid_spiffe_id_in_uri_san_is_rejected() {
    let ca = ca("example.org");
    let server = mesh(creds(&ca, SERVER));
    let mut params = svid_params(CLIENT);
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "spiffe://example.org/a//b".try_into().unwrap(),
    )];
    let outcome = raw_client_against(&server, Some(leaf_signed_by(&ca, params))).await;
    assert!(
        matches!(
            outcome.server,
            Err(HandshakeError::PeerCertificate(
                PeerCertError::InvalidSpiffeId { .. }
            ))
        ),
        "{:?}",
        outcome.server
    );
}

#[tokio::test]
async fn ca_certificate_used_as_leaf_is_rejected() {
    let ca = ca("example.org");
    let server = mesh(creds(&ca, SERVER));
    // The root carries the URI SAN spiffe://example.org, so only the CA check stops it.
    let outcome = raw_client_against(&server, Some(ca_as_leaf(&ca))).await;
    assert!(
        matches!(
            outcome.server,
            Err(HandshakeError::PeerCertificate(
                PeerCertError::LeafIsCa { .. }
            ))
        ),
        "{:?}",
        outcome.server
    );
}

#[tokio::test]
async fn certificate_without_client_auth_usage_is_rejected() {
    let ca = ca("example.org");
    let server = mesh(creds(&ca, SERVER));
    let mut params = svid_params(CLIENT);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let outcome = raw_client_against(&server, Some(leaf_signed_by(&ca, params))).await;
    assert!(
        matches!(
            outcome.server,
            Err(HandshakeError::PeerCertificate(PeerCertError::WrongUsage))
        ),
        "{:?}",
        outcome.server
    );
}

#[tokio::test]
async fn unexpected_server_identity_is_rejected_by_the_client() {
    let ca = ca("example.org");
    let server = mesh(creds(&ca, SERVER));
    let client = mesh(creds(&ca, CLIENT));
    let expected = ExpectedIdentities::one(id("spiffe://example.org/ns/shop/sa/payments"));
    let outcome = handshake(&server, &client, &expected).await;
    match outcome.client {
        Err(HandshakeError::PeerCertificate(PeerCertError::UnexpectedIdentity {
            presented,
            expected,
        })) => {
            assert_eq!(presented, id(SERVER));
            assert_eq!(
                expected,
                vec![id("spiffe://example.org/ns/shop/sa/payments")]
            );
        }
        other => panic!("expected UnexpectedIdentity, got {other:?}"),
    }
    assert_eq!(
        rejected_by_peer(&outcome.server),
        AlertDescription::CertificateUnknown
    );

    // A set containing the server's identity among others is fine.
    let expected =
        ExpectedIdentities::new([id("spiffe://example.org/ns/shop/sa/payments"), id(SERVER)]);
    let outcome = handshake(&server, &client, &expected).await;
    assert_eq!(outcome.client.unwrap(), id(SERVER));
}

#[tokio::test]
async fn missing_client_certificate_is_rejected() {
    let ca = ca("example.org");
    let server = mesh(creds(&ca, SERVER));
    let outcome = raw_client_against(&server, None).await;
    assert!(
        matches!(outcome.server, Err(HandshakeError::NoClientCertificate)),
        "{:?}",
        outcome.server
    );
    assert_eq!(
        rejected_by_peer(&outcome.client),
        AlertDescription::CertificateRequired
    );
}

#[tokio::test]
async fn chain_with_intermediate_is_verified() {
    let root = ca("example.org");
    // An intermediate CA signed by the root, which then signs the leaf.
    let inter_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut inter_params = rcgen::CertificateParams::default();
    inter_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    inter_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    inter_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "intermediate");
    let root_issuer = rcgen::Issuer::from_ca_cert_pem(
        &root.cert_pem(),
        rcgen::KeyPair::from_pem(root.key_pem()).unwrap(),
    )
    .unwrap();
    let inter_cert = inter_params.signed_by(&inter_key, &root_issuer).unwrap();
    let inter_issuer = rcgen::Issuer::new(inter_params, inter_key);
    let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let leaf_cert = svid_params(CLIENT)
        .signed_by(&leaf_key, &inter_issuer)
        .unwrap();
    let chain_pem = format!("{}{}", leaf_cert.pem(), inter_cert.pem());
    let svid =
        mesh_tls::X509Svid::from_pem(chain_pem.as_bytes(), leaf_key.serialize_pem().as_bytes())
            .unwrap();
    assert_eq!(svid.chain().len(), 2);
    let client = mesh(mesh_tls::Credentials::new(svid, root.bundle_set()));
    let server = mesh(creds(&root, SERVER));
    let outcome = handshake(&server, &client, &expect_server()).await;
    assert_eq!(outcome.server.unwrap(), id(CLIENT));

    // Without the intermediate in the chain, the leaf cannot be verified.
    let broken = mesh_tls::X509Svid::from_pem(
        leaf_cert.pem().as_bytes(),
        leaf_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let client = mesh(mesh_tls::Credentials::new(broken, root.bundle_set()));
    let outcome = handshake(&server, &client, &expect_server()).await;
    assert!(
        matches!(
            outcome.server,
            Err(HandshakeError::PeerCertificate(
                PeerCertError::UntrustedRoot
            ))
        ),
        "{:?}",
        outcome.server
    );
}

#[tokio::test]
async fn stalled_peer_times_out_the_handshake() {
    let ca = ca("example.org");
    let mut options = TlsOptions::default();
    options.handshake_timeout = Duration::from_millis(200);
    let server = mesh_with(creds(&ca, SERVER), options);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // The "client" connects and says nothing.
    let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (tcp, _) = listener.accept().await.unwrap();
    let result = tokio::time::timeout(STEP, server.accept(tcp))
        .await
        .unwrap();
    assert!(
        matches!(result, Err(HandshakeError::Timeout { .. })),
        "{:?}",
        result.map(|_| ())
    );
}

#[tokio::test]
async fn garbage_from_the_peer_is_a_protocol_error() {
    use tokio::io::AsyncWriteExt;
    let ca = ca("example.org");
    let server = mesh(creds(&ca, SERVER));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut peer = tokio::net::TcpStream::connect(addr).await.unwrap();
    peer.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (tcp, _) = listener.accept().await.unwrap();
    let result = tokio::time::timeout(STEP, server.accept(tcp))
        .await
        .unwrap();
    assert!(
        matches!(result, Err(HandshakeError::Protocol(_))),
        "{:?}",
        result.map(|_| ())
    );
}

#[tokio::test]
async fn session_resumption_keeps_identities() {
    let ca = ca("example.org");
    let server = mesh(creds(&ca, SERVER));
    let client = mesh(creds(&ca, CLIENT));
    for _ in 0..3 {
        let outcome = handshake(&server, &client, &expect_server()).await;
        assert_eq!(outcome.server.unwrap(), id(CLIENT));
        assert_eq!(outcome.client.unwrap(), id(SERVER));
    }
    // A different expected set must not ride on the sessions above.
    let wrong = ExpectedIdentities::one(id("spiffe://example.org/ns/shop/sa/payments"));
    let outcome = handshake(&server, &client, &wrong).await;
    assert!(matches!(
        outcome.client,
        Err(HandshakeError::PeerCertificate(
            PeerCertError::UnexpectedIdentity { .. }
        ))
    ));
    let _ = BundleSet::new();
}

#[tokio::test]
async fn resumption_can_be_turned_off() {
    let ca = ca("example.org");
    let mut options = TlsOptions::default();
    options.resumption = false;
    let server = mesh_with(creds(&ca, SERVER), options.clone());
    let client = mesh_with(creds(&ca, CLIENT), options);
    for _ in 0..2 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let s = server.clone();
        let accept = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let (stream, _) = s.accept(tcp).await.unwrap();
            stream.get_ref().1.handshake_kind()
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (stream, _) = client
            .connect(tcp, addr.ip(), &expect_server())
            .await
            .unwrap();
        assert_eq!(
            stream.get_ref().1.handshake_kind(),
            Some(rustls::HandshakeKind::Full)
        );
        assert_eq!(
            tokio::time::timeout(STEP, accept).await.unwrap().unwrap(),
            Some(rustls::HandshakeKind::Full)
        );
    }
}
