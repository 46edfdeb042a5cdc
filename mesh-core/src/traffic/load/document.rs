//! The document around a spec: `apiVersion`, `kind`, `metadata`, and the two specs.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::traffic::raw::{Present, istio};

/// The fields every Kubernetes document starts with, read leniently to pick the parser.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Header {
    #[serde(default)]
    pub(crate) api_version: Option<String>,
    #[serde(default)]
    pub(crate) kind: Option<String>,
    #[serde(default)]
    pub(crate) metadata: Option<LenientMetadata>,
}

/// Name and namespace, read leniently so that errors can name the resource.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct LenientMetadata {
    #[serde(default)]
    pub(crate) name: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    pub(crate) namespace: Option<serde_yaml_ng::Value>,
}

/// A whole document; `S` is the spec's shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Document<S> {
    #[allow(dead_code, reason = "checked by the header pass")]
    pub(crate) api_version: String,
    #[allow(dead_code, reason = "checked by the header pass")]
    pub(crate) kind: String,
    pub(crate) metadata: Metadata,
    #[serde(default = "Option::default")]
    pub(crate) spec: Option<S>,
    /// Written by the API server; meaningless in a file, harmless to carry.
    #[serde(default)]
    #[allow(dead_code, reason = "accepted and ignored")]
    pub(crate) status: Option<Present>,
}

/// `metadata`: what identifies the resource, plus what `kubectl get -o yaml` prints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code, reason = "bookkeeping fields are accepted and ignored")]
pub(crate) struct Metadata {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) namespace: Option<String>,
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) uid: Option<Present>,
    #[serde(default)]
    pub(crate) resource_version: Option<Present>,
    #[serde(default)]
    pub(crate) generation: Option<Present>,
    #[serde(default)]
    pub(crate) creation_timestamp: Option<Present>,
    #[serde(default)]
    pub(crate) managed_fields: Option<Present>,
}

/// DestinationRule `spec`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct DestinationRuleSpec {
    #[serde(default)]
    pub(crate) host: Option<String>,
    #[serde(default)]
    pub(crate) traffic_policy: Option<istio::TrafficPolicy>,
    #[serde(default)]
    pub(crate) subsets: Option<Vec<istio::Subset>>,
    #[serde(default)]
    pub(crate) export_to: Option<Present>,
    #[serde(default)]
    pub(crate) workload_selector: Option<Present>,
}

/// VirtualService `spec`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct VirtualServiceSpec {
    #[serde(default)]
    pub(crate) hosts: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) gateways: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) http: Option<Vec<istio::HttpRoute>>,
    #[serde(default)]
    pub(crate) tls: Option<Present>,
    #[serde(default)]
    pub(crate) tcp: Option<Present>,
    #[serde(default)]
    pub(crate) export_to: Option<Present>,
}
