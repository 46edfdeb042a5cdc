//! Fixtures shared by the mesh-tls integration tests: dev-CA identities, certificates crafted
//! to be wrong in one specific way, and loopback handshakes with timeouts.
#![allow(dead_code, unreachable_pub)]

use std::{sync::Arc, time::Duration};

use mesh_core::SpiffeId;
use mesh_tls::{Credentials, DevCa, ExpectedIdentities, HandshakeError, MeshTls, TlsOptions};
use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls::{
    ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::aws_lc_rs,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use time::OffsetDateTime;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Every network step in these tests is bounded by this.
pub const STEP: Duration = Duration::from_secs(10);
pub const HOUR: Duration = Duration::from_secs(3600);

pub fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

pub fn ca(td: &str) -> DevCa {
    DevCa::generate(td.parse().unwrap()).unwrap()
}

pub fn creds(ca: &DevCa, spiffe_id: &str) -> Credentials {
    ca.credentials(&id(spiffe_id), HOUR).unwrap()
}

pub fn mesh(creds: Credentials) -> MeshTls {
    MeshTls::new(creds, TlsOptions::default()).unwrap()
}

pub fn mesh_with(creds: Credentials, options: TlsOptions) -> MeshTls {
    MeshTls::new(creds, options).unwrap()
}

/// A certificate chain and key, possibly invalid as an SVID, for hostile peers.
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// SVID-shaped parameters (what DevCa issues), for tests to break one property at a time.
pub fn svid_params(spiffe_id: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().unwrap())];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = now + time::Duration::hours(1);
    params
}

/// Signs `params` with `ca`'s key.
pub fn leaf_signed_by(ca: &DevCa, params: CertificateParams) -> Leaf {
    let ca_key = KeyPair::from_pem(ca.key_pem()).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem(), ca_key).unwrap();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    Leaf {
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

/// The CA's own certificate and key, presented as if it were a leaf.
pub fn ca_as_leaf(ca: &DevCa) -> Leaf {
    Leaf {
        chain: mesh_tls::pem::parse_certificates(ca.cert_pem().as_bytes(), "ca").unwrap(),
        key: mesh_tls::pem::parse_private_key(ca.key_pem().as_bytes(), "ca key").unwrap(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// A client verifier that accepts anything: hostile or misconfigured peers don't check us.
#[derive(Debug)]
struct AcceptAnything;

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A plain rustls client presenting `leaf` (or no certificate) and trusting anything.
pub fn raw_client_config(leaf: Option<Leaf>) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything));
    let mut config = match leaf {
        Some(leaf) => builder.with_client_auth_cert(leaf.chain, leaf.key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// A plain rustls server presenting `leaf` and asking for no client certificate.
pub fn raw_server_config(leaf: Leaf) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(leaf.chain, leaf.key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// Outcome of one handshake as seen from each side.
pub struct Outcome {
    pub server: Result<SpiffeId, HandshakeError>,
    pub client: Result<SpiffeId, HandshakeError>,
}

/// In TLS 1.3 the client finishes its handshake before the server has judged the client's
/// certificate; a rejection reaches the client on its first read. So both sides exchange a byte.
async fn exchange_client<S>(stream: &mut S) -> Result<(), HandshakeError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream
        .write_all(b"?")
        .await
        .map_err(HandshakeError::from_io)?;
    let mut byte = [0u8; 1];
    stream
        .read_exact(&mut byte)
        .await
        .map_err(HandshakeError::from_io)?;
    assert_eq!(&byte, b"!");
    Ok(())
}

async fn exchange_server<S>(stream: &mut S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut byte = [0u8; 1];
    if stream.read_exact(&mut byte).await.is_ok() {
        let _ = stream.write_all(b"!").await;
        let _ = stream.flush().await;
    }
}

/// A mesh server and a mesh client handshake over loopback.
pub async fn handshake(
    server: &MeshTls,
    client: &MeshTls,
    expected: &ExpectedIdentities,
) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = server.clone();
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (mut stream, peer) = server.accept(tcp).await?;
        exchange_server(&mut stream).await;
        Ok(peer)
    });
    let client_result = async {
        let tcp = TcpStream::connect(addr).await.map_err(HandshakeError::Io)?;
        let (mut stream, peer) = client.connect(tcp, addr.ip(), expected).await?;
        exchange_client(&mut stream).await?;
        Ok(peer)
    };
    let client = tokio::time::timeout(STEP, client_result)
        .await
        .expect("client timed out");
    let server = tokio::time::timeout(STEP, server_task)
        .await
        .expect("server timed out")
        .unwrap();
    Outcome { server, client }
}

/// A plain rustls client (presenting `leaf`) against a mesh server.
pub async fn raw_client_against(server: &MeshTls, leaf: Option<Leaf>) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = server.clone();
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (mut stream, peer) = server.accept(tcp).await?;
        exchange_server(&mut stream).await;
        Ok(peer)
    });
    let connector = tokio_rustls::TlsConnector::from(raw_client_config(leaf));
    let client_result = async {
        let tcp = TcpStream::connect(addr).await.map_err(HandshakeError::Io)?;
        let mut stream = connector
            .connect(ServerName::IpAddress(addr.ip().into()), tcp)
            .await
            .map_err(HandshakeError::from_io)?;
        exchange_client(&mut stream).await?;
        Ok(id("spiffe://unverified.invalid/raw-client"))
    };
    let client = tokio::time::timeout(STEP, client_result)
        .await
        .expect("client timed out");
    let server = tokio::time::timeout(STEP, server_task)
        .await
        .expect("server timed out")
        .unwrap();
    Outcome { server, client }
}

/// A mesh client against a plain rustls server presenting `leaf`.
pub async fn mesh_client_against_raw(
    leaf: Leaf,
    client: &MeshTls,
    expected: &ExpectedIdentities,
) -> Result<SpiffeId, HandshakeError> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(raw_server_config(leaf));
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        if let Ok(mut stream) = acceptor.accept(tcp).await {
            exchange_server(&mut stream).await;
        }
    });
    let result = tokio::time::timeout(STEP, async {
        let tcp = TcpStream::connect(addr).await.map_err(HandshakeError::Io)?;
        let (mut stream, peer) = client.connect(tcp, addr.ip(), expected).await?;
        exchange_client(&mut stream).await?;
        Ok(peer)
    })
    .await
    .expect("client timed out");
    tokio::time::timeout(STEP, server_task)
        .await
        .expect("server timed out")
        .unwrap();
    result
}
