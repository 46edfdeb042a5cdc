//! Used by clients: verifies the server's SVID and pins it to the expected identity set.

use std::sync::Arc;

use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use webpki::KeyUsage;

use super::{AcceptedTrustDomains, PeerVerifier};
use crate::{ExpectedIdentities, error::PeerCertError};

/// A rustls server-certificate verifier for one expected identity set.
///
/// The server name rustls passes in is ignored: mesh clients send no SNI and DNS/IP SANs play no
/// role. What matters is the SPIFFE ID, which must be in `expected`.
#[derive(Debug)]
pub(crate) struct SpiffeServerVerifier {
    pub(crate) peer: PeerVerifier,
    pub(crate) expected: ExpectedIdentities,
}

impl SpiffeServerVerifier {
    /// An explicit expected set is itself the trust-domain decision: naming
    /// `spiffe://partner.org/...` as the destination accepts partner.org (its bundle must still
    /// be loaded). Only the "any identity" set falls back to the accepted-trust-domain policy.
    pub(crate) fn new(mut peer: PeerVerifier, expected: ExpectedIdentities) -> Arc<Self> {
        if !expected.ids().is_empty() {
            peer.accepted = AcceptedTrustDomains::AnyWithBundle;
        }
        Arc::new(Self { peer, expected })
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let id = self
            .peer
            .verify(end_entity, intermediates, now, KeyUsage::server_auth())
            .map_err(super::to_rustls)?;
        if !self.expected.allows(&id) {
            return Err(super::to_rustls(PeerCertError::UnexpectedIdentity {
                presented: id,
                expected: self.expected.ids().to_vec(),
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        super::verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        super::verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        super::supported_verify_schemes()
    }
}
