//! X.509 SVIDs: a workload's certificate chain and private key, validated as SPIFFE requires.

use std::{fmt, path::Path, sync::Arc, time::Duration};

use mesh_core::SpiffeId;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use crate::{
    error::SvidError,
    pem, provider,
    x509::{self, LeafId},
};

/// A workload's X.509 SVID: leaf certificate, intermediates and private key.
///
/// Construction validates everything an X.509-SVID must satisfy (exactly one URI SAN holding a
/// SPIFFE ID, leaf not a CA, `digitalSignature` key usage, intermediates are CAs, the key matches
/// the leaf), so a value of this type can always be presented in a handshake. Cloning is cheap.
#[derive(Clone)]
pub struct X509Svid {
    inner: Arc<Inner>,
}

struct Inner {
    id: SpiffeId,
    certified_key: Arc<CertifiedKey>,
    key_der: PrivateKeyDer<'static>,
    not_before: UnixTime,
    not_after: UnixTime,
}

impl X509Svid {
    /// Builds an SVID from DER: `chain[0]` is the leaf, followed by any intermediates.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, SvidError> {
        let leaf = chain.first().ok_or_else(|| {
            SvidError::Pem(crate::error::PemError::NoCertificates {
                what: "the SVID chain".to_owned(),
            })
        })?;
        let facts =
            x509::parse(leaf).map_err(|reason| SvidError::BadCertificate { index: 0, reason })?;
        let id = match x509::leaf_id(&facts.uri_sans) {
            LeafId::One(id) => id,
            LeafId::None => return Err(SvidError::NoUriSan),
            LeafId::Many(_) => {
                return Err(SvidError::MultipleUriSans {
                    sans: facts.uri_sans.clone(),
                });
            }
            LeafId::Invalid(san, source) => return Err(SvidError::InvalidSpiffeId { san, source }),
        };
        if facts.is_ca {
            return Err(SvidError::LeafIsCa);
        }
        if facts.digital_signature == Some(false) {
            return Err(SvidError::NoDigitalSignature);
        }
        for (index, cert) in chain.iter().enumerate().skip(1) {
            let f =
                x509::parse(cert).map_err(|reason| SvidError::BadCertificate { index, reason })?;
            if !f.is_ca {
                return Err(SvidError::IntermediateNotCa { index });
            }
        }
        let signing_key = provider()
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| SvidError::UnsupportedKey {
                reason: e.to_string(),
            })?;
        let certified_key = CertifiedKey::new(chain, signing_key);
        match certified_key.keys_match() {
            Ok(()) => {}
            Err(rustls::Error::InconsistentKeys(_)) => return Err(SvidError::KeyMismatch),
            // The public key could not be extracted for comparison; treat it as unusable.
            Err(e) => {
                return Err(SvidError::UnsupportedKey {
                    reason: e.to_string(),
                });
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                id,
                certified_key: Arc::new(certified_key),
                key_der: key,
                not_before: facts.not_before,
                not_after: facts.not_after,
            }),
        })
    }

    /// Builds an SVID from PEM text: the certificate chain (leaf first) and the private key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, SvidError> {
        let chain = pem::parse_certificates(cert_pem, "the SVID certificate PEM")?;
        let key = pem::parse_private_key(key_pem, "the SVID key PEM")?;
        Self::from_der(chain, key)
    }

    /// Loads an SVID from a certificate-chain file and a key file.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, SvidError> {
        let chain = pem::parse_certificates(
            &pem::read_file(cert_path)?,
            &cert_path.display().to_string(),
        )?;
        let key =
            pem::parse_private_key(&pem::read_file(key_path)?, &key_path.display().to_string())?;
        Self::from_der(chain, key)
    }

    /// The workload's SPIFFE ID, from the leaf's URI SAN.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.inner.id
    }

    /// The chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.inner.certified_key.cert
    }

    /// The private key in DER form.
    pub fn private_key(&self) -> &PrivateKeyDer<'static> {
        &self.inner.key_der
    }

    /// The leaf's notBefore.
    pub fn not_before(&self) -> UnixTime {
        self.inner.not_before
    }

    /// The leaf's notAfter.
    pub fn not_after(&self) -> UnixTime {
        self.inner.not_after
    }

    /// Time left until the leaf expires (zero once it has), for expiry metrics and renewal.
    pub fn time_to_expiry(&self, now: UnixTime) -> Duration {
        Duration::from_secs(self.inner.not_after.as_secs().saturating_sub(now.as_secs()))
    }

    /// The instant at which half the leaf's lifetime has passed: when renewal should happen.
    pub fn half_life(&self) -> UnixTime {
        let start = self.inner.not_before.as_secs();
        let end = self.inner.not_after.as_secs().max(start);
        UnixTime::since_unix_epoch(Duration::from_secs(start + (end - start) / 2))
    }

    /// The chain as PEM (leaf first), as written to `svid.pem`.
    pub fn chain_pem(&self) -> String {
        self.chain()
            .iter()
            .map(|c| pem::encode("CERTIFICATE", c.as_ref()))
            .collect()
    }

    /// The private key as PEM, as written to `svid.key`.
    pub fn key_pem(&self) -> String {
        let label = match &self.inner.key_der {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        pem::encode(label, self.inner.key_der.secret_der())
    }

    pub(crate) fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.inner.certified_key
    }
}

impl fmt::Debug for X509Svid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509Svid")
            .field("id", &self.inner.id)
            .field("chain_len", &self.chain().len())
            .field("not_after", &self.inner.not_after.as_secs())
            .finish_non_exhaustive()
    }
}
