//! Reading PeerAuthentication documents from YAML as written for Istio, strictly.
//!
//! The document loop, `metadata` and `selector` handling are the AuthorizationPolicy loader's
//! (`authz::load`): the same multi-document rules, the same field-path errors
//! ([`PolicyError`]), the same selector checks. What is specific here is the `spec` shape and
//! istiod's `ValidatePeerAuthentication` rules.

use std::{collections::BTreeMap, fmt};

use serde::{
    Deserialize, Deserializer,
    de::{IgnoredAny, MapAccess, Visitor},
};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::model::{CreationTime, MtlsMode, PeerAuthentication};
use crate::authz::{
    PolicyError,
    load::{Cx, RawMetadata, RawSelector, parse_documents, policy_id, selector},
};

/// Parses every PeerAuthentication document in `yaml`, in file order.
///
/// Accepts `security.istio.io/v1` and `v1beta1` (the same schema). Empty documents are
/// skipped; the first problem stops the load, so a file is accepted whole or not at all.
/// Errors are [`PolicyError`]s naming the document, the policy and the field path, exactly as
/// for AuthorizationPolicy files.
///
/// ```
/// let yaml = r#"
/// apiVersion: security.istio.io/v1
/// kind: PeerAuthentication
/// metadata: { name: default, namespace: istio-system }
/// spec: { mtls: { mode: STRICT } }
/// "#;
/// let policies = mesh_policy::peer_authn::parse_peer_authentications(yaml)?;
/// assert_eq!(policies[0].id.to_string(), "istio-system/default");
/// # Ok::<(), mesh_policy::authz::PolicyError>(())
/// ```
pub fn parse_peer_authentications(yaml: &str) -> Result<Vec<PeerAuthentication>, PolicyError> {
    parse_documents(yaml, "PeerAuthentication", convert)
}

/// A whole PeerAuthentication document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPeerAuthentication {
    #[allow(dead_code, reason = "checked by the header pass")]
    api_version: String,
    #[allow(dead_code, reason = "checked by the header pass")]
    kind: String,
    metadata: RawMetadata,
    #[serde(default)]
    spec: Option<RawSpec>,
    /// Written by the API server; meaningless in a file, harmless to carry.
    #[serde(default)]
    #[allow(dead_code, reason = "accepted and ignored")]
    status: Option<IgnoredAny>,
}

/// `spec`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSpec {
    #[serde(default)]
    selector: Option<RawSelector>,
    #[serde(default)]
    mtls: Option<RawMtls>,
    #[serde(default)]
    port_level_mtls: Option<RawPortMap>,
}

/// `spec.mtls` and each `portLevelMtls` value.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMtls {
    #[serde(default)]
    mode: Option<RawMode>,
}

/// Istio's `PeerAuthentication.MutualTLS.Mode` names.
#[derive(Clone, Copy, Debug, Deserialize)]
enum RawMode {
    #[serde(rename = "UNSET")]
    Unset,
    #[serde(rename = "DISABLE")]
    Disable,
    #[serde(rename = "PERMISSIVE")]
    Permissive,
    #[serde(rename = "STRICT")]
    Strict,
}

impl From<Option<RawMtls>> for MtlsMode {
    /// A missing `mtls`, `mtls: {}` and `mode: UNSET` all mean "inherit", as in istiod.
    fn from(raw: Option<RawMtls>) -> Self {
        match raw.and_then(|m| m.mode) {
            None | Some(RawMode::Unset) => Self::Unset,
            Some(RawMode::Disable) => Self::Disable,
            Some(RawMode::Permissive) => Self::Permissive,
            Some(RawMode::Strict) => Self::Strict,
        }
    }
}

/// `spec.portLevelMtls` in document order, keys as written (`8080:` or `"8080":`), so that a
/// port given twice is an error instead of one entry silently replacing the other.
#[derive(Debug, Default)]
struct RawPortMap(Vec<(String, Option<RawMtls>)>);

impl<'de> Deserialize<'de> for RawPortMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortMapVisitor;
        impl<'de> Visitor<'de> for PortMapVisitor {
            type Value = RawPortMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map from port number to {mode: ...}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawPortMap, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value = map.next_value::<Option<RawMtls>>()?;
                    entries.push((key, value));
                }
                Ok(RawPortMap(entries))
            }
        }
        deserializer.deserialize_map(PortMapVisitor)
    }
}

/// Validates one document; errors carry the policy's `namespace/name` once it is known.
fn convert(cx: &Cx, raw: RawPeerAuthentication) -> Result<PeerAuthentication, PolicyError> {
    let id = policy_id(cx, &raw.metadata)?;
    convert_rest(cx, raw.metadata, raw.spec.unwrap_or_default())
        .map(|(created, selector, mode, port_level)| PeerAuthentication {
            id: id.clone(),
            created,
            selector,
            mode,
            port_level,
        })
        .map_err(|mut err| {
            err.policy = Some(id);
            err
        })
}

type Converted = (
    Option<CreationTime>,
    Option<BTreeMap<String, String>>,
    MtlsMode,
    BTreeMap<u16, MtlsMode>,
);

fn convert_rest(cx: &Cx, metadata: RawMetadata, spec: RawSpec) -> Result<Converted, PolicyError> {
    let created = metadata
        .creation_timestamp
        .map(|text| creation_time(cx, text))
        .transpose()?;
    let selector = spec
        .selector
        .map(|s| selector(cx, s.match_labels.unwrap_or_default()))
        .transpose()?;
    let has_selector = selector.as_ref().is_some_and(|s| !s.is_empty());
    let mut port_level = BTreeMap::new();
    if let Some(RawPortMap(entries)) = spec.port_level_mtls {
        if !has_selector {
            return Err(cx.invalid(
                "spec.portLevelMtls",
                "mesh/namespace peer authentication cannot have port level mTLS; add \
                 spec.selector.matchLabels to set modes per port for chosen workloads",
            ));
        }
        if entries.is_empty() {
            return Err(cx.invalid(
                "spec.portLevelMtls",
                "port level mTLS, if defined, must have at least one element",
            ));
        }
        for (key, value) in entries {
            let path = format!("spec.portLevelMtls.{key}");
            let port = parse_port(&key).map_err(|reason| cx.invalid(&path, reason))?;
            if port_level.insert(port, MtlsMode::from(value)).is_some() {
                return Err(cx.invalid(path, format!("port {port} is listed twice")));
            }
        }
    }
    Ok((created, selector, MtlsMode::from(spec.mtls), port_level))
}

/// A port key: decimal digits, 1 to 65535 (istiod refuses 0; the proto's uint32 allows more,
/// but no workload listens there).
fn parse_port(key: &str) -> Result<u16, String> {
    let digits = !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit());
    match digits.then(|| key.parse::<u32>().ok()).flatten() {
        Some(0) => Err("port cannot be 0".to_owned()),
        Some(port) => u16::try_from(port)
            .map_err(|_| format!("bad port {key:?}: expected a number from 1 to 65535")),
        None => Err(format!(
            "bad port {key:?}: expected a number from 1 to 65535"
        )),
    }
}

/// `metadata.creationTimestamp`, RFC 3339 as the API server writes it.
fn creation_time(cx: &Cx, text: String) -> Result<CreationTime, PolicyError> {
    let parsed = OffsetDateTime::parse(&text, &Rfc3339).map_err(|e| {
        cx.invalid(
            "metadata.creationTimestamp",
            format!("{text:?} is not an RFC 3339 timestamp such as 2024-05-01T12:00:00Z ({e})"),
        )
    })?;
    Ok(CreationTime {
        unix_nanos: parsed.unix_timestamp_nanos(),
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_port;

    #[test]
    fn port_keys() {
        assert_eq!(parse_port("8080"), Ok(8080));
        assert_eq!(parse_port("65535"), Ok(65535));
        assert_eq!(parse_port("0"), Err("port cannot be 0".to_owned()));
        for bad in ["65536", "http", "", "-1", "+80", "0x50", "99999999999"] {
            assert!(parse_port(bad).is_err(), "{bad:?}");
        }
    }
}
