//! Istio `PeerAuthentication` (`security.istio.io/v1` and `v1beta1`): which inbound
//! connections must be mutually authenticated, per workload and port.
//!
//! 1. [`parse_peer_authentications`] reads the documents strictly (multi-document YAML,
//!    unknown fields and values istiod refuses are [`PolicyError`](crate::authz::PolicyError)s
//!    naming document, policy and field path; the loader is AuthorizationPolicy's).
//! 2. [`PeerAuthenticator::new`] resolves them for one [`Workload`](crate::authz::Workload)
//!    as istiod does: mesh-wide (root namespace, `istio-system` unless configured with
//!    [`Workload::with_root_namespace`](crate::authz::Workload::with_root_namespace)) <
//!    namespace-wide < workload selector; `UNSET` inherits from the parent; `portLevelMtls`
//!    (workload-selector policies only) overrides per port; at one level the oldest policy
//!    wins (see [`PeerAuthenticator`] for the exact order).
//! 3. [`PeerAuthenticator::mode`] answers for a port: STRICT, PERMISSIVE or DISABLE, with the
//!    policy that decided, the inherited levels and the ignored policies
//!    ([`PeerAuthnDecision`], whose `Display` is a one-line explanation for logs).
//!
//! Enforcement is the inbound server's: under STRICT a plaintext connection is refused;
//! under PERMISSIVE (and DISABLE) it is accepted with no principal, next to HBONE. As in
//! ambient mode, HBONE is never refused by peer authentication ([`PeerAuthnMode::Disable`]).

mod load;
mod model;
mod resolve;

pub use load::parse_peer_authentications;
pub use model::{CreationTime, MtlsMode, PeerAuthentication, PeerAuthnMode};
pub use resolve::{
    Chosen, DEFAULT_MODE, DecidedBy, Ignored, Level, PeerAuthenticator, PeerAuthnDecision,
};
