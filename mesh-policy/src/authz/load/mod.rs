//! Reading AuthorizationPolicy documents from YAML as people write them for Istio.
//!
//! A file may hold several documents separated by `---`; each is read twice by serde: once
//! leniently for `apiVersion` and `kind` (so a Deployment in the same file gets "not an
//! AuthorizationPolicy" instead of a list of unknown fields), then strictly into the typed
//! shape with [`serde_path_to_error`], so every type error and unknown field names its path.
//! The typed shape is then validated by `convert` with Istio's own rules.

pub(crate) mod convert;
pub(crate) mod document;
mod values;

use serde::Deserialize;

use self::document::Header;
pub(crate) use self::{
    convert::{policy_id, selector},
    document::{RawMetadata, RawSelector},
};
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
    parse_documents(yaml, "AuthorizationPolicy", convert::convert)
}

/// Reads every document of kind `kind` (under one of [`API_VERSIONS`]) in `yaml` with the
/// strict two-pass scheme described in the module docs, and hands each typed document to
/// `convert`. Shared by the loaders of the `security.istio.io` kinds (AuthorizationPolicy,
/// RequestAuthentication, ...), so they all report errors the same way.
pub(crate) fn parse_documents<R, T>(
    yaml: &str,
    kind: &str,
    mut convert: impl FnMut(&Cx, R) -> Result<T, PolicyError>,
) -> Result<Vec<T>, PolicyError>
where
    R: serde::de::DeserializeOwned,
{
    let lenient = serde_yaml_ng::Deserializer::from_str(yaml);
    let strict = serde_yaml_ng::Deserializer::from_str(yaml);
    let mut documents = Vec::new();
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
        check_header(&cx, &value, kind)?;
        let raw: R = serde_path_to_error::deserialize(strict).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            let reason = without_path_prefix(&path, e.into_inner().to_string());
            cx.error(path, PolicyErrorKind::Syntax, reason)
        })?;
        documents.push(convert(&cx, raw)?);
    }
    Ok(documents)
}

/// serde_yaml_ng starts its messages with its own, coarser path (`spec.rules[0]: unknown
/// field ...`); the error already carries the precise one, so drop the repetition.
fn without_path_prefix(path: &str, reason: String) -> String {
    match reason.split_once(": ") {
        Some((prefix, rest)) if !prefix.is_empty() && path.starts_with(prefix) => rest.to_owned(),
        _ => reason,
    }
}

/// Refuses documents that are not of kind `expected` with a known API version.
fn check_header(cx: &Cx, value: &serde_yaml_ng::Value, expected: &str) -> Result<(), PolicyError> {
    let header = Header::deserialize(value).unwrap_or_default();
    let api_version = header.api_version.unwrap_or_default();
    let kind = header.kind.unwrap_or_default();
    if kind.is_empty() {
        return Err(cx.invalid("kind", format!("missing; expected kind: {expected}")));
    }
    if kind != expected {
        return Err(cx.error(
            "kind",
            PolicyErrorKind::Unsupported,
            format!("{kind} ({api_version}); only {expected} documents are read here"),
        ));
    }
    if !API_VERSIONS.contains(&api_version.as_str()) {
        return Err(cx.invalid(
            "apiVersion",
            format!(
                "{api_version:?} is not an API version of {expected}; expected {}",
                API_VERSIONS.join(" or ")
            ),
        ));
    }
    Ok(())
}

/// Where in the input the loader is, for building errors.
pub(crate) struct Cx {
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
    pub(crate) fn invalid(
        &self,
        path: impl Into<String>,
        reason: impl Into<String>,
    ) -> PolicyError {
        self.error(path, PolicyErrorKind::Invalid, reason)
    }

    /// A valid Istio feature this mesh does not implement.
    pub(crate) fn unsupported(
        &self,
        path: impl Into<String>,
        reason: impl Into<String>,
    ) -> PolicyError {
        self.error(path, PolicyErrorKind::Unsupported, reason)
    }
}
