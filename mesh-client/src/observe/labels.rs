//! Istio's metric labels: who called whom, for which service, over what, with which outcome.
//!
//! Label values follow Istio's conventions so existing dashboards and Kiali read them
//! unchanged: `unknown` for what is not known, principals as full `spiffe://` URIs, canonical
//! service and revision from the same workload labels Istio reads, `connection_security_policy`
//! `mutual_tls` on the destination side (every HBONE connection is mutual TLS; `none` for a
//! plaintext peer admitted by PERMISSIVE peer authentication) and `unknown` on
//! the source side, as Istio reports it.
//!
//! The peer's side comes from the W3C `baggage` header ztunnel exchanges (on the CONNECT for the
//! destination, on the 200 answer for the source), so no control-plane lookup is needed.

use std::{fmt, sync::Arc};

use mesh_core::{SpiffeId, config::WorkloadSettings};
use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};

use super::flags::ResponseFlags;

/// The value Istio writes for a label it cannot fill.
pub const UNKNOWN: &str = "unknown";

/// Longest label value taken from a peer's baggage; longer values are cut, so a peer cannot
/// make series arbitrarily large.
const MAX_VALUE_LEN: usize = 128;

/// A workload as Istio's `source_*` / `destination_*` labels describe it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct WorkloadLabels {
    /// `*_workload`: the workload's name (a Deployment's name in Kubernetes).
    pub workload: String,
    /// `*_workload_namespace`.
    pub namespace: String,
    /// `*_principal`: the SPIFFE ID, `spiffe://td/ns/NS/sa/SA`.
    pub principal: String,
    /// `*_app`: the `app` label.
    pub app: String,
    /// `*_version`: the `version` label.
    pub version: String,
    /// `*_canonical_service`.
    pub canonical_service: String,
    /// `*_canonical_revision`.
    pub canonical_revision: String,
    /// `*_cluster`.
    pub cluster: String,
}

impl WorkloadLabels {
    /// Every label `unknown`: a peer we know nothing about.
    pub fn unknown() -> Self {
        Self {
            workload: UNKNOWN.to_owned(),
            namespace: UNKNOWN.to_owned(),
            principal: UNKNOWN.to_owned(),
            app: UNKNOWN.to_owned(),
            version: UNKNOWN.to_owned(),
            canonical_service: UNKNOWN.to_owned(),
            canonical_revision: "latest".to_owned(),
            cluster: UNKNOWN.to_owned(),
        }
    }

    /// This workload, from its settings and SPIFFE ID. Canonical service and revision are
    /// read from the labels Istio reads (`service.istio.io/canonical-name`,
    /// `app.kubernetes.io/name`, `app`; `service.istio.io/canonical-revision`,
    /// `app.kubernetes.io/version`, `version`), falling back to the workload name and `latest`.
    pub fn local(settings: &WorkloadSettings, id: &SpiffeId) -> Self {
        let label = |keys: &[&str]| keys.iter().find_map(|k| settings.labels.get(*k)).cloned();
        let workload = settings
            .name
            .clone()
            .or_else(|| id.service_account().map(str::to_owned))
            .unwrap_or_else(|| UNKNOWN.to_owned());
        Self {
            canonical_service: label(&[
                "service.istio.io/canonical-name",
                "app.kubernetes.io/name",
                "app",
            ])
            .unwrap_or_else(|| workload.clone()),
            canonical_revision: label(&[
                "service.istio.io/canonical-revision",
                "app.kubernetes.io/version",
                "version",
            ])
            .unwrap_or_else(|| "latest".to_owned()),
            app: label(&["app"]).unwrap_or_else(|| UNKNOWN.to_owned()),
            version: label(&["version"]).unwrap_or_else(|| UNKNOWN.to_owned()),
            namespace: settings
                .namespace
                .clone()
                .or_else(|| id.namespace().map(str::to_owned))
                .unwrap_or_else(|| UNKNOWN.to_owned()),
            principal: id.as_str().to_owned(),
            cluster: UNKNOWN.to_owned(),
            workload,
        }
    }

    /// A peer, from its verified SPIFFE ID and the `baggage` it sent (`k8s.namespace.name`,
    /// `k8s.<kind>.name`, `service.name`, `service.version`, `k8s.cluster.name`, as ztunnel
    /// writes it). What the baggage lacks comes from the SPIFFE ID or is `unknown`.
    pub fn peer(principal: Option<&SpiffeId>, baggage: Option<&str>) -> Self {
        let mut labels = Self::unknown();
        let mut service_version = None;
        let mut workload_rank = usize::MAX;
        for item in baggage.unwrap_or_default().split(',').take(32) {
            // Properties after `;` carry nothing Istio reads.
            let item = item.split(';').next().unwrap_or_default();
            let Some((key, value)) = item.split_once('=') else {
                continue;
            };
            let value = decode(value.trim());
            if value.is_empty() {
                continue;
            }
            match key.trim() {
                "k8s.namespace.name" => labels.namespace = value,
                "k8s.cluster.name" => labels.cluster = value,
                "service.name" => {
                    labels.app = value.clone();
                    labels.canonical_service = value;
                }
                "service.version" => service_version = Some(value),
                key => {
                    // The owner kinds, most specific owner first: a Deployment names the
                    // workload better than the ReplicaSet or Pod it made.
                    const KINDS: [&str; 8] = [
                        "deployment",
                        "statefulset",
                        "daemonset",
                        "cronjob",
                        "job",
                        "replicaset",
                        "workload",
                        "pod",
                    ];
                    let kind = key
                        .strip_prefix("k8s.")
                        .and_then(|k| k.strip_suffix(".name"));
                    if let Some(rank) = kind.and_then(|k| KINDS.iter().position(|c| *c == k))
                        && rank < workload_rank
                    {
                        workload_rank = rank;
                        labels.workload = value;
                    }
                }
            }
        }
        if let Some(version) = service_version {
            labels.version = version.clone();
            labels.canonical_revision = version;
        }
        if let Some(id) = principal {
            labels.principal = id.as_str().to_owned();
            if labels.namespace == UNKNOWN
                && let Some(ns) = id.namespace()
            {
                labels.namespace = ns.to_owned();
            }
        }
        if labels.canonical_service == UNKNOWN && labels.workload != UNKNOWN {
            labels.canonical_service = labels.workload.clone();
        }
        labels
    }
}

/// Percent-decodes a baggage value, keeping it printable and short.
fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len().min(MAX_VALUE_LEN));
    let mut i = 0;
    while i < bytes.len() && out.len() < MAX_VALUE_LEN {
        let hex = |b: u8| char::from(b).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out)
        .chars()
        .filter(|c| !c.is_control())
        .collect()
}

/// The service a request was for: `destination_service` (the host), `_name` and `_namespace`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ServiceLabels {
    /// `destination_service`: the host as called, without port.
    pub host: String,
    /// `destination_service_name`.
    pub name: String,
    /// `destination_service_namespace`.
    pub namespace: String,
}

impl ServiceLabels {
    /// Splits a Kubernetes-style host (`reviews.bookinfo.svc.cluster.local` -> `reviews` in
    /// `bookinfo`); other hosts are their own name, in namespace `unknown`. A trailing port or
    /// dot is dropped.
    pub fn from_host(host: &str) -> Self {
        let host = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
        let host: String = host.chars().take(253).collect();
        if host.is_empty() {
            return Self::unknown();
        }
        let mut parts = host.split('.');
        let (name, namespace) = match (parts.next(), parts.next(), parts.next()) {
            (Some(name), Some(ns), Some("svc")) => (name.to_owned(), ns.to_owned()),
            _ => (host.clone(), UNKNOWN.to_owned()),
        };
        Self {
            host,
            name,
            namespace,
        }
    }

    /// All `unknown`.
    pub fn unknown() -> Self {
        Self {
            host: UNKNOWN.to_owned(),
            name: UNKNOWN.to_owned(),
            namespace: UNKNOWN.to_owned(),
        }
    }
}

/// `host:port` or `[v6]:port` without the port.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Which side recorded a metric (`reporter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reporter {
    /// The caller (outbound traffic).
    Source,
    /// The callee (inbound traffic).
    Destination,
}

impl Reporter {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Destination => "destination",
        }
    }
}

/// `request_protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestProtocol {
    /// HTTP/1.1 or HTTP/2.
    Http,
    /// gRPC (`content-type: application/grpc*`).
    Grpc,
    /// A raw TCP tunnel.
    Tcp,
}

impl RequestProtocol {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Grpc => "grpc",
            Self::Tcp => "tcp",
        }
    }

    /// HTTP or gRPC, from a request's `content-type`.
    pub fn of_content_type(content_type: Option<&http::HeaderValue>) -> Self {
        match content_type {
            Some(v) if v.as_bytes().starts_with(b"application/grpc") => Self::Grpc,
            _ => Self::Http,
        }
    }
}

/// Everything about a flow except its outcome: the part of the label set fixed per peer and
/// service, interned and shared by all of its series.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FlowLabels {
    pub(crate) reporter: Reporter,
    pub(crate) protocol: RequestProtocol,
    pub(crate) source: Arc<WorkloadLabels>,
    pub(crate) destination: Arc<WorkloadLabels>,
    pub(crate) service: Arc<ServiceLabels>,
}

impl FlowLabels {
    fn security(&self) -> &'static str {
        match self.reporter {
            // Only a plaintext peer (admitted by PERMISSIVE peer authentication) reaches the
            // destination without a principal: every HBONE connection is mutual TLS.
            Reporter::Destination if self.source.principal == UNKNOWN => "none",
            Reporter::Destination => "mutual_tls",
            Reporter::Source => UNKNOWN,
        }
    }

    fn encode_parts(&self, encoder: &mut LabelSetEncoder<'_>) -> fmt::Result {
        let (s, d, svc) = (&self.source, &self.destination, &self.service);
        let pairs: [(&str, &str); 20] = [
            ("reporter", self.reporter.as_str()),
            ("source_workload", &s.workload),
            ("source_canonical_service", &s.canonical_service),
            ("source_canonical_revision", &s.canonical_revision),
            ("source_workload_namespace", &s.namespace),
            ("source_principal", &s.principal),
            ("source_app", &s.app),
            ("source_version", &s.version),
            ("source_cluster", &s.cluster),
            ("destination_workload", &d.workload),
            ("destination_workload_namespace", &d.namespace),
            ("destination_principal", &d.principal),
            ("destination_app", &d.app),
            ("destination_version", &d.version),
            ("destination_service", &svc.host),
            ("destination_canonical_service", &d.canonical_service),
            ("destination_canonical_revision", &d.canonical_revision),
            ("destination_service_name", &svc.name),
            ("destination_service_namespace", &svc.namespace),
            ("destination_cluster", &d.cluster),
        ];
        for pair in pairs {
            pair.encode(encoder.encode_label())?;
        }
        ("request_protocol", self.protocol.as_str()).encode(encoder.encode_label())
    }
}

/// The label set of the HTTP metrics (`istio_requests_total` and the histograms).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct RequestLabels {
    pub(crate) flow: Arc<FlowLabels>,
    pub(crate) response_code: u16,
    /// gRPC status code (`None`: not gRPC, or no status seen).
    pub(crate) grpc_status: Option<u8>,
    pub(crate) flags: ResponseFlags,
}

impl EncodeLabelSet for RequestLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> fmt::Result {
        self.flow.encode_parts(encoder)?;
        ("response_code", u32::from(self.response_code)).encode(encoder.encode_label())?;
        match self.grpc_status {
            Some(code) => {
                ("grpc_response_status", u32::from(code)).encode(encoder.encode_label())?
            }
            None => ("grpc_response_status", "").encode(encoder.encode_label())?,
        }
        ("response_flags", self.flags.as_str()).encode(encoder.encode_label())?;
        ("connection_security_policy", self.flow.security()).encode(encoder.encode_label())
    }
}

/// The label set of the TCP metrics.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TcpLabels {
    pub(crate) flow: Arc<FlowLabels>,
    pub(crate) flags: ResponseFlags,
}

impl EncodeLabelSet for TcpLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> fmt::Result {
        self.flow.encode_parts(encoder)?;
        ("response_flags", self.flags.as_str()).encode(encoder.encode_label())?;
        ("connection_security_policy", self.flow.security()).encode(encoder.encode_label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_described_by_their_baggage_and_identity() {
        let id: SpiffeId = "spiffe://cluster.local/ns/shop/sa/orders".parse().unwrap();
        let labels = WorkloadLabels::peer(
            Some(&id),
            Some(
                "k8s.cluster.name=east,k8s.namespace.name=shop,k8s.pod.name=orders-7d9f,\
                 k8s.deployment.name=orders%20v2,service.name=orders,service.version=v2",
            ),
        );
        assert_eq!(labels.workload, "orders v2");
        assert_eq!(labels.namespace, "shop");
        assert_eq!(labels.principal, "spiffe://cluster.local/ns/shop/sa/orders");
        assert_eq!(labels.app, "orders");
        assert_eq!(labels.canonical_service, "orders");
        assert_eq!(labels.version, "v2");
        assert_eq!(labels.canonical_revision, "v2");
        assert_eq!(labels.cluster, "east");

        // No baggage: the namespace still comes from the SPIFFE ID.
        let bare = WorkloadLabels::peer(Some(&id), None);
        assert_eq!(bare.namespace, "shop");
        assert_eq!(bare.workload, UNKNOWN);
        assert_eq!(bare.canonical_revision, "latest");
        // Nothing at all.
        assert_eq!(WorkloadLabels::peer(None, None), WorkloadLabels::unknown());
    }

    #[test]
    fn hostile_baggage_stays_bounded_and_printable() {
        let long = "x".repeat(10_000);
        let labels = WorkloadLabels::peer(
            None,
            Some(&format!(
                "k8s.namespace.name={long},service.name=a%0Ab%,k8s.deployment.name=%zz"
            )),
        );
        assert_eq!(labels.namespace.len(), MAX_VALUE_LEN);
        assert_eq!(labels.app, "ab%");
        assert_eq!(labels.workload, "%zz");
    }

    #[test]
    fn local_labels_follow_istio_canonical_rules() {
        let config = mesh_core::config::MeshConfig::from_yaml(
            "workload: { name: inventory, namespace: shop, labels: { app: inv, version: v3 } }",
        )
        .unwrap();
        let settings = config.workload_settings().unwrap();
        let id: SpiffeId = "spiffe://cluster.local/ns/shop/sa/inventory"
            .parse()
            .unwrap();
        let local = WorkloadLabels::local(&settings, &id);
        assert_eq!(local.workload, "inventory");
        assert_eq!(local.canonical_service, "inv");
        assert_eq!(local.canonical_revision, "v3");
        assert_eq!(local.app, "inv");
        assert_eq!(local.namespace, "shop");

        let bare = mesh_core::config::MeshConfig::from_yaml("{}")
            .unwrap()
            .workload_settings()
            .unwrap();
        let local = WorkloadLabels::local(&bare, &id);
        assert_eq!(local.workload, "inventory");
        assert_eq!(local.canonical_service, "inventory");
        assert_eq!(local.canonical_revision, "latest");
        // The settings' namespace (from the configured default identity) wins.
        assert_eq!(local.namespace, "default");
    }

    #[test]
    fn service_hosts_split_like_kubernetes() {
        let s = ServiceLabels::from_host("Reviews.Bookinfo.svc.cluster.local:9080");
        assert_eq!(
            (s.host.as_str(), s.name.as_str(), s.namespace.as_str()),
            ("reviews.bookinfo.svc.cluster.local", "reviews", "bookinfo")
        );
        let s = ServiceLabels::from_host("api.example.com");
        assert_eq!(
            (s.name.as_str(), s.namespace.as_str()),
            ("api.example.com", UNKNOWN)
        );
        assert_eq!(ServiceLabels::from_host("[::1]:80").host, "::1");
        assert_eq!(ServiceLabels::from_host(""), ServiceLabels::unknown());
    }
}
