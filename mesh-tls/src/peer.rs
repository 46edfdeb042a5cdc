//! Reading the verified peer identity off an established connection.

use mesh_core::SpiffeId;
use rustls::CommonState;

use crate::{
    error::PeerCertError,
    x509::{self, LeafId},
};

/// The SPIFFE ID in the peer's leaf certificate on an established connection.
///
/// On connections made with [`MeshTls`](crate::MeshTls) the chain was verified during the
/// handshake, so this is the peer's authenticated identity. Errors only if the peer presented no
/// usable SVID (which a `MeshTls` handshake would already have refused).
pub fn peer_spiffe_id(conn: &CommonState) -> Result<SpiffeId, PeerCertError> {
    let leaf = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or(PeerCertError::NoSpiffeId)?;
    let facts =
        x509::identity_cached(leaf).map_err(|reason| PeerCertError::Malformed { reason })?;
    match x509::leaf_id(&facts.uri_sans) {
        LeafId::One(id) => Ok(id),
        LeafId::None => Err(PeerCertError::NoSpiffeId),
        LeafId::Many(count) => Err(PeerCertError::MultipleUriSans { count }),
        LeafId::Invalid(san, source) => Err(PeerCertError::InvalidSpiffeId { san, source }),
    }
}
