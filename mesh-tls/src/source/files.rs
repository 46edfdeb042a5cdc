//! SVID and bundles from PEM files, reloaded when the files change.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use mesh_core::TrustDomain;
use rustls_pki_types::UnixTime;
use thiserror::Error;

use super::{SourceHandle, Status, record};
use crate::{
    BundleSet, Credentials, TrustBundle, X509Svid,
    error::{BundleError, PeerCertError, SvidError},
    pem,
    verify::{AcceptedTrustDomains, PeerVerifier},
};

/// Why the files could not be turned into credentials.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FileSourceError {
    /// The SVID files are invalid.
    #[error("SVID: {0}")]
    Svid(#[from] SvidError),
    /// A bundle file is invalid.
    #[error("trust bundle: {0}")]
    Bundle(#[from] BundleError),
    /// The SVID does not chain to its own trust domain's bundle.
    #[error(
        "the SVID does not verify against its own trust bundle ({0}); if a CA rotation is in progress, update the bundle first"
    )]
    NotTrusted(PeerCertError),
}

/// PEM files holding a workload's SVID and trust bundles (the layout SPIRE's and Istio's agents
/// write, and `meshctl ca issue` produces).
#[derive(Clone, Debug)]
pub struct FileSource {
    /// Certificate chain, leaf first (`svid.pem`).
    pub cert: PathBuf,
    /// Private key (`svid.key`).
    pub key: PathBuf,
    /// Roots of the workload's own trust domain (`bundle.pem`).
    pub bundle: PathBuf,
    /// Bundles of federated trust domains.
    pub federated: Vec<(TrustDomain, PathBuf)>,
}

impl FileSource {
    /// The conventional files in `dir`: `svid.pem`, `svid.key`, `bundle.pem`.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        use crate::dev_ca::files;
        Self {
            cert: dir.join(files::SVID_CERT),
            key: dir.join(files::SVID_KEY),
            bundle: dir.join(files::BUNDLE),
            federated: Vec::new(),
        }
    }

    /// Reads and validates everything once. The SVID must verify against its own bundle.
    pub fn load(&self) -> Result<(X509Svid, BundleSet), FileSourceError> {
        let svid = X509Svid::load(&self.cert, &self.key)?;
        let own = svid.spiffe_id().trust_domain();
        let mut bundles = BundleSet::single(TrustBundle::load(own, &self.bundle)?);
        for (td, path) in &self.federated {
            bundles.insert(TrustBundle::load(td.clone(), path)?);
        }
        check_self_trust(&svid, &bundles)?;
        Ok((svid, bundles))
    }

    /// Loads once into new [`Credentials`].
    pub fn credentials(&self) -> Result<Credentials, FileSourceError> {
        let (svid, bundles) = self.load()?;
        Ok(Credentials::new(svid, bundles))
    }

    /// Polls the files every `interval` and swaps changed, valid material into `credentials`.
    ///
    /// Files are compared by content, so editors and `mv`-style atomic replacement both work. A
    /// change that does not validate (say the key was replaced but not yet the certificate) is
    /// retried on the next poll while the old material stays in use. Must be called inside a
    /// tokio runtime; the task stops when the returned handle is dropped.
    pub fn watch(self, credentials: Credentials, interval: Duration) -> SourceHandle {
        let status = Arc::new(Mutex::new(Status::default()));
        let task_status = status.clone();
        let task = tokio::spawn(async move {
            // `None` makes the first poll load and compare, which closes the window between
            // whoever loaded `credentials` and this task starting.
            let mut last = None;
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let now = self.snapshot();
                if last.as_ref() == Some(&now) {
                    continue;
                }
                match self.load() {
                    Ok((svid, bundles)) => {
                        if !same_bundles(&credentials.bundles(), &bundles) {
                            credentials.set_bundles(bundles);
                        }
                        if credentials.svid().chain() != svid.chain() {
                            credentials.set_svid(svid);
                            record(&task_status, Ok(()));
                        } else {
                            record_ok_quietly(&task_status);
                        }
                        last = Some(now);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "credential files changed but are not usable yet; keeping the previous SVID");
                        record(&task_status, Err(e.to_string()));
                    }
                }
            }
        });
        SourceHandle::new(task, status)
    }

    fn snapshot(&self) -> Vec<Option<Vec<u8>>> {
        std::iter::once(&self.cert)
            .chain([&self.key, &self.bundle])
            .chain(self.federated.iter().map(|(_, p)| p))
            .map(|p| pem::read_file(p).ok())
            .collect()
    }
}

fn same_bundles(a: &BundleSet, b: &BundleSet) -> bool {
    let mut tds: Vec<_> = a.trust_domains().collect();
    tds.sort();
    let mut other: Vec<_> = b.trust_domains().collect();
    other.sort();
    tds == other
        && tds.iter().all(|td| {
            a.get(td.as_str()).map(|x| x.roots()) == b.get(td.as_str()).map(|x| x.roots())
        })
}

fn record_ok_quietly(status: &Mutex<Status>) {
    status
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .last_error = None;
}

/// Verifies that an SVID chains to the bundle of its own trust domain.
pub(crate) fn check_self_trust(
    svid: &X509Svid,
    bundles: &BundleSet,
) -> Result<(), FileSourceError> {
    let verifier = PeerVerifier {
        credentials: Credentials::new(svid.clone(), bundles.clone()),
        accepted: AcceptedTrustDomains::Own,
    };
    let chain = svid.chain();
    verifier
        .verify(
            &chain[0],
            &chain[1..],
            UnixTime::now(),
            webpki::KeyUsage::client_auth(),
        )
        .map(|_| ())
        .map_err(FileSourceError::NotTrusted)
}
