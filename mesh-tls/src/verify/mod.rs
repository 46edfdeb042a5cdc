//! SPIFFE certificate verification for rustls, both directions.
//!
//! Web PKI verification asks "is this certificate valid for this DNS name?". A mesh asks
//! "which SPIFFE ID is this, is its trust domain one we accept, and does the chain lead to *that*
//! trust domain's roots?". [`PeerVerifier`] answers that once for both roles; the
//! [`server_cert`] and [`client_cert`] modules adapt it to rustls's two verifier traits.

pub(crate) mod client_cert;
pub(crate) mod server_cert;

use std::{fmt, sync::Arc};

use mesh_core::{SpiffeId, TrustDomain};
use rustls::{
    CertificateError, DigitallySignedStruct, SignatureScheme,
    client::danger::HandshakeSignatureValid,
};
use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

use crate::{
    Credentials,
    error::PeerCertError,
    provider,
    x509::{self, LeafId},
};

/// Which trust domains a workload accepts peers from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AcceptedTrustDomains {
    /// Only the trust domain of our own SVID (ztunnel's behaviour and the safe default).
    #[default]
    Own,
    /// Any trust domain that has a bundle loaded (federation by bundle).
    AnyWithBundle,
    /// Exactly these trust domains (each still needs a bundle).
    List(Vec<TrustDomain>),
}

/// The verification shared by both TLS roles.
#[derive(Clone)]
pub(crate) struct PeerVerifier {
    pub(crate) credentials: Credentials,
    pub(crate) accepted: AcceptedTrustDomains,
}

impl fmt::Debug for PeerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerVerifier")
            .field("accepted", &self.accepted)
            .finish_non_exhaustive()
    }
}

impl PeerVerifier {
    fn accepts(&self, trust_domain: &str) -> bool {
        match &self.accepted {
            AcceptedTrustDomains::Own => {
                self.credentials.svid().spiffe_id().trust_domain_str() == trust_domain
            }
            AcceptedTrustDomains::AnyWithBundle => true,
            AcceptedTrustDomains::List(list) => list.iter().any(|td| td.as_str() == trust_domain),
        }
    }

    fn accepted_list(&self) -> Vec<TrustDomain> {
        match &self.accepted {
            AcceptedTrustDomains::Own => vec![self.credentials.svid().spiffe_id().trust_domain()],
            AcceptedTrustDomains::AnyWithBundle => self
                .credentials
                .bundles()
                .trust_domains()
                .cloned()
                .collect(),
            AcceptedTrustDomains::List(list) => list.clone(),
        }
    }

    /// Verifies a peer's chain and returns its SPIFFE ID.
    pub(crate) fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: KeyUsage,
    ) -> Result<SpiffeId, PeerCertError> {
        let facts = x509::identity_cached(end_entity)
            .map_err(|reason| PeerCertError::Malformed { reason })?;
        let id = match x509::leaf_id(&facts.uri_sans) {
            LeafId::One(id) => id,
            LeafId::None => return Err(PeerCertError::NoSpiffeId),
            LeafId::Many(count) => return Err(PeerCertError::MultipleUriSans { count }),
            LeafId::Invalid(san, source) => {
                return Err(PeerCertError::InvalidSpiffeId { san, source });
            }
        };
        if facts.is_ca {
            return Err(PeerCertError::LeafIsCa { id });
        }
        if !self.accepts(id.trust_domain_str()) {
            return Err(PeerCertError::TrustDomainNotAccepted {
                accepted: self.accepted_list(),
                id,
            });
        }
        let bundles = self.credentials.bundles();
        let Some(bundle) = bundles.get(id.trust_domain_str()) else {
            return Err(PeerCertError::NoBundle {
                trust_domain: id.trust_domain(),
                id,
            });
        };
        let ee = EndEntityCert::try_from(end_entity).map_err(|e| PeerCertError::Malformed {
            reason: e.to_string(),
        })?;
        ee.verify_for_usage(
            provider().signature_verification_algorithms.all,
            bundle.anchors(),
            intermediates,
            now,
            usage,
            None,
            None,
        )
        .map_err(|e| {
            tracing::debug!(peer = %id, error = %e, "peer certificate chain rejected");
            chain_error(e, &id)
        })?;
        Ok(id)
    }
}

fn chain_error(e: webpki::Error, id: &SpiffeId) -> PeerCertError {
    use webpki::Error as W;
    match e {
        // A same-named issuer whose key did not sign the chain is, to the operator, the same
        // problem as an unknown issuer: the chain does not lead to a root we trust.
        W::UnknownIssuer | W::InvalidSignatureForPublicKey => PeerCertError::UntrustedRoot,
        W::CertExpired { .. } | W::InvalidCertValidity => PeerCertError::Expired,
        W::CertNotValidYet { .. } => PeerCertError::NotYetValid,
        #[allow(deprecated)]
        W::RequiredEkuNotFound => PeerCertError::WrongUsage,
        W::RequiredEkuNotFoundContext(_) => PeerCertError::WrongUsage,
        other => PeerCertError::ChainInvalid {
            id: id.clone(),
            reason: other.to_string(),
        },
    }
}

/// Converts our verdict to the rustls error that makes rustls send the alert ztunnel sends.
pub(crate) fn to_rustls(err: PeerCertError) -> rustls::Error {
    let cert_err = match err {
        PeerCertError::UntrustedRoot => CertificateError::UnknownIssuer,
        PeerCertError::Expired => CertificateError::Expired,
        PeerCertError::NotYetValid => CertificateError::NotValidYet,
        PeerCertError::WrongUsage => CertificateError::InvalidPurpose,
        // Everything else becomes certificate_unknown on the wire; our side keeps the details.
        other => CertificateError::Other(rustls::OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(cert_err)
}

pub(crate) fn verify_tls12_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls12_signature(
        message,
        cert,
        dss,
        &provider().signature_verification_algorithms,
    )
}

pub(crate) fn verify_tls13_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(
        message,
        cert,
        dss,
        &provider().signature_verification_algorithms,
    )
}

pub(crate) fn supported_verify_schemes() -> Vec<SignatureScheme> {
    provider()
        .signature_verification_algorithms
        .supported_schemes()
}
