//! Trust bundles: the root certificates that vouch for each trust domain.

use std::{collections::HashMap, path::Path, sync::Arc};

use mesh_core::TrustDomain;
use rustls_pki_types::{CertificateDer, TrustAnchor};

use crate::{error::BundleError, pem};

/// The roots of one trust domain.
///
/// A peer claiming an ID in this trust domain must chain to one of these roots. Holding several
/// roots is how a CA rotation is done without downtime: publish old + new, rotate leaves, then
/// drop the old root.
#[derive(Clone, Debug)]
pub struct TrustBundle {
    trust_domain: TrustDomain,
    roots: Arc<[CertificateDer<'static>]>,
    anchors: Arc<[TrustAnchor<'static>]>,
}

impl TrustBundle {
    /// Builds a bundle from DER roots.
    pub fn new(
        trust_domain: TrustDomain,
        roots: Vec<CertificateDer<'static>>,
    ) -> Result<Self, BundleError> {
        let anchors = roots
            .iter()
            .enumerate()
            .map(|(index, root)| {
                webpki::anchor_from_trusted_cert(root)
                    .map(|a| a.to_owned())
                    .map_err(|e| BundleError::BadAnchor {
                        trust_domain: trust_domain.clone(),
                        index,
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            trust_domain,
            roots: roots.into(),
            anchors: anchors.into(),
        })
    }

    /// Builds a bundle from PEM text holding one or more `CERTIFICATE` blocks.
    pub fn from_pem(trust_domain: TrustDomain, pem_text: &[u8]) -> Result<Self, BundleError> {
        let what = format!("the trust bundle for {trust_domain}");
        Self::new(trust_domain, pem::parse_certificates(pem_text, &what)?)
    }

    /// Loads a bundle from a PEM file.
    pub fn load(trust_domain: TrustDomain, path: &Path) -> Result<Self, BundleError> {
        let certs = pem::parse_certificates(&pem::read_file(path)?, &path.display().to_string())?;
        Self::new(trust_domain, certs)
    }

    /// The trust domain these roots vouch for.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The root certificates.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// The roots as PEM, as written to `bundle.pem`.
    pub fn to_pem(&self) -> String {
        self.roots
            .iter()
            .map(|c| pem::encode("CERTIFICATE", c.as_ref()))
            .collect()
    }

    pub(crate) fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }
}

/// Trust bundles for every trust domain this workload can verify (its own and federated ones).
///
/// Verification picks the bundle by the trust domain in the peer's SPIFFE ID, so a root of one
/// domain can never vouch for an ID in another.
#[derive(Clone, Debug, Default)]
pub struct BundleSet {
    bundles: HashMap<TrustDomain, TrustBundle>,
}

impl BundleSet {
    /// An empty set, which trusts nobody.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set with one bundle.
    pub fn single(bundle: TrustBundle) -> Self {
        let mut set = Self::new();
        set.insert(bundle);
        set
    }

    /// Adds or replaces the bundle for its trust domain.
    pub fn insert(&mut self, bundle: TrustBundle) {
        self.bundles.insert(bundle.trust_domain.clone(), bundle);
    }

    /// Builder-style [`insert`](Self::insert).
    #[must_use]
    pub fn with(mut self, bundle: TrustBundle) -> Self {
        self.insert(bundle);
        self
    }

    /// The bundle for a trust domain.
    pub fn get(&self, trust_domain: &str) -> Option<&TrustBundle> {
        self.bundles.get(trust_domain)
    }

    /// The trust domains that have a bundle.
    pub fn trust_domains(&self) -> impl Iterator<Item = &TrustDomain> {
        self.bundles.keys()
    }

    /// Whether no bundle is loaded.
    pub fn is_empty(&self) -> bool {
        self.bundles.is_empty()
    }
}
