//! Workload identity on the wire: SPIFFE X.509 SVIDs, trust bundles, and mutual TLS.
//!
//! This crate turns a [`SpiffeId`](mesh_core::SpiffeId) into something two workloads can prove to
//! each other, with rustls (aws-lc-rs provider) configured the way Istio's ztunnel is: TLS 1.3,
//! AES-GCM suites, X25519 first, ALPN `h2`, no SNI, client certificates mandatory.
//!
//! - [`X509Svid`] and [`TrustBundle`]/[`BundleSet`]: loaded from PEM (PKCS#8, SEC1, PKCS#1 keys;
//!   chains with intermediates) and validated as the X.509-SVID standard requires.
//! - [`Credentials`]: the current SVID and bundles, swapped atomically on rotation.
//! - [`MeshTls`]: server and client configs with SPIFFE verification. The server verifies the
//!   client's chain against the bundle of the client's trust domain; the client additionally pins
//!   the server to an [`ExpectedIdentities`] set. Handshakes return the peer's verified ID and
//!   fail with a typed [`HandshakeError`].
//! - [`DevCa`]: a development CA, the embedded default when no external CA exists.
//! - [`source`]: keeping credentials fresh from files on disk or from the dev CA.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use mesh_tls::{DevCa, ExpectedIdentities, MeshTls, TlsOptions};
//!
//! let ca = DevCa::generate("example.org".parse()?)?;
//! let server_id = "spiffe://example.org/ns/shop/sa/api".parse()?;
//! let client_id = "spiffe://example.org/ns/shop/sa/web".parse()?;
//! let server = MeshTls::new(ca.credentials(&server_id, Duration::from_secs(3600))?, TlsOptions::default())?;
//! let client = MeshTls::new(ca.credentials(&client_id, Duration::from_secs(3600))?, TlsOptions::default())?;
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let accept = tokio::spawn(async move {
//!     let (tcp, _) = listener.accept().await?;
//!     let (_stream, peer) = server.accept(tcp).await?;
//!     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(peer)
//! });
//! let tcp = tokio::net::TcpStream::connect(addr).await?;
//! let (_stream, peer) = client.connect(tcp, addr.ip(), &ExpectedIdentities::one(server_id.clone())).await?;
//! assert_eq!(peer, server_id);
//! assert_eq!(accept.await?.map_err(|e| e.to_string())?, client_id);
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! Non-goals: HTTP, services and policy (those live in `mesh-client` and `mesh-policy`).
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod bundle;
mod config;
mod credentials;
pub mod dev_ca;
mod error;
mod expected;
mod peer;
pub mod pem;
pub mod source;
mod svid;
mod verify;
mod x509;

use std::sync::{Arc, OnceLock};

pub use bundle::{BundleSet, TrustBundle};
pub use config::{ALPN_H2, MeshTls, TlsConfigError, TlsOptions};
pub use credentials::Credentials;
pub use dev_ca::{DevCa, write_svid};
pub use error::{BundleError, CaError, HandshakeError, PeerCertError, PemError, SvidError};
pub use expected::ExpectedIdentities;
pub use peer::peer_spiffe_id;
pub use svid::X509Svid;
pub use verify::AcceptedTrustDomains;

/// Re-exported because [`inspect::inspect_pem`] and [`X509Svid`] speak in it.
pub use rustls_pki_types::UnixTime;

/// The aws-lc-rs crypto provider used for key loading and signature verification.
pub(crate) fn provider() -> &'static Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

pub mod inspect;
