//! Workload identity: SPIFFE IDs and the trust domains that scope them.
//!
//! A SPIFFE ID (`spiffe://example.org/ns/shop/sa/orders`) names a workload; its trust domain
//! (`example.org`) names the authority that vouches for it. Every certificate check, authorization
//! rule and pool key in the mesh is expressed with these two types, so they are validated once, at
//! parse time, and are cheap to clone and compare afterwards.

mod error;
mod spiffe_id;
mod trust_domain;

pub use error::SpiffeIdError;
pub(crate) use error::excerpt;
pub use spiffe_id::SpiffeId;
pub use trust_domain::TrustDomain;

/// The longest SPIFFE ID the standard allows, in bytes.
pub const MAX_SPIFFE_ID_LEN: usize = 2048;

/// The longest trust domain name the standard allows, in bytes.
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;
