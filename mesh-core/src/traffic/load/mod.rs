//! Reading DestinationRule and VirtualService documents as people write them for Istio.
//!
//! A file may hold several documents separated by `---`. Each is read twice: leniently for
//! `apiVersion`, `kind` and the name (so a Deployment in the same file gets "not a traffic
//! resource" rather than a list of unknown fields), then strictly into the typed shape with
//! [`serde_path_to_error`], so every type error and unknown field names its path. The shape is
//! then validated with istiod's rules and converted; every problem in every document is
//! reported, not just the first.

pub(crate) mod cx;
mod document;
mod locality;
pub(crate) mod policy;
mod resources;
pub(crate) mod routes;

use serde::Deserialize;

use self::document::Header;
use super::{DestinationRule, TrafficError, TrafficErrorKind, TrafficErrors, VirtualService};

/// The `apiVersion`s accepted: Istio serves the same networking schema under all three.
pub const API_VERSIONS: [&str; 3] = [
    "networking.istio.io/v1",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1alpha3",
];

/// One loaded traffic resource.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrafficResource {
    /// A DestinationRule (boxed: it is several times larger than a VirtualService).
    DestinationRule(Box<DestinationRule>),
    /// A VirtualService.
    VirtualService(VirtualService),
}

/// How names in documents are completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// The namespace of documents without `metadata.namespace` (as `kubectl apply` would put
    /// them; default `default`).
    pub default_namespace: String,
    /// The cluster's DNS suffix for short names: `reviews` in namespace `shop` is
    /// `reviews.shop.svc.<suffix>` (default `cluster.local`).
    pub domain_suffix: String,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            default_namespace: "default".to_owned(),
            domain_suffix: "cluster.local".to_owned(),
        }
    }
}

/// Parses every DestinationRule and VirtualService document in `yaml`, in file order, with the
/// default [`LoadOptions`].
///
/// Empty documents are skipped. Any problem in any document fails the whole load and every
/// problem is reported: a traffic file is accepted whole or not at all.
///
/// ```
/// use mesh_core::traffic::{TrafficResource, parse_resources};
///
/// let yaml = r#"
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: { name: reviews, namespace: shop }
/// spec:
///   host: reviews
///   trafficPolicy:
///     loadBalancer: { simple: PASSTHROUGH }
/// "#;
/// let errors = parse_resources(yaml).unwrap_err();
/// assert_eq!(errors.errors()[0].path, "spec.trafficPolicy.loadBalancer.simple");
/// assert!(errors.to_string().contains("not supported"));
/// ```
pub fn parse_resources(yaml: &str) -> Result<Vec<TrafficResource>, TrafficErrors> {
    parse_resources_with(yaml, &LoadOptions::default())
}

/// [`parse_resources`] with explicit [`LoadOptions`].
pub fn parse_resources_with(
    yaml: &str,
    options: &LoadOptions,
) -> Result<Vec<TrafficResource>, TrafficErrors> {
    let lenient = serde_yaml_ng::Deserializer::from_str(yaml);
    let strict = serde_yaml_ng::Deserializer::from_str(yaml);
    let mut resources = Vec::new();
    let mut errors = Vec::new();
    for (index, (lenient, strict)) in lenient.zip(strict).enumerate() {
        let document = index + 1;
        let value = match serde_yaml_ng::Value::deserialize(lenient) {
            Ok(value) => value,
            Err(e) => {
                // Not YAML: the parser cannot find where the next document starts, so stop.
                errors.push(TrafficError::new(
                    document,
                    "",
                    TrafficErrorKind::Syntax,
                    e.to_string(),
                ));
                break;
            }
        };
        match parse_document(document, &value, strict, options) {
            Ok(Some(resource)) => resources.push(resource),
            Ok(None) => {}
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(resources)
    } else {
        Err(TrafficErrors(errors))
    }
}

fn parse_document(
    document: usize,
    value: &serde_yaml_ng::Value,
    strict: serde_yaml_ng::Deserializer<'_>,
    options: &LoadOptions,
) -> Result<Option<TrafficResource>, Vec<TrafficError>> {
    let error =
        |path: &str, kind, reason: String| vec![TrafficError::new(document, path, kind, reason)];
    if value.is_null() {
        return Ok(None);
    }
    if !value.is_mapping() {
        return Err(error(
            "",
            TrafficErrorKind::Syntax,
            "a document must be a mapping with apiVersion, kind, metadata and spec".to_owned(),
        ));
    }
    let header = Header::deserialize(value).unwrap_or_default();
    let kind = header.kind.clone().unwrap_or_default();
    let api_version = header.api_version.clone().unwrap_or_default();
    if kind.is_empty() {
        return Err(error(
            "kind",
            TrafficErrorKind::Invalid,
            "missing; expected kind: DestinationRule or VirtualService".to_owned(),
        ));
    }
    if kind != "DestinationRule" && kind != "VirtualService" {
        return Err(error(
            "kind",
            TrafficErrorKind::Unsupported,
            format!(
                "{kind} ({api_version}) is not a traffic resource; only DestinationRule and VirtualService are read here"
            ),
        ));
    }
    let resource_name = resource_label(&kind, &header, options);
    let named = |mut errors: Vec<TrafficError>| {
        for e in &mut errors {
            e.resource = Some(resource_name.clone());
        }
        errors
    };
    if !API_VERSIONS.contains(&api_version.as_str()) {
        return Err(named(error(
            "apiVersion",
            TrafficErrorKind::Invalid,
            format!(
                "{api_version:?} is not a networking.istio.io version; expected one of {}",
                API_VERSIONS.join(", ")
            ),
        )));
    }
    let result = if kind == "DestinationRule" {
        resources::destination_rule(document, strict, options)
            .map(|r| TrafficResource::DestinationRule(Box::new(r)))
    } else {
        resources::virtual_service(document, strict, options).map(TrafficResource::VirtualService)
    };
    result.map(Some).map_err(named)
}

/// `DestinationRule shop/reviews`, from whatever of the metadata is readable.
fn resource_label(kind: &str, header: &Header, options: &LoadOptions) -> String {
    let text =
        |v: &Option<serde_yaml_ng::Value>| v.as_ref().and_then(|v| v.as_str()).map(str::to_owned);
    let metadata = header.metadata.as_ref();
    let name = metadata
        .and_then(|m| text(&m.name))
        .unwrap_or_else(|| "(unnamed)".to_owned());
    let namespace = metadata
        .and_then(|m| text(&m.namespace))
        .unwrap_or_else(|| options.default_namespace.clone());
    format!("{kind} {namespace}/{name}")
}

/// serde_yaml_ng starts its messages with its own, coarser path (`spec.http[0]: unknown field
/// ...`); the error already carries the precise one, so drop the repetition.
pub(crate) fn without_path_prefix(path: &str, reason: String) -> String {
    match reason.split_once(": ") {
        Some((prefix, rest)) if !prefix.is_empty() && path.starts_with(prefix) => rest.to_owned(),
        _ => reason,
    }
}
