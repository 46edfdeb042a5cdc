//! Validated PeerAuthentication documents and the modes they resolve to.

use std::{collections::BTreeMap, fmt};

use crate::authz::PolicyId;

/// `spec.mtls.mode` / `portLevelMtls[port].mode` as written, including `UNSET`.
///
/// `UNSET` (or no `mtls` at all) means "inherit from the parent": the namespace policy for a
/// workload policy, the mesh policy for a namespace policy, `PERMISSIVE` for the mesh.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MtlsMode {
    /// Inherit the parent's mode.
    #[default]
    Unset,
    /// Plaintext only (see [`PeerAuthnMode::Disable`]).
    Disable,
    /// mTLS and plaintext both accepted.
    Permissive,
    /// mTLS required.
    Strict,
}

impl MtlsMode {
    /// The resolved mode, or `None` for `UNSET`.
    pub fn resolved(self) -> Option<PeerAuthnMode> {
        match self {
            Self::Unset => None,
            Self::Disable => Some(PeerAuthnMode::Disable),
            Self::Permissive => Some(PeerAuthnMode::Permissive),
            Self::Strict => Some(PeerAuthnMode::Strict),
        }
    }
}

impl fmt::Display for MtlsMode {
    /// Istio's spelling: `UNSET`, `DISABLE`, `PERMISSIVE`, `STRICT`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.resolved() {
            None => f.write_str("UNSET"),
            Some(mode) => mode.fmt(f),
        }
    }
}

/// What the inbound side accepts on a port after resolution: never `UNSET`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerAuthnMode {
    /// Only mutually authenticated (HBONE/mTLS) peers; plaintext connections are refused.
    Strict,
    /// Both: mTLS peers get their verified principal, plaintext peers have none. Istio's
    /// default, meant for migrating workloads into the mesh.
    Permissive,
    /// Istio sidecars stop terminating mTLS on such ports. In ambient mode ztunnel still
    /// accepts HBONE there, and so does this mesh: only plaintext handling differs from STRICT.
    Disable,
}

impl PeerAuthnMode {
    /// Whether a plaintext (non-mTLS) connection may be accepted: every mode but STRICT.
    pub fn accepts_plaintext(self) -> bool {
        !matches!(self, Self::Strict)
    }

    /// Whether the peer must present a verified identity: STRICT only.
    pub fn requires_mtls(self) -> bool {
        matches!(self, Self::Strict)
    }
}

impl fmt::Display for PeerAuthnMode {
    /// Istio's spelling: `STRICT`, `PERMISSIVE`, `DISABLE`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Strict => "STRICT",
            Self::Permissive => "PERMISSIVE",
            Self::Disable => "DISABLE",
        })
    }
}

/// `metadata.creationTimestamp`, which orders policies at one level (the oldest wins).
///
/// Kept as nanoseconds since the Unix epoch (UTC) for comparison, plus the text as written for
/// explanations.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CreationTime {
    /// Nanoseconds since 1970-01-01T00:00:00Z (negative before).
    pub unix_nanos: i128,
    /// The RFC 3339 text from the document.
    pub text: String,
}

impl fmt::Display for CreationTime {
    /// The timestamp as written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One `security.istio.io` PeerAuthentication, validated as istiod validates it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerAuthentication {
    /// `namespace/name`.
    pub id: PolicyId,
    /// `metadata.creationTimestamp`; `None` when the document has none (it then counts as
    /// older than any timestamped policy, like Go's zero time in istiod).
    pub created: Option<CreationTime>,
    /// `spec.selector.matchLabels`. `None` or empty makes this a namespace-wide policy (or
    /// mesh-wide in the root namespace).
    pub selector: Option<BTreeMap<String, String>>,
    /// `spec.mtls.mode` (`UNSET` when absent).
    pub mode: MtlsMode,
    /// `spec.portLevelMtls`: per-port modes, only allowed with a non-empty selector.
    pub port_level: BTreeMap<u16, MtlsMode>,
}

impl PeerAuthentication {
    /// Whether the policy has a non-empty workload selector (Istio treats `selector: {}` and
    /// `matchLabels: {}` as no selector).
    pub fn has_selector(&self) -> bool {
        self.selector.as_ref().is_some_and(|s| !s.is_empty())
    }
}
