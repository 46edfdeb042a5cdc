//! rustls configurations for mesh traffic, built once and kept current by [`Credentials`].

use std::{
    collections::HashMap,
    fmt,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use mesh_core::SpiffeId;
use rustls::{
    ClientConfig, ServerConfig, SupportedProtocolVersion,
    crypto::{CryptoProvider, aws_lc_rs},
};
use rustls_pki_types::ServerName;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{
    AcceptedTrustDomains, Credentials, ExpectedIdentities,
    credentials::CurrentCert,
    error::{HandshakeError, PeerCertError},
    peer::peer_spiffe_id,
    verify::{PeerVerifier, client_cert::SpiffeClientVerifier, server_cert::SpiffeServerVerifier},
};

/// The ALPN protocol HBONE speaks.
pub const ALPN_H2: &[u8] = b"h2";

/// Knobs for the mesh's TLS. The defaults match Istio's ztunnel.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TlsOptions {
    /// Trust domains whose peers are accepted. Default: our own only.
    pub accepted_trust_domains: AcceptedTrustDomains,
    /// Upper bound for one handshake; a stalled peer gets [`HandshakeError::Timeout`].
    pub handshake_timeout: Duration,
    /// Also allow TLS 1.2 (ECDHE + AES-GCM). Off by default, as in ztunnel.
    pub allow_tls12: bool,
    /// Offer the hybrid post-quantum group X25519MLKEM768 first. Off by default.
    pub post_quantum: bool,
    /// ALPN protocols, in preference order. Default: `h2`.
    pub alpn: Vec<Vec<u8>>,
    /// TLS 1.3 session resumption (tickets), on by default: a resumed handshake skips the
    /// certificate exchange. Resumed sessions keep the identity verified at first contact.
    pub resumption: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        Self {
            accepted_trust_domains: AcceptedTrustDomains::Own,
            handshake_timeout: Duration::from_secs(10),
            allow_tls12: false,
            post_quantum: false,
            alpn: vec![ALPN_H2.to_vec()],
            resumption: true,
        }
    }
}

/// The configuration could not be built.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// rustls refused the combination of settings.
    #[error("invalid TLS settings: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds the crypto provider with ztunnel's parameters: AES-GCM suites, X25519 first.
fn mesh_provider(options: &TlsOptions) -> Arc<CryptoProvider> {
    let mut cipher_suites = vec![
        aws_lc_rs::cipher_suite::TLS13_AES_256_GCM_SHA384,
        aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256,
    ];
    if options.allow_tls12 {
        cipher_suites.extend([
            aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ]);
    }
    let mut kx_groups = Vec::new();
    if options.post_quantum {
        kx_groups.push(aws_lc_rs::kx_group::X25519MLKEM768);
    }
    kx_groups.extend([
        aws_lc_rs::kx_group::X25519,
        aws_lc_rs::kx_group::SECP256R1,
        aws_lc_rs::kx_group::SECP384R1,
    ]);
    Arc::new(CryptoProvider {
        cipher_suites,
        kx_groups,
        ..aws_lc_rs::default_provider()
    })
}

fn versions(options: &TlsOptions) -> &'static [&'static SupportedProtocolVersion] {
    static TLS13_ONLY: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    static TLS13_AND_12: [&SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    if options.allow_tls12 {
        &TLS13_AND_12
    } else {
        &TLS13_ONLY
    }
}

/// The mesh's TLS endpoint: server config, per-destination client configs, and handshakes that
/// return the peer's verified SPIFFE ID.
///
/// ```no_run
/// # async fn demo(tls: mesh_tls::MeshTls, tcp: tokio::net::TcpStream, server: mesh_core::SpiffeId) -> Result<(), mesh_tls::HandshakeError> {
/// use mesh_tls::ExpectedIdentities;
/// let ip = tcp.peer_addr().map_err(mesh_tls::HandshakeError::Io)?.ip();
/// let (stream, peer) = tls.connect(tcp, ip, &ExpectedIdentities::one(server)).await?;
/// println!("talking to {peer}");
/// # drop(stream); Ok(()) }
/// ```
///
/// Cloning is cheap; clones share the configs and their session caches.
#[derive(Clone)]
pub struct MeshTls {
    inner: Arc<Inner>,
}

struct Inner {
    credentials: Credentials,
    options: TlsOptions,
    provider: Arc<CryptoProvider>,
    server: Arc<ServerConfig>,
    clients: Mutex<HashMap<ExpectedIdentities, Arc<ClientConfig>>>,
}

/// Bound on cached client configs; past it the cache restarts (each entry holds a session cache).
const MAX_CLIENT_CONFIGS: usize = 4096;

impl MeshTls {
    /// Builds the server config now; client configs are built per expected-identity set on demand.
    pub fn new(credentials: Credentials, options: TlsOptions) -> Result<Self, TlsConfigError> {
        let provider = mesh_provider(&options);
        let verifier = SpiffeClientVerifier::new(PeerVerifier {
            credentials: credentials.clone(),
            accepted: options.accepted_trust_domains.clone(),
        });
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions(&options))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(CurrentCert(credentials.clone())));
        server.alpn_protocols = options.alpn.clone();
        if !options.resumption {
            server.send_tls13_tickets = 0;
            server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        }
        let tls = Self {
            inner: Arc::new(Inner {
                credentials,
                provider,
                server: Arc::new(server),
                clients: Mutex::new(HashMap::new()),
                options,
            }),
        };
        // Fail now, not on the first connection, if the client side cannot be built.
        tls.build_client_config(&ExpectedIdentities::any_in_accepted_trust_domains())?;
        Ok(tls)
    }

    /// The credentials this endpoint presents and verifies with.
    pub fn credentials(&self) -> &Credentials {
        &self.inner.credentials
    }

    /// The options it was built with.
    pub fn options(&self) -> &TlsOptions {
        &self.inner.options
    }

    /// The server config (client certificates mandatory, SPIFFE-verified, rotating SVID).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.inner.server.clone()
    }

    /// The client config that accepts exactly `expected` as the server's identity.
    ///
    /// Configs are cached per set, each with its own resumption cache, so a session resumed
    /// under one set can never satisfy another.
    pub fn client_config(
        &self,
        expected: &ExpectedIdentities,
    ) -> Result<Arc<ClientConfig>, TlsConfigError> {
        let mut cache = self
            .inner
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(config) = cache.get(expected) {
            return Ok(config.clone());
        }
        if cache.len() >= MAX_CLIENT_CONFIGS {
            cache.clear();
        }
        let config = self.build_client_config(expected)?;
        cache.insert(expected.clone(), config.clone());
        Ok(config)
    }

    fn build_client_config(
        &self,
        expected: &ExpectedIdentities,
    ) -> Result<Arc<ClientConfig>, TlsConfigError> {
        let verifier = SpiffeServerVerifier::new(
            PeerVerifier {
                credentials: self.inner.credentials.clone(),
                accepted: self.inner.options.accepted_trust_domains.clone(),
            },
            expected.clone(),
        );
        let mut client = ClientConfig::builder_with_provider(self.inner.provider.clone())
            .with_protocol_versions(versions(&self.inner.options))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(Arc::new(CurrentCert(self.inner.credentials.clone())));
        client.alpn_protocols = self.inner.options.alpn.clone();
        client.enable_sni = false;
        if !self.inner.options.resumption {
            client.resumption = rustls::client::Resumption::disabled();
        }
        Ok(Arc::new(client))
    }

    /// Server side of a handshake: returns the stream and the client's verified SPIFFE ID.
    pub async fn accept<IO>(
        &self,
        io: IO,
    ) -> Result<(tokio_rustls::server::TlsStream<IO>, SpiffeId), HandshakeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.inner.server.clone());
        let limit = self.inner.options.handshake_timeout;
        let stream = tokio::time::timeout(limit, acceptor.accept(io))
            .await
            .map_err(|_| HandshakeError::Timeout { after: limit })?
            .map_err(HandshakeError::from_io)?;
        let peer = peer_spiffe_id(stream.get_ref().1)?;
        Ok((stream, peer))
    }

    /// Client side of a handshake to the server at `server_ip`, accepting only `expected`.
    ///
    /// No SNI is sent. `server_ip` keys the session-resumption cache, so pass the address you
    /// dialed. Returns the stream and the server's verified SPIFFE ID.
    pub async fn connect<IO>(
        &self,
        io: IO,
        server_ip: IpAddr,
        expected: &ExpectedIdentities,
    ) -> Result<(tokio_rustls::client::TlsStream<IO>, SpiffeId), HandshakeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let config = self
            .client_config(expected)
            .map_err(|TlsConfigError::Rustls(e)| HandshakeError::Protocol(e))?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let limit = self.inner.options.handshake_timeout;
        let stream = tokio::time::timeout(
            limit,
            connector.connect(ServerName::IpAddress(server_ip.into()), io),
        )
        .await
        .map_err(|_| HandshakeError::Timeout { after: limit })?
        .map_err(HandshakeError::from_io)?;
        let peer = peer_spiffe_id(stream.get_ref().1)?;
        // A resumed session skips certificate verification; re-check the pin regardless.
        if !expected.allows(&peer) {
            return Err(PeerCertError::UnexpectedIdentity {
                presented: peer,
                expected: expected.ids().to_vec(),
            }
            .into());
        }
        Ok((stream, peer))
    }
}

impl fmt::Debug for MeshTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshTls")
            .field("credentials", &self.inner.credentials)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}
