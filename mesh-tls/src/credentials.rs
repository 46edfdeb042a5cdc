//! The live identity of a workload: its current SVID and trust bundles, swappable at any time.

use std::{fmt, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use rustls::{
    SignatureScheme,
    client::ResolvesClientCert,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use rustls_pki_types::UnixTime;
use tokio::sync::watch;

use crate::{BundleSet, X509Svid};

/// A workload's current SVID and trust bundles, shared by every TLS config built from it.
///
/// Rotation is a single atomic pointer swap ([`set_svid`](Self::set_svid),
/// [`set_bundles`](Self::set_bundles)): handshakes that already started finish with the material
/// they read, new handshakes see the new material, and established connections are untouched.
/// Sources such as the file watcher and the development CA's renewer call these setters.
/// Cloning is cheap and clones share state.
#[derive(Clone)]
pub struct Credentials {
    inner: Arc<Inner>,
}

struct Inner {
    svid: ArcSwap<X509Svid>,
    bundles: ArcSwap<BundleSet>,
    generation: watch::Sender<u64>,
}

impl Credentials {
    /// Starts with an SVID and the bundles used to verify peers.
    pub fn new(svid: X509Svid, bundles: BundleSet) -> Self {
        let (generation, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                svid: ArcSwap::from_pointee(svid),
                bundles: ArcSwap::from_pointee(bundles),
                generation,
            }),
        }
    }

    /// The SVID presented in new handshakes.
    pub fn svid(&self) -> Arc<X509Svid> {
        self.inner.svid.load_full()
    }

    /// The bundles used to verify peers in new handshakes.
    pub fn bundles(&self) -> Arc<BundleSet> {
        self.inner.bundles.load_full()
    }

    /// Replaces the SVID; new handshakes present it from now on.
    pub fn set_svid(&self, svid: X509Svid) {
        tracing::info!(id = %svid.spiffe_id(), not_after = svid.not_after().as_secs(), "SVID rotated");
        self.inner.svid.store(Arc::new(svid));
        self.bump();
    }

    /// Replaces the trust bundles; new handshakes verify against them from now on.
    pub fn set_bundles(&self, bundles: BundleSet) {
        tracing::info!(
            trust_domains = bundles.trust_domains().count(),
            "trust bundles rotated"
        );
        self.inner.bundles.store(Arc::new(bundles));
        self.bump();
    }

    fn bump(&self) {
        self.inner.generation.send_modify(|g| *g += 1);
    }

    /// A receiver that changes every time the SVID or bundles are replaced (for metrics, or to
    /// recycle long-lived connections after a CA change).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }

    /// How many times material has been replaced since creation.
    pub fn generation(&self) -> u64 {
        *self.inner.generation.borrow()
    }

    /// Time until the current SVID expires, for expiry metrics and alerts.
    pub fn time_to_expiry(&self) -> Duration {
        self.svid().time_to_expiry(UnixTime::now())
    }

    pub(crate) fn certified_key(&self) -> Arc<CertifiedKey> {
        self.inner.svid.load().certified_key().clone()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("svid", &self.svid())
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

/// Presents the current SVID to clients (server side).
#[derive(Debug)]
pub(crate) struct CurrentCert(pub(crate) Credentials);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.certified_key())
    }
}

impl ResolvesClientCert for CurrentCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.certified_key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
