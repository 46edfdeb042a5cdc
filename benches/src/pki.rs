//! The keys and certificates the handshake benchmarks use, and the endpoints built from them.
//!
//! The mesh and the plain-rustls baseline present the *same* two certificate chains and keys:
//!
//! - the client SVID is issued by [`DevCa::issue`], exactly as a workload would get it;
//! - the server SVID has the dev CA's SVID shape (empty subject, one critical URI SAN,
//!   serverAuth + clientAuth) plus an IP SAN `127.0.0.1`, signed by the same CA key. The mesh
//!   ignores IP SANs, and the WebPKI verifier of the baseline needs one to accept the server for
//!   `ServerName::IpAddress(127.0.0.1)`.
//!
//! Both stacks run the aws-lc-rs provider restricted the way the mesh restricts it: TLS 1.3 only,
//! AES-GCM suites, X25519 first, ALPN `h2`, no SNI (rustls sends none for IP server names).

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::Duration,
};

use mesh_core::SpiffeId;
use mesh_tls::{Credentials, DevCa, ExpectedIdentities, MeshTls, TlsOptions, X509Svid};
use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls::{
    ClientConfig, RootCertStore, ServerConfig,
    crypto::{CryptoProvider, aws_lc_rs},
    pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer},
    server::WebPkiClientVerifier,
};

use crate::{
    BoxError,
    handshake::{ClientTls, ServerTls},
};

/// The address the benchmark servers listen on, and the IP SAN of the server certificate.
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// How long the benchmark certificates stay valid: far longer than any benchmark run.
const TTL: Duration = Duration::from_secs(24 * 3600);

/// One development CA and the client and server SVIDs it issued.
pub struct BenchPki {
    /// The CA; its root is the only trust anchor on both stacks.
    pub ca: DevCa,
    /// The server's identity (`spiffe://bench.local/ns/bench/sa/server`).
    pub server_id: SpiffeId,
    /// The client's identity (`spiffe://bench.local/ns/bench/sa/client`).
    pub client_id: SpiffeId,
    /// The server's SVID: SPIFFE URI SAN plus IP SAN `127.0.0.1`.
    pub server_svid: X509Svid,
    /// The client's SVID, as issued by [`DevCa::issue`].
    pub client_svid: X509Svid,
}

impl BenchPki {
    /// Generates the CA and issues both SVIDs.
    pub fn generate() -> Result<Self, BoxError> {
        Self::with_ca(DevCa::generate("bench.local".parse()?)?)
    }

    /// Issues both SVIDs from an existing CA (of trust domain `bench.local`), for a process that
    /// must trust the same root as its parent.
    pub fn with_ca(ca: DevCa) -> Result<Self, BoxError> {
        let server_id: SpiffeId = "spiffe://bench.local/ns/bench/sa/server".parse()?;
        let client_id: SpiffeId = "spiffe://bench.local/ns/bench/sa/client".parse()?;
        let server_svid = issue_with_ip_san(&ca, &server_id, LOOPBACK)?;
        let client_svid = ca.issue(&client_id, TTL)?;
        Ok(Self {
            ca,
            server_id,
            client_id,
            server_svid,
            client_svid,
        })
    }

    /// The mesh server: [`MeshTls`] with default options presenting the server SVID.
    pub fn mesh_server(&self) -> Result<MeshTls, BoxError> {
        let credentials = Credentials::new(self.server_svid.clone(), self.ca.bundle_set());
        Ok(MeshTls::new(credentials, TlsOptions::default())?)
    }

    /// The mesh client: [`MeshTls`] with default options presenting the client SVID.
    pub fn mesh_client(&self) -> Result<MeshTls, BoxError> {
        let credentials = Credentials::new(self.client_svid.clone(), self.ca.bundle_set());
        Ok(MeshTls::new(credentials, TlsOptions::default())?)
    }

    /// The CA root as a rustls root store, for the baseline.
    pub fn roots(&self) -> Result<Arc<RootCertStore>, BoxError> {
        let mut roots = RootCertStore::empty();
        for root in self.ca.bundle().roots() {
            roots.add(root.clone())?;
        }
        Ok(Arc::new(roots))
    }

    /// The baseline server: WebPKI client-certificate verifier (client auth mandatory) and the
    /// server SVID's chain and key.
    pub fn plain_server_config(&self) -> Result<Arc<ServerConfig>, BoxError> {
        let provider = baseline_provider();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots()?, provider.clone()).build()?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                self.server_svid.chain().to_vec(),
                self.server_svid.private_key().clone_key(),
            )?;
        config.alpn_protocols = vec![mesh_tls::ALPN_H2.to_vec()];
        Ok(Arc::new(config))
    }

    /// The baseline client: WebPKI server verification against the CA root, presenting the
    /// client SVID's chain and key.
    pub fn plain_client_config(&self) -> Result<Arc<ClientConfig>, BoxError> {
        let mut config = ClientConfig::builder_with_provider(baseline_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(
                self.client_svid.chain().to_vec(),
                self.client_svid.private_key().clone_key(),
            )?;
        config.alpn_protocols = vec![mesh_tls::ALPN_H2.to_vec()];
        Ok(Arc::new(config))
    }

    /// The server endpoint of `stack`.
    pub fn server(&self, stack: Stack) -> Result<ServerTls, BoxError> {
        Ok(match stack {
            Stack::Mesh => ServerTls::Mesh(self.mesh_server()?),
            Stack::PlainRustls => ServerTls::Plain(self.plain_server_config()?.into()),
        })
    }

    /// The client endpoint of `stack`; the mesh client pins the server's SPIFFE ID.
    pub fn client(&self, stack: Stack) -> Result<ClientTls, BoxError> {
        Ok(match stack {
            Stack::Mesh => ClientTls::Mesh {
                tls: self.mesh_client()?,
                expected: ExpectedIdentities::one(self.server_id.clone()),
            },
            Stack::PlainRustls => ClientTls::Plain(self.plain_client_config()?),
        })
    }
}

/// Which TLS stack an endpoint uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    /// [`MeshTls`] on both sides: SPIFFE verification and identity pinning.
    Mesh,
    /// Plain rustls with WebPKI verification: the baseline.
    PlainRustls,
}

impl Stack {
    /// The benchmark-name prefix: `mesh` or `plain_rustls`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mesh => "mesh",
            Self::PlainRustls => "plain_rustls",
        }
    }
}

/// The aws-lc-rs provider with the mesh's parameters: AES-GCM TLS 1.3 suites (256 first, as the
/// mesh orders them) and X25519 first.
pub fn baseline_provider() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: vec![
            aws_lc_rs::cipher_suite::TLS13_AES_256_GCM_SHA384,
            aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256,
        ],
        kx_groups: vec![
            aws_lc_rs::kx_group::X25519,
            aws_lc_rs::kx_group::SECP256R1,
            aws_lc_rs::kx_group::SECP384R1,
        ],
        ..aws_lc_rs::default_provider()
    })
}

/// Issues an SVID shaped like [`DevCa::issue`]'s, with an extra IP SAN, signed by the CA's key.
fn issue_with_ip_san(ca: &DevCa, id: &SpiffeId, ip: IpAddr) -> Result<X509Svid, BoxError> {
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem(), KeyPair::from_pem(ca.key_pem())?)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    // Empty subject, so the SAN extension is critical, as on the dev CA's SVIDs.
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![
        SanType::URI(id.as_str().try_into()?),
        SanType::IpAddress(ip),
    ];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - Duration::from_secs(60);
    params.not_after = now + TTL;
    let cert = params.signed_by(&key, &issuer)?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok(X509Svid::from_der(vec![cert.der().clone()], key_der)?)
}
