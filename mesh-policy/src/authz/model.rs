//! Validated AuthorizationPolicy documents: what a policy says, with every value parsed.
//!
//! These types are produced only by [`parse_policies`](super::parse_policies), after the checks
//! Istio's own validation applies, so the engine never meets an empty source, a bad CIDR or a
//! port that is not a number. Fields are public for inspection (`meshctl`, logs); the types are
//! `#[non_exhaustive]` so they can grow with Istio's API.

use std::{collections::BTreeMap, fmt};

use ipnet::IpNet;

use super::{condition::Condition, pattern::StringPattern};

/// Identifies a policy the way Istio does: `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId {
    /// `metadata.namespace` (`default` when the document has none, as `kubectl apply` would).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl fmt::Display for PolicyId {
    /// `namespace/name`, the form `kubectl` and Istio's logs use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What a matching policy does (`spec.action`; ALLOW when absent).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// A request must match some ALLOW policy, once any ALLOW policy applies to the workload.
    Allow,
    /// A matching request is denied, whatever the ALLOW policies say.
    Deny,
    /// A matching request is only reported (for audit logging); the decision is unchanged.
    Audit,
    /// A matching request is delegated to an external authorizer (`spec.provider.name`), which
    /// is asked before the DENY and ALLOW policies are applied.
    Custom {
        /// The extension provider's name, as configured in the mesh.
        provider: String,
    },
}

impl fmt::Display for Action {
    /// Istio's spelling: `ALLOW`, `DENY`, `AUDIT`, `CUSTOM`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allow => "ALLOW",
            Self::Deny => "DENY",
            Self::Audit => "AUDIT",
            Self::Custom { .. } => "CUSTOM",
        })
    }
}

/// One `security.istio.io` AuthorizationPolicy, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthorizationPolicy {
    /// `namespace/name`.
    pub id: PolicyId,
    /// `spec.action` (with `spec.provider` for CUSTOM).
    pub action: Action,
    /// The `istio.io/dry-run` annotation: the policy is evaluated and reported, never enforced.
    pub dry_run: bool,
    /// `spec.selector.matchLabels`; `None` (or empty) selects every workload in scope.
    pub selector: Option<BTreeMap<String, String>>,
    /// `spec.rules`. Empty means the policy never matches: for ALLOW that denies everything
    /// (`spec: {}`), since an ALLOW policy still applies to the workload.
    pub rules: Vec<Rule>,
}

/// One entry of `spec.rules`: it matches when all of its parts match.
///
/// An empty rule (`{}`) matches every request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rule {
    /// `from[].source`: at least one must match (none given: any source).
    pub from: Vec<Source>,
    /// `to[].operation`: at least one must match (none given: any operation).
    pub to: Vec<Operation>,
    /// `when[]`: all must match.
    pub when: Vec<Condition>,
}

/// `rules[].from[].source`: who sends the request. Every field given must match; within a
/// field any value matches, and for `not_*` fields no value may match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Source {
    /// Peer identities without `spiffe://` (`cluster.local/ns/default/sa/web`).
    pub principals: Vec<StringPattern>,
    /// Peer identities that must not match.
    pub not_principals: Vec<StringPattern>,
    /// Request (JWT) principals, `iss/sub`. HTTP only.
    pub request_principals: Vec<StringPattern>,
    /// Request principals that must not match. HTTP only.
    pub not_request_principals: Vec<StringPattern>,
    /// The peer's namespace, taken from its principal (`.../ns/<namespace>/sa/...`).
    pub namespaces: Vec<StringPattern>,
    /// Namespaces that must not match.
    pub not_namespaces: Vec<StringPattern>,
    /// The peer's IP address (the connection's source).
    pub ip_blocks: Vec<IpNet>,
    /// Peer addresses that must not match.
    pub not_ip_blocks: Vec<IpNet>,
    /// The original client address (`X-Forwarded-For` / PROXY protocol; the peer's otherwise).
    pub remote_ip_blocks: Vec<IpNet>,
    /// Original client addresses that must not match.
    pub not_remote_ip_blocks: Vec<IpNet>,
}

/// `rules[].to[].operation`: what the request asks for. Same combination rules as [`Source`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Operation {
    /// The HTTP host (`:authority`), compared case-insensitively. HTTP only.
    pub hosts: Vec<StringPattern>,
    /// Hosts that must not match. HTTP only.
    pub not_hosts: Vec<StringPattern>,
    /// Destination ports.
    pub ports: Vec<u16>,
    /// Destination ports that must not match.
    pub not_ports: Vec<u16>,
    /// HTTP methods (case-sensitive, as on the wire). HTTP only.
    pub methods: Vec<StringPattern>,
    /// Methods that must not match. HTTP only.
    pub not_methods: Vec<StringPattern>,
    /// Request paths, without the query string. HTTP only.
    pub paths: Vec<StringPattern>,
    /// Paths that must not match. HTTP only.
    pub not_paths: Vec<StringPattern>,
}

impl Source {
    /// The names of the HTTP-only fields this source uses, for L4 handling and explanations.
    pub(crate) fn http_fields(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.request_principals.is_empty() {
            out.push("requestPrincipals");
        }
        if !self.not_request_principals.is_empty() {
            out.push("notRequestPrincipals");
        }
        out
    }
}

impl Operation {
    /// The names of the HTTP-only fields this operation uses.
    pub(crate) fn http_fields(&self) -> Vec<&'static str> {
        [
            ("hosts", self.hosts.is_empty()),
            ("notHosts", self.not_hosts.is_empty()),
            ("methods", self.methods.is_empty()),
            ("notMethods", self.not_methods.is_empty()),
            ("paths", self.paths.is_empty()),
            ("notPaths", self.not_paths.is_empty()),
        ]
        .into_iter()
        .filter(|(_, empty)| !empty)
        .map(|(name, _)| name)
        .collect()
    }
}

impl Rule {
    /// Where this rule needs HTTP attributes (`to[0].operation.methods`, `when[1]
    /// request.headers[x-user]`, ...). Empty for rules that a raw TCP connection can satisfy.
    pub fn http_fields(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, source) in self.from.iter().enumerate() {
            for field in source.http_fields() {
                out.push(format!("from[{i}].source.{field}"));
            }
        }
        for (i, op) in self.to.iter().enumerate() {
            for field in op.http_fields() {
                out.push(format!("to[{i}].operation.{field}"));
            }
        }
        for (i, condition) in self.when.iter().enumerate() {
            if condition.key.is_http_only() {
                out.push(format!("when[{i}] {}", condition.key));
            }
        }
        out
    }
}
