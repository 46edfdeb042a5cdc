//! Live rotation: SVIDs and bundles swap atomically under load, from files and from the dev CA.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use mesh_tls::{
    ExpectedIdentities, HandshakeError, PeerCertError, source::files::FileSource,
    source::renewal::spawn_renewal,
};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVER: &str = "spiffe://example.org/ns/shop/sa/inventory";
const CLIENT: &str = "spiffe://example.org/ns/shop/sa/orders";

/// Waits (bounded) for the credentials to change generation.
async fn next_generation(rx: &mut tokio::sync::watch::Receiver<u64>) {
    tokio::time::timeout(STEP, rx.changed())
        .await
        .expect("no rotation within the deadline")
        .unwrap();
}

/// Polls a condition until it holds, failing after the step deadline.
async fn eventually(mut condition: impl FnMut() -> bool) {
    tokio::time::timeout(STEP, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("condition not reached within the deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_under_concurrent_handshakes_has_zero_failures() {
    let ca = Arc::new(ca("example.org"));
    let server_creds = creds(&ca, SERVER);
    let client_creds = creds(&ca, CLIENT);
    let server = mesh(server_creds.clone());
    let client = mesh(client_creds.clone());
    let expected = ExpectedIdentities::one(id(SERVER));

    // A connection established before any rotation must keep working afterwards.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let long_server = server.clone();
    let echo = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (mut s, _) = long_server.accept(tcp).await.unwrap();
        let mut buf = [0u8; 4];
        while s.read_exact(&mut buf).await.is_ok() {
            s.write_all(&buf).await.unwrap();
        }
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut long_lived, _) = client.connect(tcp, addr.ip(), &expected).await.unwrap();

    const ROTATIONS: usize = 20;
    const WORKERS: usize = 6;
    let done = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let (server, client, expected) = (server.clone(), client.clone(), expected.clone());
        let (done, completed) = (done.clone(), completed.clone());
        let client_creds = client_creds.clone();
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !done.load(Ordering::Relaxed) {
                // Half the workers resume sessions; the other half always do full handshakes
                // (a fresh client has no session cache), so rotation hits both paths.
                let client = if worker % 2 == 0 {
                    client.clone()
                } else {
                    mesh(client_creds.clone())
                };
                let outcome = handshake(&server, &client, &expected).await;
                if let Err(e) = &outcome.server {
                    failures.push(format!("server: {e}"));
                }
                if let Err(e) = &outcome.client {
                    failures.push(format!("client: {e}"));
                }
                completed.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    // Rotate both sides, interleaved with handshakes (each rotation waits for a few more).
    for i in 0..ROTATIONS {
        let target = (i + 1) * 3;
        tokio::time::timeout(STEP, async {
            while completed.load(Ordering::Relaxed) < target {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("handshakes stopped progressing");
        server_creds.set_svid(ca.issue(&id(SERVER), HOUR).unwrap());
        client_creds.set_svid(ca.issue(&id(CLIENT), HOUR).unwrap());
    }
    done.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for w in workers {
        failures.extend(tokio::time::timeout(STEP, w).await.unwrap().unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} handshakes failed: {failures:?}",
        failures.len()
    );
    assert!(completed.load(Ordering::Relaxed) >= ROTATIONS * 3);
    assert_eq!(server_creds.generation(), ROTATIONS as u64);

    // New handshakes present the newest certificate.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr2 = listener.local_addr().unwrap();
    let s2 = server.clone();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = s2.accept(tcp).await;
    });
    // (A client without cached sessions: a resumed session keeps the certificate it began with.)
    let fresh_client = mesh(client_creds.clone());
    let tcp = tokio::net::TcpStream::connect(addr2).await.unwrap();
    let (fresh, _) = fresh_client
        .connect(tcp, addr2.ip(), &expected)
        .await
        .unwrap();
    let presented = fresh.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_eq!(presented, server_creds.svid().chain()[0]);

    // The connection from before the rotations still carries data.
    long_lived.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tokio::time::timeout(STEP, long_lived.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"ping");
    drop(long_lived);
    tokio::time::timeout(STEP, echo).await.unwrap().unwrap();
}

#[tokio::test]
async fn ca_rotation_through_bundle_update() {
    let old = ca("example.org");
    let new = ca("example.org");
    let server_creds = creds(&old, SERVER);
    let server = mesh(server_creds.clone());
    let expected = ExpectedIdentities::one(id(SERVER));
    let new_client_creds = creds(&new, CLIENT);
    new_client_creds.set_bundles(
        old.bundle_set().with(
            mesh_tls::TrustBundle::from_pem(
                "example.org".parse().unwrap(),
                format!("{}{}", old.cert_pem(), new.cert_pem()).as_bytes(),
            )
            .unwrap(),
        ),
    );
    let new_client = mesh(new_client_creds);

    let outcome = handshake(&server, &new_client, &expected).await;
    assert!(matches!(
        outcome.server,
        Err(HandshakeError::PeerCertificate(
            PeerCertError::UntrustedRoot
        ))
    ));

    // Publish old + new roots on the server: both generations of clients work.
    server_creds.set_bundles(mesh_tls::BundleSet::single(
        mesh_tls::TrustBundle::from_pem(
            "example.org".parse().unwrap(),
            format!("{}{}", old.cert_pem(), new.cert_pem()).as_bytes(),
        )
        .unwrap(),
    ));
    let outcome = handshake(&server, &new_client, &expected).await;
    assert_eq!(outcome.server.unwrap(), id(CLIENT));
    let old_client = mesh(creds(&old, "spiffe://example.org/ns/shop/sa/legacy"));
    let outcome = handshake(&server, &old_client, &expected).await;
    assert_eq!(
        outcome.server.unwrap(),
        id("spiffe://example.org/ns/shop/sa/legacy")
    );
}

#[tokio::test]
async fn file_source_picks_up_new_files_and_keeps_last_good_on_bad_ones() {
    let ca = ca("example.org");
    let dir = tempfile::tempdir().unwrap();
    let first = ca.issue(&id(SERVER), HOUR).unwrap();
    mesh_tls::write_svid(dir.path(), &first, &ca.bundle()).unwrap();
    let source = FileSource::in_dir(dir.path());
    let credentials = source.credentials().unwrap();
    let mut generations = credentials.subscribe();
    let handle = source
        .clone()
        .watch(credentials.clone(), Duration::from_millis(20));
    let server = mesh(credentials.clone());
    let client = mesh(creds(&ca, CLIENT));
    let expected = ExpectedIdentities::one(id(SERVER));

    // A new SVID on disk is picked up.
    let second = ca.issue(&id(SERVER), HOUR).unwrap();
    mesh_tls::write_svid(dir.path(), &second, &ca.bundle()).unwrap();
    next_generation(&mut generations).await;
    eventually(|| credentials.svid().chain() == second.chain()).await;
    assert_eq!(handle.last_error(), None);
    assert!(handle.reloads() >= 1);
    assert_eq!(
        handshake(&server, &client, &expected).await.client.unwrap(),
        id(SERVER)
    );

    // A corrupt certificate is refused; the last good SVID stays in use.
    std::fs::write(
        dir.path().join("svid.pem"),
        b"-----BEGIN CERTIFICATE-----\ntruncated",
    )
    .unwrap();
    eventually(|| handle.last_error().is_some()).await;
    assert!(
        handle.last_error().unwrap().contains("svid.pem"),
        "{:?}",
        handle.last_error()
    );
    assert_eq!(credentials.svid().chain(), second.chain());
    assert_eq!(
        handshake(&server, &client, &expected).await.client.unwrap(),
        id(SERVER)
    );

    // Half a rotation (new key, old certificate) is refused too, then completes.
    let third = ca.issue(&id(SERVER), HOUR).unwrap();
    std::fs::write(dir.path().join("svid.pem"), second.chain_pem()).unwrap();
    std::fs::write(dir.path().join("svid.key"), third.key_pem()).unwrap();
    eventually(|| {
        handle
            .last_error()
            .is_some_and(|e| e.contains("does not match"))
    })
    .await;
    assert_eq!(credentials.svid().chain(), second.chain());
    std::fs::write(dir.path().join("svid.pem"), third.chain_pem()).unwrap();
    eventually(|| credentials.svid().chain() == third.chain()).await;
    assert_eq!(handle.last_error(), None);

    // An SVID from a CA the bundle does not hold is refused.
    let rogue = ca_rogue();
    let foreign = rogue.issue(&id(SERVER), HOUR).unwrap();
    std::fs::write(dir.path().join("svid.key"), foreign.key_pem()).unwrap();
    std::fs::write(dir.path().join("svid.pem"), foreign.chain_pem()).unwrap();
    eventually(|| {
        handle
            .last_error()
            .is_some_and(|e| e.contains("own trust bundle"))
    })
    .await;
    assert_eq!(credentials.svid().chain(), third.chain());
}

fn ca_rogue() -> mesh_tls::DevCa {
    ca("example.org")
}

#[tokio::test]
async fn dev_ca_renews_at_half_life_and_writes_files() {
    let ca = Arc::new(ca("example.org"));
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_secs(2);
    let credentials = ca.credentials(&id(SERVER), ttl).unwrap();
    let first = credentials.svid();
    let mut generations = credentials.subscribe();
    let handle = spawn_renewal(
        ca.clone(),
        id(SERVER),
        ttl,
        credentials.clone(),
        Some(dir.path().to_owned()),
    );
    next_generation(&mut generations).await;
    let renewed = credentials.svid();
    assert_ne!(renewed.chain(), first.chain());
    assert!(renewed.not_after().as_secs() >= first.not_after().as_secs());
    assert!(credentials.time_to_expiry() <= ttl);
    assert_eq!(handle.reloads(), 1);
    let on_disk =
        mesh_tls::X509Svid::load(&dir.path().join("svid.pem"), &dir.path().join("svid.key"))
            .unwrap();
    assert_eq!(on_disk.chain(), renewed.chain());
    // The renewed SVID is usable.
    let server = mesh(credentials);
    let client = mesh(creds(&ca, CLIENT));
    let outcome = handshake(&server, &client, &ExpectedIdentities::one(id(SERVER))).await;
    assert_eq!(outcome.server.unwrap(), id(CLIENT));
    drop(handle);
}
