//! The set of server identities a client accepts for one destination.

use std::{fmt, sync::Arc};

use mesh_core::SpiffeId;

/// Which SPIFFE IDs a client accepts from the server it dials.
///
/// In a mesh the client knows whom it means to reach: the destination workload's identity, plus
/// any identities the service allows. A valid certificate for anyone else is rejected in the
/// handshake ([`PeerCertError::UnexpectedIdentity`](crate::PeerCertError::UnexpectedIdentity)).
/// The set is sorted and deduplicated, so equal sets compare and hash equal (it is part of the
/// connection-pool key).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ExpectedIdentities {
    ids: Arc<[SpiffeId]>,
    any: bool,
}

impl ExpectedIdentities {
    /// Accepts exactly these identities.
    pub fn new(ids: impl IntoIterator<Item = SpiffeId>) -> Self {
        let mut ids: Vec<SpiffeId> = ids.into_iter().collect();
        ids.sort();
        ids.dedup();
        Self {
            ids: ids.into(),
            any: false,
        }
    }

    /// Accepts exactly one identity.
    pub fn one(id: SpiffeId) -> Self {
        Self::new([id])
    }

    /// Accepts any identity in an accepted trust domain.
    ///
    /// This gives up destination pinning (anyone holding a valid SVID can answer), so use it only
    /// for tooling and diagnostics, never for service traffic.
    pub fn any_in_accepted_trust_domains() -> Self {
        Self {
            ids: Arc::new([]),
            any: true,
        }
    }

    /// Whether `id` is acceptable.
    pub fn allows(&self, id: &SpiffeId) -> bool {
        self.any || self.ids.binary_search(id).is_ok()
    }

    /// The accepted identities (empty for the "any" set).
    pub fn ids(&self) -> &[SpiffeId] {
        &self.ids
    }
}

impl fmt::Debug for ExpectedIdentities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.any {
            return f.write_str("ExpectedIdentities(any)");
        }
        f.debug_list().entries(self.ids.iter()).finish()
    }
}
