//! Validated rate-limit rules: which requests a rule counts, and how it splits them by key.

use std::fmt;

use super::bucket::BucketParams;
use crate::authz::{AuthzRequest, StringPattern};

/// The default for [`RateLimitRule::max_keys`].
pub const DEFAULT_MAX_KEYS: usize = 10_000;

/// One rule: requests it [matches](RuleMatch) draw a token from the bucket of their
/// [key](KeyPart) (one bucket for all when the key is empty).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitRule {
    /// Unique name: reported in decisions and used in shared (Redis) counter names.
    pub name: String,
    /// Which requests the rule counts.
    pub matcher: RuleMatch,
    /// The attributes that split the rule into one bucket per distinct value; empty means
    /// one bucket for every matching request.
    pub key: Vec<KeyPart>,
    /// The bucket shape.
    pub limit: BucketParams,
    /// Most per-key buckets kept in memory by a local limiter (see the keyed-bucket notes in
    /// [`LocalRateLimiter`](super::LocalRateLimiter)).
    pub max_keys: usize,
    /// What to do when a key attribute is absent from the request.
    pub missing_key: MissingKey,
}

/// Conditions a request must meet for a rule to count it. Every field given must hold;
/// within a list, any entry may match. An empty match counts every request.
///
/// HTTP conditions (`path_prefixes`, `methods`, `headers`) never match a raw TCP tunnel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuleMatch {
    /// The path (without query) starts with one of these.
    pub path_prefixes: Vec<String>,
    /// The method is one of these (exact, case-sensitive as HTTP methods are).
    pub methods: Vec<String>,
    /// The destination port is one of these.
    pub destination_ports: Vec<u16>,
    /// The peer's principal (Istio form, without `spiffe://`) matches one of these.
    pub source_principals: Vec<StringPattern>,
    /// The peer's namespace (from its Istio-form principal) matches one of these.
    pub source_namespaces: Vec<StringPattern>,
    /// Each named header (lower case) is present and matches its pattern.
    pub headers: Vec<(String, StringPattern)>,
}

/// A request attribute a rule can be keyed by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyPart {
    /// The peer's principal (Istio form); absent for plaintext peers.
    SourcePrincipal,
    /// The peer's namespace, from an Istio-form principal.
    SourceNamespace,
    /// The HTTP method; absent on raw TCP.
    Method,
    /// The destination port; always present.
    DestinationPort,
    /// A request header's value (repeated headers joined with `,`); absent when not sent.
    Header(String),
}

impl fmt::Display for KeyPart {
    /// The spelling in the config file: `source_principal`, `header:x-user`, ...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SourcePrincipal => f.write_str("source_principal"),
            Self::SourceNamespace => f.write_str("source_namespace"),
            Self::Method => f.write_str("method"),
            Self::DestinationPort => f.write_str("destination_port"),
            Self::Header(name) => write!(f, "header:{name}"),
        }
    }
}

/// What a keyed rule does with a request that lacks one of its key attributes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingKey {
    /// All such requests share one bucket (the absent value is a value of its own). The safe
    /// default: a caller cannot escape a per-user limit by omitting the user header.
    #[default]
    Shared,
    /// The rule does not count such requests (Envoy's behaviour for a descriptor whose
    /// header is missing).
    Skip,
}

/// The attributes of a request as rules read them, derived once per check.
pub(crate) struct Attributes<'r> {
    request: &'r AuthzRequest,
    principal: Option<&'r str>,
    namespace: Option<&'r str>,
    path: Option<&'r str>,
    port: String,
}

impl<'r> Attributes<'r> {
    pub(crate) fn new(request: &'r AuthzRequest) -> Self {
        let id = request.source_principal.as_ref();
        Self {
            request,
            principal: id.map(|id| id.as_str().strip_prefix("spiffe://").unwrap_or(id.as_str())),
            namespace: id.and_then(|id| id.namespace()),
            path: request.http.as_ref().map(|h| h.url_path()),
            port: request.destination_port.to_string(),
        }
    }

    fn header(&self, name: &str) -> Option<std::borrow::Cow<'r, str>> {
        self.request.http.as_ref().and_then(|h| h.header(name))
    }
}

impl RateLimitRule {
    /// Whether the rule counts `request`.
    pub fn matches(&self, request: &AuthzRequest) -> bool {
        self.matches_attributes(&Attributes::new(request))
    }

    pub(crate) fn matches_attributes(&self, a: &Attributes<'_>) -> bool {
        let m = &self.matcher;
        let any = |patterns: &[StringPattern], value: Option<&str>| {
            patterns.is_empty()
                || value.is_some_and(|v| patterns.iter().any(|p| p.matches(v, false)))
        };
        (m.path_prefixes.is_empty()
            || a.path.is_some_and(|p| {
                m.path_prefixes
                    .iter()
                    .any(|pre| p.starts_with(pre.as_str()))
            }))
            && (m.methods.is_empty()
                || (a.request.http.as_ref()).is_some_and(|h| m.methods.contains(&h.method)))
            && (m.destination_ports.is_empty()
                || m.destination_ports.contains(&a.request.destination_port))
            && any(&m.source_principals, a.principal)
            && any(&m.source_namespaces, a.namespace)
            && m.headers
                .iter()
                .all(|(name, pattern)| a.header(name).is_some_and(|v| pattern.matches(&v, false)))
    }

    /// The key values of `request` for this rule, in [`key`](Self::key) order (`None` =
    /// absent); `None` overall when the rule skips requests missing a key attribute.
    pub(crate) fn key_values<'a>(
        &self,
        a: &'a Attributes<'_>,
    ) -> Option<Vec<Option<std::borrow::Cow<'a, str>>>> {
        use std::borrow::Cow;
        let values: Vec<Option<Cow<'a, str>>> = self
            .key
            .iter()
            .map(|part| match part {
                KeyPart::SourcePrincipal => a.principal.map(Cow::Borrowed),
                KeyPart::SourceNamespace => a.namespace.map(Cow::Borrowed),
                KeyPart::Method => a
                    .request
                    .http
                    .as_ref()
                    .map(|h| Cow::Borrowed(h.method.as_str())),
                KeyPart::DestinationPort => Some(Cow::Borrowed(a.port.as_str())),
                KeyPart::Header(name) => a.header(name),
            })
            .collect();
        if self.missing_key == MissingKey::Skip && values.iter().any(Option::is_none) {
            return None;
        }
        Some(values)
    }
}
