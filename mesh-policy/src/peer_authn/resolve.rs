//! Istio's resolution of PeerAuthentication policies for one workload, with explanations.

use std::{cmp::Ordering, collections::BTreeMap, fmt};

use super::model::{MtlsMode, PeerAuthentication, PeerAuthnMode};
use crate::authz::{PolicyId, Workload};

/// The mode every workload has when no policy sets one (Istio's default).
pub const DEFAULT_MODE: PeerAuthnMode = PeerAuthnMode::Permissive;

/// Where a policy sits in Istio's hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// No selector, in the root namespace: applies to the whole mesh.
    Mesh,
    /// No selector, in the workload's namespace.
    Namespace,
    /// A non-empty selector matching the workload, in its namespace.
    Workload,
}

impl fmt::Display for Level {
    /// `mesh`, `namespace` or `workload`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Mesh => "mesh",
            Self::Namespace => "namespace",
            Self::Workload => "workload",
        })
    }
}

/// The policy chosen at one level and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chosen {
    /// Mesh, namespace or workload.
    pub level: Level,
    /// The policy.
    pub policy: PolicyId,
    /// Its `spec.mtls.mode`.
    pub mode: MtlsMode,
    /// Its `portLevelMtls` (workload level only; empty otherwise).
    pub port_level: BTreeMap<u16, MtlsMode>,
}

impl Chosen {
    /// What this policy says for `port`: its `portLevelMtls` entry unless that is `UNSET`,
    /// else its `spec.mtls.mode`.
    pub fn mode_for(&self, port: u16) -> MtlsMode {
        match self.port_level.get(&port) {
            Some(mode) if *mode != MtlsMode::Unset => *mode,
            _ => self.mode,
        }
    }
}

/// A policy that would apply to the workload but does not, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ignored {
    /// Another policy at the same level is older (or as old with a smaller name) and wins.
    Shadowed {
        /// The ignored policy.
        policy: PolicyId,
        /// Its level.
        level: Level,
        /// The policy used instead.
        by: PolicyId,
    },
    /// A root-namespace policy with a selector: istiod ignores these.
    RootNamespaceSelector {
        /// The ignored policy.
        policy: PolicyId,
    },
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shadowed { policy, level, by } => write!(
                f,
                "{policy} ignored: {level} policy {by} is older and takes precedence"
            ),
            Self::RootNamespaceSelector { policy } => write!(
                f,
                "{policy} ignored: a policy with a selector in the root namespace has no effect"
            ),
        }
    }
}

/// What set the mode of a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecidedBy {
    /// No applicable policy sets a mode: Istio's default, PERMISSIVE.
    Default,
    /// A policy's `spec.mtls.mode`.
    Policy {
        /// The policy's level.
        level: Level,
        /// The policy.
        policy: PolicyId,
    },
    /// A workload policy's `portLevelMtls` entry for the port.
    PortLevel {
        /// The workload policy.
        policy: PolicyId,
        /// The port.
        port: u16,
    },
}

/// The resolved mode of one port of the workload, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerAuthnDecision {
    /// The port asked about.
    pub port: u16,
    /// What the inbound side accepts on it.
    pub mode: PeerAuthnMode,
    /// The setting that decided.
    pub decided_by: DecidedBy,
    /// The policy used at each level, mesh first; those that say `UNSET` passed the decision
    /// on to their parent.
    pub chain: Vec<Chosen>,
    /// Policies that matched the workload but were ignored.
    pub ignored: Vec<Ignored>,
}

impl fmt::Display for PeerAuthnDecision {
    /// One line: `STRICT on port 8080: namespace policy shop/default (spec.mtls.mode);
    /// workload policy shop/web: UNSET, inherits`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on port {}: ", self.mode, self.port)?;
        match &self.decided_by {
            DecidedBy::Default => f.write_str("default (no policy sets a mode)")?,
            DecidedBy::Policy { level, policy } => {
                write!(f, "{level} policy {policy} (spec.mtls.mode)")?;
            }
            DecidedBy::PortLevel { policy, port } => {
                write!(f, "workload policy {policy} (spec.portLevelMtls.{port})")?;
            }
        }
        for chosen in &self.chain {
            let deciding = match &self.decided_by {
                DecidedBy::Default => false,
                DecidedBy::Policy { policy, .. } | DecidedBy::PortLevel { policy, .. } => {
                    *policy == chosen.policy
                }
            };
            if deciding {
                continue;
            }
            let (level, policy) = (chosen.level, &chosen.policy);
            match chosen.mode_for(self.port) {
                MtlsMode::Unset => write!(f, "; {level} policy {policy}: UNSET, inherits")?,
                overridden => write!(f, "; overrides {level} policy {policy} ({overridden})")?,
            }
        }
        for ignored in &self.ignored {
            write!(f, "; {ignored}")?;
        }
        Ok(())
    }
}

/// The PeerAuthentication policies in force for one workload, resolved as istiod does.
///
/// Built once per workload (and again when policies change); [`mode`](Self::mode) then
/// answers per port without allocating beyond the explanation.
///
/// Resolution (istiod's `ComposePeerAuthentication`):
/// 1. Applicable policies: those in the root namespace without a selector (mesh level), those
///    in the workload's namespace without a selector (namespace level) and those in its
///    namespace whose non-empty `matchLabels` all match (workload level). A root-namespace
///    policy *with* a selector is ignored, as istiod ignores it.
/// 2. Several at one level: the oldest wins — smallest `creationTimestamp`, a policy without
///    one counting as oldest (Go's zero time); ties go to the smaller name, then namespace,
///    which is the order istiod sorts configs in. The others are reported as
///    [`Ignored::Shadowed`].
/// 3. The mode starts PERMISSIVE and is replaced by the mesh, then namespace, then workload
///    policy's `spec.mtls.mode`, each only if not `UNSET`.
/// 4. A workload policy's `portLevelMtls` entry for the port replaces it, unless `UNSET`
///    (then the workload's mode applies).
///
/// ```
/// use mesh_policy::{authz::Workload, peer_authn::{PeerAuthnMode, PeerAuthenticator, parse_peer_authentications}};
///
/// let yaml = r#"
/// apiVersion: security.istio.io/v1
/// kind: PeerAuthentication
/// metadata: { name: default, namespace: istio-system }
/// spec: { mtls: { mode: STRICT } }
/// ---
/// apiVersion: security.istio.io/v1
/// kind: PeerAuthentication
/// metadata: { name: metrics, namespace: shop }
/// spec:
///   selector: { matchLabels: { app: web } }
///   portLevelMtls: { 9090: { mode: PERMISSIVE } }
/// "#;
/// let policies = parse_peer_authentications(yaml)?;
/// let web = PeerAuthenticator::new(&policies, &Workload::new("shop").with_label("app", "web"));
/// assert_eq!(web.mode(8080).mode, PeerAuthnMode::Strict);
/// assert_eq!(web.mode(9090).mode, PeerAuthnMode::Permissive);
/// println!("{}", web.mode(9090)); // PERMISSIVE on port 9090: workload policy shop/metrics (...)
/// # Ok::<(), mesh_policy::authz::PolicyError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAuthenticator {
    chain: Vec<Chosen>,
    ignored: Vec<Ignored>,
}

impl PeerAuthenticator {
    /// Resolves `policies` (every loaded policy; the ones that do not apply are skipped) for
    /// `workload` (its namespace, labels and the mesh's root namespace).
    pub fn new(policies: &[PeerAuthentication], workload: &Workload) -> Self {
        let mut best: [Option<&PeerAuthentication>; 3] = [None, None, None];
        let mut ignored = Vec::new();
        for policy in policies {
            let Some(level) = level_for(policy, workload, &mut ignored) else {
                continue;
            };
            let slot = &mut best[level as usize];
            match slot {
                Some(current) if older_first(current, policy) != Ordering::Greater => {
                    ignored.push(Ignored::Shadowed {
                        policy: policy.id.clone(),
                        level,
                        by: current.id.clone(),
                    });
                }
                _ => {
                    if let Some(previous) = slot.replace(policy) {
                        ignored.push(Ignored::Shadowed {
                            policy: previous.id.clone(),
                            level,
                            by: policy.id.clone(),
                        });
                    }
                }
            }
        }
        // A policy shadowed first by one and then by an even older one names the winner.
        for ignored in &mut ignored {
            if let Ignored::Shadowed { level, by, .. } = ignored {
                if let Some(winner) = best[*level as usize] {
                    by.clone_from(&winner.id);
                }
            }
        }
        let chain = [Level::Mesh, Level::Namespace, Level::Workload]
            .into_iter()
            .zip(best)
            .filter_map(|(level, policy)| {
                policy.map(|p| Chosen {
                    level,
                    policy: p.id.clone(),
                    mode: p.mode,
                    port_level: if level == Level::Workload {
                        p.port_level.clone()
                    } else {
                        BTreeMap::new()
                    },
                })
            })
            .collect();
        Self { chain, ignored }
    }

    /// The mode for inbound connections to `port` (the workload's own port, as in Istio's
    /// `portLevelMtls`: the container/target port, not a Service port).
    pub fn mode(&self, port: u16) -> PeerAuthnDecision {
        let mut mode = DEFAULT_MODE;
        let mut decided_by = DecidedBy::Default;
        for chosen in &self.chain {
            if let Some(resolved) = chosen.mode.resolved() {
                mode = resolved;
                decided_by = DecidedBy::Policy {
                    level: chosen.level,
                    policy: chosen.policy.clone(),
                };
            }
            let port_mode = chosen.port_level.get(&port).and_then(|m| m.resolved());
            if let Some(resolved) = port_mode {
                mode = resolved;
                decided_by = DecidedBy::PortLevel {
                    policy: chosen.policy.clone(),
                    port,
                };
            }
        }
        PeerAuthnDecision {
            port,
            mode,
            decided_by,
            chain: self.chain.clone(),
            ignored: self.ignored.clone(),
        }
    }

    /// The policy used at each level, mesh first.
    pub fn chain(&self) -> &[Chosen] {
        &self.chain
    }

    /// Applicable policies that were ignored, and why.
    pub fn ignored(&self) -> &[Ignored] {
        &self.ignored
    }
}

/// The level at which `policy` applies to `workload`, if it does.
fn level_for(
    policy: &PeerAuthentication,
    workload: &Workload,
    ignored: &mut Vec<Ignored>,
) -> Option<Level> {
    let namespace = policy.id.namespace.as_str();
    let in_root = namespace == workload.root_namespace;
    match policy.selector.as_ref().filter(|s| !s.is_empty()) {
        None if in_root => Some(Level::Mesh),
        None if namespace == workload.namespace => Some(Level::Namespace),
        None => None,
        Some(selector) => {
            let matches = selector
                .iter()
                .all(|(k, v)| workload.labels.get(k).is_some_and(|have| have == v));
            if !matches {
                None
            } else if in_root {
                ignored.push(Ignored::RootNamespaceSelector {
                    policy: policy.id.clone(),
                });
                None
            } else if namespace == workload.namespace {
                Some(Level::Workload)
            } else {
                None
            }
        }
    }
}

/// istiod's precedence at one level: older first (no timestamp = oldest), then by name, then
/// by namespace.
fn older_first(a: &PeerAuthentication, b: &PeerAuthentication) -> Ordering {
    let time = |p: &PeerAuthentication| p.created.as_ref().map(|c| c.unix_nanos);
    time(a)
        .cmp(&time(b))
        .then_with(|| a.id.name.cmp(&b.id.name))
        .then_with(|| a.id.namespace.cmp(&b.id.namespace))
}
