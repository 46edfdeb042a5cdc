//! The YAML shape of an AuthorizationPolicy, field for field, with serde.
//!
//! Every struct refuses unknown fields, so a misspelled `notPrincipal` is an error naming its
//! path instead of a silently missing constraint. Fields Istio has but this mesh does not
//! implement (`targetRef`, `serviceAccounts`, ...) are accepted here as [`IgnoredAny`] only so
//! that `convert` can refuse them with "not supported" rather than "unknown field".

use std::{collections::BTreeMap, fmt};

use serde::{
    Deserialize, Deserializer,
    de::{self, IgnoredAny, Visitor},
};

/// The fields every Kubernetes document starts with, read leniently to pick the parser.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Header {
    #[serde(default)]
    pub(super) api_version: Option<String>,
    #[serde(default)]
    pub(super) kind: Option<String>,
}

/// A whole AuthorizationPolicy document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawPolicy {
    #[allow(dead_code, reason = "checked by the header pass")]
    pub(super) api_version: String,
    #[allow(dead_code, reason = "checked by the header pass")]
    pub(super) kind: String,
    pub(super) metadata: RawMetadata,
    #[serde(default)]
    pub(super) spec: Option<RawSpec>,
    /// Written by the API server; meaningless in a file, harmless to carry.
    #[serde(default)]
    #[allow(dead_code, reason = "accepted and ignored")]
    pub(super) status: Option<IgnoredAny>,
}

/// `metadata`: what identifies the policy, plus the bookkeeping `kubectl get -o yaml` prints.
/// Shared with the other `security.istio.io` kinds (see [`crate::peer_authn`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawMetadata {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) namespace: Option<String>,
    #[serde(default)]
    pub(crate) annotations: BTreeMap<String, String>,
    #[serde(default)]
    #[allow(dead_code, reason = "labels on a policy do not affect it")]
    pub(super) labels: BTreeMap<String, String>,
    #[serde(default)]
    #[allow(dead_code, reason = "API server bookkeeping")]
    pub(super) uid: Option<IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code, reason = "API server bookkeeping")]
    pub(super) resource_version: Option<IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code, reason = "API server bookkeeping")]
    pub(super) generation: Option<IgnoredAny>,
    /// RFC 3339, written by the API server; PeerAuthentication resolution orders by it
    /// (`null`, as `kubectl` sometimes prints, reads as absent).
    #[serde(default)]
    pub(crate) creation_timestamp: Option<String>,
    #[serde(default)]
    #[allow(dead_code, reason = "API server bookkeeping")]
    pub(super) managed_fields: Option<IgnoredAny>,
}

/// `spec`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawSpec {
    #[serde(default)]
    pub(super) selector: Option<RawSelector>,
    #[serde(default)]
    pub(super) target_ref: Option<IgnoredAny>,
    #[serde(default)]
    pub(super) target_refs: Option<IgnoredAny>,
    #[serde(default)]
    pub(super) action: Option<RawAction>,
    #[serde(default)]
    pub(super) provider: Option<RawProvider>,
    #[serde(default)]
    pub(super) rules: Option<Vec<RawRule>>,
}

/// `spec.selector` (Istio's WorkloadSelector has only `matchLabels`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawSelector {
    #[serde(default)]
    pub(crate) match_labels: Option<BTreeMap<String, String>>,
}

/// `spec.action`, spelled as Istio's enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub(super) enum RawAction {
    #[serde(rename = "ALLOW")]
    Allow,
    #[serde(rename = "DENY")]
    Deny,
    #[serde(rename = "AUDIT")]
    Audit,
    #[serde(rename = "CUSTOM")]
    Custom,
}

/// `spec.provider`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    #[serde(default)]
    pub(super) name: Option<String>,
}

/// `spec.rules[]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    #[serde(default)]
    pub(super) from: Option<Vec<RawFrom>>,
    #[serde(default)]
    pub(super) to: Option<Vec<RawTo>>,
    #[serde(default)]
    pub(super) when: Option<Vec<RawCondition>>,
}

/// `rules[].from[]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFrom {
    #[serde(default)]
    pub(super) source: Option<RawSource>,
}

/// `rules[].from[].source`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawSource {
    #[serde(default)]
    pub(super) principals: Option<Vec<String>>,
    #[serde(default)]
    pub(super) not_principals: Option<Vec<String>>,
    #[serde(default)]
    pub(super) request_principals: Option<Vec<String>>,
    #[serde(default)]
    pub(super) not_request_principals: Option<Vec<String>>,
    #[serde(default)]
    pub(super) namespaces: Option<Vec<String>>,
    #[serde(default)]
    pub(super) not_namespaces: Option<Vec<String>>,
    #[serde(default)]
    pub(super) ip_blocks: Option<Vec<String>>,
    #[serde(default)]
    pub(super) not_ip_blocks: Option<Vec<String>>,
    #[serde(default)]
    pub(super) remote_ip_blocks: Option<Vec<String>>,
    #[serde(default)]
    pub(super) not_remote_ip_blocks: Option<Vec<String>>,
    #[serde(default)]
    pub(super) service_accounts: Option<IgnoredAny>,
    #[serde(default)]
    pub(super) not_service_accounts: Option<IgnoredAny>,
}

/// `rules[].to[]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTo {
    #[serde(default)]
    pub(super) operation: Option<RawOperation>,
}

/// `rules[].to[].operation`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawOperation {
    #[serde(default)]
    pub(super) hosts: Option<Vec<String>>,
    #[serde(default)]
    pub(super) not_hosts: Option<Vec<String>>,
    #[serde(default)]
    pub(super) ports: Option<Vec<Scalar>>,
    #[serde(default)]
    pub(super) not_ports: Option<Vec<Scalar>>,
    #[serde(default)]
    pub(super) methods: Option<Vec<String>>,
    #[serde(default)]
    pub(super) not_methods: Option<Vec<String>>,
    #[serde(default)]
    pub(super) paths: Option<Vec<String>>,
    #[serde(default)]
    pub(super) not_paths: Option<Vec<String>>,
}

/// `rules[].when[]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawCondition {
    #[serde(default)]
    pub(super) key: Option<String>,
    #[serde(default)]
    pub(super) values: Option<Vec<Scalar>>,
    #[serde(default)]
    pub(super) not_values: Option<Vec<Scalar>>,
}

/// A string that may also be written as a bare integer: Istio types ports and condition
/// values as strings (`ports: ["8080"]`), but `ports: [8080]` is unambiguous, so both are
/// read. Anything else (a list, a map, a boolean) is still a type error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Scalar(pub(super) String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}
