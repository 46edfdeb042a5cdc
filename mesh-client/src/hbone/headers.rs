//! The CONNECT request ztunnel sends: authority, `baggage`, `forwarded`, `traceparent`.

use std::net::SocketAddr;

use http::{HeaderValue, Method, Request, header::HeaderName};

use super::TunnelError;

/// Describes the source workload in the W3C `baggage` header, as ztunnel does, so the destination
/// can attribute traffic (metrics labels, access logs) without a control-plane lookup.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkloadInfo {
    /// `k8s.cluster.name`.
    pub cluster: Option<String>,
    /// `k8s.namespace.name`.
    pub namespace: Option<String>,
    /// Workload kind, such as `deployment`; forms the key `k8s.<kind>.name`.
    pub workload_kind: Option<String>,
    /// Workload name (value of `k8s.<kind>.name`).
    pub workload_name: Option<String>,
    /// `service.name` (the canonical service).
    pub service_name: Option<String>,
    /// `service.version`.
    pub service_version: Option<String>,
    /// `cloud.region`.
    pub region: Option<String>,
    /// `cloud.availability_zone`.
    pub zone: Option<String>,
}

impl WorkloadInfo {
    /// Renders the `baggage` header value, or `None` if nothing is known.
    pub fn baggage(&self) -> Option<String> {
        let kind_key = self
            .workload_kind
            .as_deref()
            .map(|k| format!("k8s.{k}.name"));
        let pairs = [
            ("k8s.cluster.name", self.cluster.as_deref()),
            ("k8s.namespace.name", self.namespace.as_deref()),
            (
                kind_key.as_deref().unwrap_or("k8s.workload.name"),
                self.workload_name.as_deref(),
            ),
            ("service.name", self.service_name.as_deref()),
            ("service.version", self.service_version.as_deref()),
            ("cloud.region", self.region.as_deref()),
            ("cloud.availability_zone", self.zone.as_deref()),
        ];
        let items: Vec<String> = pairs
            .iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k}={}", baggage_escape(v))))
            .collect();
        (!items.is_empty()).then(|| items.join(","))
    }
}

/// Percent-encodes what W3C baggage values may not contain.
fn baggage_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'!' | b'#'..=b'+' | b'-'..=b':' | b'<'..=b'[' | b']'..=b'~' => out.push(char::from(b)),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Per-tunnel request details beyond the destination.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct TunnelOptions {
    /// W3C `traceparent` to propagate; a new trace is started when absent (and `trace` is).
    pub traceparent: Option<String>,
    /// The tunnel's span: sent as `traceparent` with its `tracestate`, and its `baggage`
    /// entries after the workload's own. Takes precedence over `traceparent`.
    pub trace: Option<crate::observe::TraceContext>,
    /// The original client's address for `forwarded: for=...` (a gateway forwarding on behalf of
    /// a caller sets this); defaults to our side of the HBONE connection.
    pub original_client: Option<SocketAddr>,
    /// Service hostname when the target was a service (adds `;host=` to `forwarded`).
    pub service_host: Option<String>,
}

/// Builds the CONNECT request. `authority` is `ip:port` (IPv6 bracketed) of the target.
pub(crate) fn connect_request(
    authority: SocketAddr,
    baggage: Option<&str>,
    forwarded_for: SocketAddr,
    options: &TunnelOptions,
) -> Result<Request<()>, TunnelError> {
    let uri = http::Uri::builder()
        .authority(authority.to_string())
        .build()
        .map_err(|e| TunnelError::InvalidRequest(e.to_string()))?;
    let mut forwarded = format!("for=\"{forwarded_for}\"");
    if let Some(host) = &options.service_host {
        forwarded.push_str(&format!(";host={host}"));
    }
    let traceparent = match (&options.trace, &options.traceparent) {
        (Some(trace), _) => trace.traceparent(),
        (None, Some(t)) => t.clone(),
        (None, None) => new_traceparent(),
    };
    let baggage = match &options.trace {
        Some(trace) => crate::observe::trace::merge_baggage(baggage, trace.baggage()),
        None => baggage.map(str::to_owned),
    };
    let mut request = Request::builder()
        .method(Method::CONNECT)
        .uri(uri)
        .body(())
        .map_err(|e| TunnelError::InvalidRequest(e.to_string()))?;
    let headers = request.headers_mut();
    let value = |s: &str| {
        HeaderValue::from_str(s)
            .map_err(|e| TunnelError::InvalidRequest(format!("header value {s:?}: {e}")))
    };
    if let Some(b) = &baggage {
        headers.insert(HeaderName::from_static("baggage"), value(b)?);
    }
    headers.insert(http::header::FORWARDED, value(&forwarded)?);
    headers.insert(HeaderName::from_static("traceparent"), value(&traceparent)?);
    if let Some(state) = options.trace.as_ref().and_then(|t| t.tracestate()) {
        headers.insert(HeaderName::from_static("tracestate"), state.clone());
    }
    Ok(request)
}

/// A fresh W3C trace context: version 00, random trace and span IDs, sampled.
pub(crate) fn new_traceparent() -> String {
    let mut bytes = [0u8; 24];
    // Trace IDs need uniqueness, not secrecy; fall back to time-derived bytes if the RNG fails.
    if rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut bytes)
        .is_err()
    {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(1);
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (nanos >> ((i % 16) * 8)) as u8 ^ i as u8;
        }
    }
    bytes[0] |= 1; // an all-zero trace ID is invalid
    bytes[16] |= 1; // so is an all-zero span ID
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("00-{}-{}-01", &hex[..32], &hex[32..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_request_has_authority_only_and_ztunnel_headers() {
        let req = connect_request(
            "10.0.0.7:8080".parse().unwrap(),
            Some("k8s.namespace.name=shop"),
            "10.0.0.1:41000".parse().unwrap(),
            &TunnelOptions {
                service_host: Some("inventory.shop.svc.cluster.local".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(req.method(), Method::CONNECT);
        assert_eq!(req.uri().to_string(), "10.0.0.7:8080");
        assert!(req.uri().scheme().is_none());
        assert_eq!(
            req.headers()["forwarded"],
            "for=\"10.0.0.1:41000\";host=inventory.shop.svc.cluster.local"
        );
        assert_eq!(req.headers()["baggage"], "k8s.namespace.name=shop");
        let tp = req.headers()["traceparent"].to_str().unwrap();
        assert_eq!(tp.len(), 55);
        assert!(tp.starts_with("00-") && tp.ends_with("-01"));
    }

    #[test]
    fn ipv6_authority_is_bracketed() {
        let req = connect_request(
            "[fd00::7]:8080".parse().unwrap(),
            None,
            "[fd00::1]:1".parse().unwrap(),
            &TunnelOptions::default(),
        )
        .unwrap();
        assert_eq!(req.uri().authority().unwrap().as_str(), "[fd00::7]:8080");
        assert!(!req.headers().contains_key("baggage"));
    }

    #[test]
    fn baggage_lists_known_fields_and_escapes() {
        let info = WorkloadInfo {
            cluster: Some("Kubernetes".into()),
            namespace: Some("shop".into()),
            workload_kind: Some("deployment".into()),
            workload_name: Some("orders v2".into()),
            service_name: Some("orders".into()),
            ..Default::default()
        };
        assert_eq!(
            info.baggage().unwrap(),
            "k8s.cluster.name=Kubernetes,k8s.namespace.name=shop,k8s.deployment.name=orders%20v2,service.name=orders"
        );
        assert_eq!(WorkloadInfo::default().baggage(), None);
    }
}
