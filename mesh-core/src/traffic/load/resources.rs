//! One document to one resource: strict parse, metadata, spec conversion.

use serde::de::DeserializeOwned;

use super::{
    LoadOptions,
    cx::{Cx, Hosts, join},
    document::{DestinationRuleSpec, Document, Metadata, VirtualServiceSpec},
    policy, routes, without_path_prefix,
};
use crate::traffic::{
    DestinationRule, TrafficError, TrafficErrorKind, TrafficPolicy, TrafficSettings, VirtualService,
};

/// Parses the document strictly into `Document<S>`; type errors and unknown fields name their
/// path.
fn strict<S: DeserializeOwned>(
    document: usize,
    de: serde_yaml_ng::Deserializer<'_>,
) -> Result<Document<S>, Vec<TrafficError>> {
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let reason = without_path_prefix(&path, e.into_inner().to_string());
        vec![TrafficError::new(
            document,
            path,
            TrafficErrorKind::Syntax,
            reason,
        )]
    })
}

/// The name and namespace, and a converter context for the document's hosts.
fn start(metadata: &Metadata, options: &LoadOptions) -> (String, String, Cx) {
    let name = metadata.name.clone().unwrap_or_default();
    let namespace = metadata
        .namespace
        .clone()
        .unwrap_or_else(|| options.default_namespace.clone());
    let mut cx = Cx::new(Hosts::Istio {
        namespace: namespace.clone(),
        domain_suffix: options.domain_suffix.clone(),
    });
    if name.is_empty() {
        cx.invalid("metadata.name", "a name is required");
    }
    (name, namespace, cx)
}

/// The value, or every problem found. `value` is `None` only when a problem was recorded.
fn finish<T>(document: usize, cx: Cx, value: Option<T>) -> Result<T, Vec<TrafficError>> {
    match value {
        Some(value) if cx.problems.is_empty() => return Ok(value),
        None if cx.problems.is_empty() => {
            return Err(vec![TrafficError::new(
                document,
                "",
                TrafficErrorKind::Invalid,
                "the document could not be read",
            )]);
        }
        _ => {}
    }
    Err(cx
        .problems
        .into_iter()
        .map(|p| TrafficError::new(document, p.path, p.kind, p.reason))
        .collect())
}

const EXPORT_TO: &str = "exportTo (visibility across namespaces) is not implemented: a workload applies every rule it is given, so give each workload only the rules meant for it";

pub(super) fn destination_rule(
    document: usize,
    de: serde_yaml_ng::Deserializer<'_>,
    options: &LoadOptions,
) -> Result<DestinationRule, Vec<TrafficError>> {
    let doc: Document<DestinationRuleSpec> = strict(document, de)?;
    let (name, namespace, mut cx) = start(&doc.metadata, options);
    let spec = doc.spec.unwrap_or_default();
    cx.refuse("spec", "exportTo", &spec.export_to, EXPORT_TO);
    cx.refuse(
        "spec",
        "workloadSelector",
        &spec.workload_selector,
        "rules for selected workloads only are not implemented; a workload applies every rule it is given",
    );
    let host = match spec.host.as_deref() {
        Some(h) if !h.is_empty() => cx.host_pattern("spec.host".to_owned(), h),
        _ => {
            cx.invalid("spec.host", "the host the rule applies to is required");
            None
        }
    };
    let settings = spec
        .traffic_policy
        .as_ref()
        .map_or_else(TrafficSettings::default, |t| {
            policy::traffic_settings(&mut cx, "spec.trafficPolicy", t, true)
        });
    let subsets = policy::subsets(
        &mut cx,
        "spec.subsets",
        spec.subsets.as_deref().unwrap_or(&[]),
    );
    let rule = host.map(|host| {
        DestinationRule::new(
            name,
            namespace,
            TrafficPolicy {
                host,
                settings,
                subsets,
            },
        )
    });
    finish(document, cx, rule)
}

pub(super) fn virtual_service(
    document: usize,
    de: serde_yaml_ng::Deserializer<'_>,
    options: &LoadOptions,
) -> Result<VirtualService, Vec<TrafficError>> {
    let doc: Document<VirtualServiceSpec> = strict(document, de)?;
    let (name, namespace, mut cx) = start(&doc.metadata, options);
    let spec = doc.spec.unwrap_or_default();
    cx.refuse("spec", "exportTo", &spec.export_to, EXPORT_TO);
    cx.refuse(
        "spec",
        "tcp",
        &spec.tcp,
        "TCP routes are not implemented; raw TCP calls go to the host itself",
    );
    cx.refuse(
        "spec",
        "tls",
        &spec.tls,
        "TLS (SNI) routes are not implemented; only http routes are",
    );
    for (i, gateway) in spec.gateways.iter().flatten().enumerate() {
        if gateway != "mesh" {
            cx.unsupported(
                format!("spec.gateways[{i}]"),
                format!("{gateway:?}: routes bound to gateways do not apply inside the mesh; only \"mesh\" is supported"),
            );
        }
    }
    let mut hosts = Vec::new();
    match spec.hosts.as_deref() {
        Some(list) if !list.is_empty() => {
            for (i, h) in list.iter().enumerate() {
                if let Some(pattern) = cx.host_pattern(format!("spec.hosts[{i}]"), h) {
                    hosts.push(pattern);
                }
            }
        }
        _ => cx.invalid("spec.hosts", "at least one host is required"),
    }
    let http = match spec.http.as_deref() {
        Some(list) if !list.is_empty() => routes::http_routes(&mut cx, "spec.http", list, None),
        _ => {
            if spec.tcp.is_none() && spec.tls.is_none() {
                cx.invalid(join("spec", "http"), "at least one http route is required");
            }
            Vec::new()
        }
    };
    let mut vs = VirtualService::new(name, namespace, hosts);
    vs.http = http;
    finish(document, cx, Some(vs))
}
