//! Reading AuthorizationPolicy documents from YAML as people write them for Istio.
//!
//! A file may hold several documents separated by `---`; each is read twice by serde: once
//! leniently for `apiVersion` and `kind` (so a Deployment in the same file gets "not an
//! AuthorizationPolicy" instead of a list of unknown fields), then strictly into the typed
//! shape with [`serde_path_to_error`], so every type error and unknown field names its path.
//! The typed shape is then validated by `convert` with Istio's own rules.

mod convert;
mod document;
mod values;

use serde::Deserialize;

use self::document::{Header, RawPolicy};
use super::{
    error::{PolicyError, PolicyErrorKind},
    model::AuthorizationPolicy,
};

/// The `apiVersion`s accepted: Istio serves the same AuthorizationPolicy schema under both.
pub const API_VERSIONS: [&str; 2] = ["security.istio.io/v1", "security.istio.io/v1beta1"];

/// Parses every AuthorizationPolicy document in `yaml`, in file order.
///
/// Empty documents (a leading or trailing `---`, comments only) are skipped. The first
/// problem found stops the load: a policy file is accepted whole or not at all, so a typo
/// never leaves a workload with half of its intended policy.
///
/// ```
/// let yaml = r#"
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: { name: allow-web, namespace: shop }
/// spec:
///   rules:
///   - from: [{ source: { principals: ["cluster.local/ns/shop/sa/web"] } }]
/// "#;
/// let policies = mesh_policy::authz::parse_policies(yaml)?;
/// assert_eq!(policies[0].id.to_string(), "shop/allow-web");
/// # Ok::<(), mesh_policy::authz::PolicyError>(())
/// ```
pub fn parse_policies(yaml: &str) -> Result<Vec<AuthorizationPolicy>, PolicyError> {
    let lenient = serde_yaml_ng::Deserializer::from_str(yaml);
    let strict = serde_yaml_ng::Deserializer::from_str(yaml);
    let mut policies = Vec::new();
    for (index, (lenient, strict)) in lenient.zip(strict).enumerate() {
        let cx = Cx {
            document: index + 1,
        };
        let value = serde_yaml_ng::Value::deserialize(lenient)
            .map_err(|e| cx.error("", PolicyErrorKind::Syntax, e.to_string()))?;
        if value.is_null() {
            continue;
        }
        if !value.is_mapping() {
            return Err(cx.error(
                "",
                PolicyErrorKind::Syntax,
                "a document must be a mapping with apiVersion, kind, metadata and spec",
            ));
        }
        check_header(&cx, &value)?;
        let raw: RawPolicy = serde_path_to_error::deserialize(strict).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            let reason = without_path_prefix(&path, e.into_inner().to_string());
            cx.error(path, PolicyErrorKind::Syntax, reason)
        })?;
        policies.push(convert::convert(&cx, raw)?);
    }
    Ok(policies)
}

/// serde_yaml_ng starts its messages with its own, coarser path (`spec.rules[0]: unknown
/// field ...`); the error already carries the precise one, so drop the repetition.
fn without_path_prefix(path: &str, reason: String) -> String {
    match reason.split_once(": ") {
        Some((prefix, rest)) if !prefix.is_empty() && path.starts_with(prefix) => rest.to_owned(),
        _ => reason,
    }
}

/// Refuses documents that are not AuthorizationPolicies of a known API version.
fn check_header(cx: &Cx, value: &serde_yaml_ng::Value) -> Result<(), PolicyError> {
    let header = Header::deserialize(value).unwrap_or_default();
    let api_version = header.api_version.unwrap_or_default();
    let kind = header.kind.unwrap_or_default();
    if kind.is_empty() {
        return Err(cx.invalid("kind", "missing; expected kind: AuthorizationPolicy"));
    }
    if kind != "AuthorizationPolicy" {
        return Err(cx.error(
            "kind",
            PolicyErrorKind::Unsupported,
            format!("{kind} ({api_version}); only AuthorizationPolicy documents are read here"),
        ));
    }
    if !API_VERSIONS.contains(&api_version.as_str()) {
        return Err(cx.invalid(
            "apiVersion",
            format!(
                "{api_version:?} is not an AuthorizationPolicy API version; expected {}",
                API_VERSIONS.join(" or ")
            ),
        ));
    }
    Ok(())
}

/// Where in the input the loader is, for building errors.
pub(super) struct Cx {
    /// The document's 1-based position in the file.
    document: usize,
}

impl Cx {
    fn error(
        &self,
        path: impl Into<String>,
        kind: PolicyErrorKind,
        reason: impl Into<String>,
    ) -> PolicyError {
        PolicyError::new(self.document, path, kind, reason)
    }

    /// A value Istio would refuse.
    pub(super) fn invalid(
        &self,
        path: impl Into<String>,
        reason: impl Into<String>,
    ) -> PolicyError {
        self.error(path, PolicyErrorKind::Invalid, reason)
    }

    /// A valid Istio feature this mesh does not implement.
    pub(super) fn unsupported(
        &self,
        path: impl Into<String>,
        reason: impl Into<String>,
    ) -> PolicyError {
        self.error(path, PolicyErrorKind::Unsupported, reason)
    }
}
