//! Interoperability with another TLS/X.509 implementation: certificates made by the `openssl`
//! command (PKCS#8, SEC1 and PKCS#1 keys) load and verify, bad ones are refused, and OpenSSL's
//! own TLS client completes a mutual-TLS handshake with the mesh server.

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use mesh_tls::{BundleSet, Credentials, ExpectedIdentities, SvidError, TrustBundle, X509Svid};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command is required for interop tests");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An openssl-made root for example.org in `dir` (root.pem, root.key).
fn openssl_root(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "root.key",
            "-out",
            "root.pem",
            "-days",
            "1",
            "-subj",
            "/O=openssl test root",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-addext",
            "subjectAltName=URI:spiffe://example.org",
        ],
    );
}

/// Signs `key` into `name.pem` with the given SAN line; returns the certificate path.
fn openssl_leaf(dir: &Path, name: &str, key: &str, san: &str) -> PathBuf {
    let ext = format!(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName={san}\n"
    );
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            key,
            "-subj",
            "/O=openssl leaf",
            "-out",
            &format!("{name}.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "root.pem",
            "-CAkey",
            "root.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            &format!("{name}.pem"),
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
    dir.join(format!("{name}.pem"))
}

#[tokio::test]
async fn openssl_issued_svids_in_every_key_format_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_root(d);
    // SEC1 ("EC PRIVATE KEY"), PKCS#8 ("PRIVATE KEY") and PKCS#1 ("RSA PRIVATE KEY").
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "sec1.key",
        ],
    );
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "pkcs8.key",
        ],
    );
    openssl(d, &["genrsa", "-traditional", "-out", "pkcs1.key", "2048"]);
    assert!(
        std::fs::read_to_string(d.join("sec1.key"))
            .unwrap()
            .contains("BEGIN EC PRIVATE KEY")
    );
    assert!(
        std::fs::read_to_string(d.join("pkcs8.key"))
            .unwrap()
            .contains("BEGIN PRIVATE KEY")
    );
    assert!(
        std::fs::read_to_string(d.join("pkcs1.key"))
            .unwrap()
            .contains("BEGIN RSA PRIVATE KEY")
    );

    let bundle = TrustBundle::load("example.org".parse().unwrap(), &d.join("root.pem")).unwrap();
    let mut svids = Vec::new();
    for (name, key) in [
        ("sec1", "sec1.key"),
        ("pkcs8", "pkcs8.key"),
        ("pkcs1", "pkcs1.key"),
    ] {
        let san = format!("URI:spiffe://example.org/ns/interop/sa/{name}");
        let cert = openssl_leaf(d, name, key, &san);
        let svid = X509Svid::load(&cert, &d.join(key)).unwrap();
        assert_eq!(
            svid.spiffe_id().as_str(),
            format!("spiffe://example.org/ns/interop/sa/{name}")
        );
        svids.push(svid);
    }
    // Every pair handshakes: servers and clients of every key type.
    let server_svid = svids.pop().unwrap(); // RSA server
    let server_id = server_svid.spiffe_id().clone();
    let server = mesh(Credentials::new(
        server_svid,
        BundleSet::single(bundle.clone()),
    ));
    for svid in svids {
        let client_id = svid.spiffe_id().clone();
        let client = mesh(Credentials::new(svid, BundleSet::single(bundle.clone())));
        let outcome = handshake(
            &server,
            &client,
            &ExpectedIdentities::one(server_id.clone()),
        )
        .await;
        assert_eq!(outcome.server.unwrap(), client_id);
        assert_eq!(outcome.client.unwrap(), server_id);
    }
}

#[tokio::test]
async fn openssl_issued_bad_certificates_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_root(d);
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "k.key",
        ],
    );
    let dns_only = openssl_leaf(d, "dns", "k.key", "DNS:orders.example.org");
    assert!(matches!(
        X509Svid::load(&dns_only, &d.join("k.key")),
        Err(SvidError::NoUriSan)
    ));
    let two = openssl_leaf(
        d,
        "two",
        "k.key",
        "URI:spiffe://example.org/a,URI:spiffe://example.org/b",
    );
    assert!(matches!(
        X509Svid::load(&two, &d.join("k.key")),
        Err(SvidError::MultipleUriSans { .. })
    ));
    let bad_id = openssl_leaf(d, "badid", "k.key", "URI:spiffe://Example.org/a");
    assert!(matches!(
        X509Svid::load(&bad_id, &d.join("k.key")),
        Err(SvidError::InvalidSpiffeId { .. })
    ));
    // The root itself, used as a leaf.
    assert!(matches!(
        X509Svid::load(&d.join("root.pem"), &d.join("root.key")),
        Err(SvidError::LeafIsCa)
    ));
}

#[tokio::test]
async fn openssl_s_client_completes_mutual_tls_with_the_mesh_server() {
    let ca = ca("example.org");
    let dir = tempfile::tempdir().unwrap();
    let client_id = id("spiffe://example.org/ns/interop/sa/s-client");
    let client_svid = ca.issue(&client_id, HOUR).unwrap();
    mesh_tls::write_svid(dir.path(), &client_svid, &ca.bundle()).unwrap();
    let server = mesh(creds(&ca, "spiffe://example.org/ns/interop/sa/server"));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (mut stream, peer) = server.accept(tcp).await.unwrap();
        let mut line = [0u8; 5];
        stream.read_exact(&mut line).await.unwrap();
        assert_eq!(&line, b"ping\n");
        stream.write_all(b"pong\n").await.unwrap();
        stream.shutdown().await.unwrap();
        peer
    });
    let mut child = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-tls1_3",
            "-alpn",
            "h2",
            "-connect",
            &addr.to_string(),
        ])
        .arg("-cert")
        .arg(dir.path().join("svid.pem"))
        .arg("-key")
        .arg(dir.path().join("svid.key"))
        .arg("-CAfile")
        .arg(dir.path().join("bundle.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"ping\n").await.unwrap();
    let peer = tokio::time::timeout(STEP, server_task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(peer, client_id);
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    tokio::time::timeout(STEP, stdout.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(out.contains("pong"), "s_client printed {out:?}");
    drop(stdin);
    let _ = tokio::time::timeout(STEP, child.wait()).await;
}
