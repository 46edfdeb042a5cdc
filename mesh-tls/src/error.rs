//! Typed errors. Each names what was wrong and what the operator should check.

use std::{io, path::PathBuf, time::Duration};

use mesh_core::{SpiffeId, SpiffeIdError, TrustDomain};
use rustls::AlertDescription;
use thiserror::Error;

/// A PEM document could not be read or holds the wrong things.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PemError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The document is not valid PEM (bad base64, a BEGIN without END, ...).
    #[error("{what} is not valid PEM: {reason}; check that the file is complete and not truncated")]
    Malformed {
        /// What was being read (a path or a description).
        what: String,
        /// The parser's reason.
        reason: String,
    },
    /// No `CERTIFICATE` block was found.
    #[error("{what} contains no PEM \"CERTIFICATE\" block")]
    NoCertificates {
        /// What was being read.
        what: String,
    },
    /// No private key block was found.
    #[error(
        "{what} contains no private key (expected a PEM \"PRIVATE KEY\", \"EC PRIVATE KEY\" or \"RSA PRIVATE KEY\" block)"
    )]
    NoPrivateKey {
        /// What was being read.
        what: String,
    },
    /// More than one private key was found, so which one to use is ambiguous.
    #[error("{what} contains {count} private keys; an SVID key file must hold exactly one")]
    MultipleKeys {
        /// What was being read.
        what: String,
        /// How many keys were found.
        count: usize,
    },
}

/// A certificate chain and key do not form a valid SPIFFE X.509-SVID.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SvidError {
    /// Reading the PEM failed.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// A certificate in the chain is not parseable X.509.
    #[error("certificate #{index} in the chain is not valid X.509: {reason}")]
    BadCertificate {
        /// Position in the chain (0 = leaf).
        index: usize,
        /// The parser's reason.
        reason: String,
    },
    /// The leaf has no URI SAN.
    #[error(
        "the leaf certificate has no URI SAN; an SVID must carry exactly one spiffe:// URI SAN"
    )]
    NoUriSan,
    /// The leaf has more than one URI SAN.
    #[error("the leaf certificate has {} URI SANs ({}); an SVID must carry exactly one", .sans.len(), .sans.join(", "))]
    MultipleUriSans {
        /// The URI SANs found.
        sans: Vec<String>,
    },
    /// The URI SAN is not a valid SPIFFE ID.
    #[error("the leaf certificate's URI SAN {san:?} is not a valid SPIFFE ID: {source}")]
    InvalidSpiffeId {
        /// The URI SAN as found.
        san: String,
        /// Why it is invalid.
        source: SpiffeIdError,
    },
    /// The leaf is a CA certificate.
    #[error(
        "the leaf certificate is a CA certificate (basicConstraints CA=true); an SVID leaf must not be a CA"
    )]
    LeafIsCa,
    /// The leaf's key usage lacks digitalSignature.
    #[error("the leaf certificate's keyUsage lacks digitalSignature, which an X.509-SVID requires")]
    NoDigitalSignature,
    /// A certificate after the leaf is not a CA.
    #[error("certificate #{index} in the chain is not a CA, so it cannot be an intermediate")]
    IntermediateNotCa {
        /// Position in the chain.
        index: usize,
    },
    /// The private key type is not supported.
    #[error("unsupported private key: {reason}; use an ECDSA P-256/P-384, Ed25519 or RSA key")]
    UnsupportedKey {
        /// The crypto provider's reason.
        reason: String,
    },
    /// The private key does not belong to the leaf certificate.
    #[error(
        "the private key does not match the leaf certificate's public key; check that the key and certificate files belong together"
    )]
    KeyMismatch,
}

/// A trust bundle could not be built.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BundleError {
    /// Reading the PEM failed.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// A certificate is not usable as a trust anchor.
    #[error(
        "bundle certificate #{index} for trust domain {trust_domain} is not a usable trust anchor: {reason}"
    )]
    BadAnchor {
        /// The trust domain the bundle is for.
        trust_domain: TrustDomain,
        /// Position in the bundle.
        index: usize,
        /// Why.
        reason: String,
    },
}

/// Why a peer's certificate was rejected during a handshake.
///
/// Returned inside [`HandshakeError::PeerCertificate`] on the side that did the rejecting.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerCertError {
    /// The peer's certificate is not parseable X.509.
    #[error("the peer's certificate is malformed: {reason}")]
    Malformed {
        /// The parser's reason.
        reason: String,
    },
    /// The peer's leaf has no SPIFFE ID.
    #[error("the peer's certificate has no URI SAN, so it carries no SPIFFE identity")]
    NoSpiffeId,
    /// The peer's leaf has several URI SANs.
    #[error("the peer's certificate has {count} URI SANs; an X.509-SVID must carry exactly one")]
    MultipleUriSans {
        /// How many.
        count: usize,
    },
    /// The peer's URI SAN is not a valid SPIFFE ID.
    #[error("the peer's URI SAN {san:?} is not a valid SPIFFE ID: {source}")]
    InvalidSpiffeId {
        /// The SAN.
        san: String,
        /// Why.
        source: SpiffeIdError,
    },
    /// The peer's leaf is a CA certificate.
    #[error("the peer ({id}) presented a CA certificate as its leaf; SVID leaves must not be CAs")]
    LeafIsCa {
        /// The SPIFFE ID it claimed.
        id: SpiffeId,
    },
    /// The peer's trust domain is not one this side accepts.
    #[error("the peer {id} is in trust domain {}, which is not accepted here (accepted: {}); add it to the accepted trust domains if it should be trusted", .id.trust_domain_str(), display_list(.accepted))]
    TrustDomainNotAccepted {
        /// The peer's SPIFFE ID.
        id: SpiffeId,
        /// The trust domains this side accepts.
        accepted: Vec<TrustDomain>,
    },
    /// The peer's trust domain is accepted but no bundle for it is loaded.
    #[error(
        "no trust bundle is loaded for trust domain {trust_domain} (peer {id}); load that domain's bundle"
    )]
    NoBundle {
        /// The peer's SPIFFE ID.
        id: SpiffeId,
        /// Its trust domain.
        trust_domain: TrustDomain,
    },
    // The next four are signalled with TLS's own alerts (unknown_ca, certificate_expired,
    // unsupported_certificate) exactly as ztunnel does, so they travel through rustls's standard
    // error values and carry no SPIFFE ID; the verifier logs the ID at debug level.
    /// The chain does not lead to a root in the bundle of the peer's trust domain.
    #[error(
        "the peer's certificate chain is not signed by any root in the bundle of its trust domain; check that both sides use the same CA"
    )]
    UntrustedRoot,
    /// A certificate in the chain has expired.
    #[error("the peer's certificate has expired; renew it (and check both clocks)")]
    Expired,
    /// A certificate in the chain is not yet valid.
    #[error("the peer's certificate is not valid yet; check both clocks")]
    NotYetValid,
    /// The certificate may not be used for this side of TLS (extendedKeyUsage).
    #[error(
        "the peer's certificate is not valid for this TLS role (its extendedKeyUsage lacks clientAuth/serverAuth)"
    )]
    WrongUsage,
    /// The chain failed verification for another reason.
    #[error("the peer {id}'s certificate chain failed verification: {reason}")]
    ChainInvalid {
        /// The SPIFFE ID it claimed.
        id: SpiffeId,
        /// The verifier's reason.
        reason: String,
    },
    /// The server's identity is valid but not one the client expected for this destination.
    #[error("the server presented {presented}, but this destination expects {}; the address may belong to another workload", display_list(.expected))]
    UnexpectedIdentity {
        /// What the server presented.
        presented: SpiffeId,
        /// What the client would have accepted.
        expected: Vec<SpiffeId>,
    },
}

fn display_list<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "none".to_owned();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A TLS handshake failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The handshake did not finish in time.
    #[error(
        "TLS handshake did not complete within {after:?}; the peer may be stalled or not speaking TLS"
    )]
    Timeout {
        /// The limit that was exceeded.
        after: Duration,
    },
    /// This side rejected the peer's certificate.
    #[error("rejected the peer's certificate: {0}")]
    PeerCertificate(#[from] PeerCertError),
    /// The peer did not present a certificate although one is required.
    #[error("the peer presented no client certificate; mutual TLS requires one")]
    NoClientCertificate,
    /// The peer rejected this side (it sent a fatal alert).
    #[error("the peer rejected the handshake with alert {alert:?}: {hint}")]
    RejectedByPeer {
        /// The alert the peer sent.
        alert: AlertDescription,
        /// What that alert usually means in a mesh.
        hint: &'static str,
    },
    /// No local identity is available to present.
    #[error("no local SVID is loaded, so there is no certificate to present")]
    NoLocalIdentity,
    /// Another TLS protocol failure (version, cipher, ALPN mismatch, bad record...).
    #[error("TLS protocol error: {0}")]
    Protocol(rustls::Error),
    /// The transport failed.
    #[error("I/O error during TLS handshake: {0}")]
    Io(io::Error),
}

impl HandshakeError {
    /// Classifies the `io::Error` that tokio-rustls returns for a failed handshake.
    pub fn from_io(err: io::Error) -> Self {
        let Some(inner) = err.get_ref() else {
            return Self::Io(err);
        };
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return Self::from_rustls(tls.clone());
        }
        // Layers above TLS (HTTP/2 shares one connection error among its streams) re-create
        // the io::Error from its message, dropping the typed rustls error. Recover the alert.
        if let Some(alert) = err
            .to_string()
            .strip_prefix("received fatal alert: ")
            .and_then(alert_from_name)
        {
            return Self::RejectedByPeer {
                alert,
                hint: alert_hint(alert),
            };
        }
        Self::Io(err)
    }

    /// Classifies a rustls error into the mesh's vocabulary.
    pub fn from_rustls(err: rustls::Error) -> Self {
        use rustls::{CertificateError as C, Error as E};
        match err {
            E::InvalidCertificate(C::UnknownIssuer) => {
                Self::PeerCertificate(PeerCertError::UntrustedRoot)
            }
            E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
                Self::PeerCertificate(PeerCertError::Expired)
            }
            E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
                Self::PeerCertificate(PeerCertError::NotYetValid)
            }
            E::InvalidCertificate(C::InvalidPurpose | C::InvalidPurposeContext { .. }) => {
                Self::PeerCertificate(PeerCertError::WrongUsage)
            }
            E::InvalidCertificate(C::Other(other)) => {
                match other.0.downcast_ref::<PeerCertError>() {
                    Some(e) => Self::PeerCertificate(e.clone()),
                    None => Self::Protocol(E::InvalidCertificate(C::Other(other))),
                }
            }
            E::NoCertificatesPresented => Self::NoClientCertificate,
            E::AlertReceived(alert) => Self::RejectedByPeer {
                alert,
                hint: alert_hint(alert),
            },
            other => Self::Protocol(other),
        }
    }

    /// Whether this failure is worth retrying against the same peer.
    ///
    /// Certificate and policy rejections will fail again the same way; timeouts and I/O may not.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Timeout { .. } | Self::Io(_))
    }
}

/// Parses the `Debug` name rustls prints for an alert (for example `UnknownCA`).
fn alert_from_name(name: &str) -> Option<AlertDescription> {
    use AlertDescription as A;
    Some(match name.trim() {
        "UnknownCA" => A::UnknownCA,
        "CertificateUnknown" => A::CertificateUnknown,
        "CertificateExpired" => A::CertificateExpired,
        "CertificateRequired" => A::CertificateRequired,
        "CertificateRevoked" => A::CertificateRevoked,
        "BadCertificate" => A::BadCertificate,
        "UnsupportedCertificate" => A::UnsupportedCertificate,
        "HandshakeFailure" => A::HandshakeFailure,
        "AccessDenied" => A::AccessDenied,
        "DecryptError" => A::DecryptError,
        "DecodeError" => A::DecodeError,
        "IllegalParameter" => A::IllegalParameter,
        "NoApplicationProtocol" => A::NoApplicationProtocol,
        "ProtocolVersion" => A::ProtocolVersion,
        "InternalError" => A::InternalError,
        _ => return None,
    })
}

fn alert_hint(alert: AlertDescription) -> &'static str {
    match alert {
        AlertDescription::UnknownCA => {
            "the peer does not trust the CA that issued our certificate; check its trust bundle"
        }
        AlertDescription::CertificateUnknown => {
            "the peer rejected our identity (foreign trust domain, not the expected SPIFFE ID, or not an SVID)"
        }
        AlertDescription::CertificateExpired => {
            "the peer considers our certificate expired or not yet valid; check rotation and clocks"
        }
        AlertDescription::CertificateRequired | AlertDescription::HandshakeFailure => {
            "the peer requires a client certificate or shares no parameters with us"
        }
        AlertDescription::NoApplicationProtocol => "the peer does not speak ALPN h2",
        AlertDescription::ProtocolVersion => "the peer does not accept our TLS version",
        AlertDescription::BadCertificate | AlertDescription::UnsupportedCertificate => {
            "the peer found our certificate malformed or unusable"
        }
        _ => "see the peer's logs for the reason",
    }
}

/// The development CA could not perform an operation.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CaError {
    /// Key or certificate generation failed.
    #[error("development CA could not {action}: {reason}")]
    Generate {
        /// What it was doing.
        action: &'static str,
        /// The underlying reason.
        reason: String,
    },
    /// The CA was asked for an ID outside its trust domain.
    #[error("this CA issues for trust domain {ca}, not for {id}")]
    ForeignTrustDomain {
        /// The CA's trust domain.
        ca: TrustDomain,
        /// The requested ID.
        id: SpiffeId,
    },
    /// The requested ID names the trust domain itself, not a workload.
    #[error(
        "{id} has no path, so it names the whole trust domain; issue SVIDs for workload IDs such as {id}/ns/default/sa/web"
    )]
    TrustDomainId {
        /// The requested ID.
        id: SpiffeId,
    },
    /// The requested lifetime ends after the CA's own certificate does.
    #[error(
        "the requested lifetime ends after the CA certificate expires (at {ca_not_after} seconds since the Unix epoch); choose a shorter TTL or a new CA"
    )]
    OutlivesCa {
        /// The CA's notAfter, seconds since the Unix epoch.
        ca_not_after: u64,
    },
    /// Reading or writing CA files failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// "read" or "write".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// Loaded CA material is invalid.
    #[error("the CA in {what} is unusable: {reason}")]
    Invalid {
        /// Where it was loaded from.
        what: String,
        /// Why.
        reason: String,
    },
    /// An issued certificate failed validation (a bug or a bad TTL).
    #[error(transparent)]
    Svid(#[from] SvidError),
    /// Building the bundle failed.
    #[error(transparent)]
    Bundle(#[from] BundleError),
}
