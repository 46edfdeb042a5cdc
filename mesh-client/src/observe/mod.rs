//! Observability: Istio's standard metrics, the mesh's own, access logs, W3C trace context,
//! runtime log levels and the admin endpoint that serves them.
//!
//! When the sidecar goes away, dashboards built on its metrics must keep working: Kiali draws
//! graph edges from `istio_requests_total` and `istio_tcp_*`, Grafana's Istio dashboards read
//! the duration and size histograms. [`Telemetry`] records exactly those series, with Istio's
//! names, labels, label values and bucket boundaries, from both sides of every call
//! (`reporter="source"` in the caller, `reporter="destination"` in the callee):
//!
//! | metric | kind | recorded |
//! |---|---|---|
//! | `istio_requests_total` | counter | per HTTP/gRPC request, at its end |
//! | `istio_request_duration_milliseconds` | histogram | idem, [`DURATION_BUCKETS_MS`] |
//! | `istio_request_bytes`, `istio_response_bytes` | histogram | body sizes, [`BYTES_BUCKETS`] |
//! | `istio_tcp_connections_opened_total`, `_closed_total` | counter | per tunnel |
//! | `istio_tcp_sent_bytes_total`, `_received_bytes_total` | counter | as bytes flow |
//!
//! and the mesh's own: `mesh_tls_handshakes_total` (by direction, result and failure reason),
//! `mesh_pool_connections`/`_streams`/`_connections_opened_total`, `mesh_inbound_connections`/
//! `_tunnels`, `mesh_retries_total`, `mesh_retry_budget_exhausted_total`,
//! `mesh_circuit_breaker_overflows_total` (by kind), `mesh_outlier_ejections_total` and
//! `mesh_outlier_ejected_endpoints`, `mesh_authz_decisions_total` (by layer, action and
//! policy), `mesh_rate_limit_rejections_total`, `mesh_certificate_expiry_timestamp_seconds`,
//! `mesh_discovery_updates_total`/`_errors_total`/`_healthy` (one series per backend:
//! `source="static"`, `file`, `etcd`, `dns`, `merged`), `mesh_spans_dropped_total` (OTLP).
//!
//! Cardinality is bounded: no per-endpoint or per-path labels, label values from peers are
//! capped in length, and at most [`MAX_FLOWS`] label sets (peer x service x protocol) are kept;
//! later ones are recorded as `unknown` and counted.
//!
//! Recording is cheap: a flow's label set is resolved once (interned by a hash of its inputs,
//! no allocation on a hit) and its counter and histogram handles are cached per outcome, so a
//! request costs a hash, two short read-locked lookups and the atomic updates. State that
//! already exists (pool sizes, certificate expiry, discovery, ejections) is read at scrape time
//! ([`StateSource`]) and costs nothing on the data path.
//!
//! Access logs ([`ACCESS_LOG_TARGET`]), trace context ([`TraceContext`]) and runtime log levels
//! ([`LogControl`]) are described in their modules; [`AdminServer`] serves `/metrics`,
//! `/stats/prometheus`, `/healthz/ready`, `/config_dump` and `/logging`; [`CredentialsState`]
//! is what it reports for a server built from the low-level parts instead of a `Mesh`. With
//! the `otlp` feature and `telemetry.otlp`, the client and server spans of requests and raw
//! tunnels are exported to an OpenTelemetry collector over OTLP/gRPC.
//!
//! A [`Mesh`](crate::mesh::Mesh) builds its `Telemetry` from the `telemetry:` section and wires
//! it into its clients and servers; lower-level users pass one in
//! [`HboneClientConfig`](crate::hbone::HboneClientConfig),
//! [`HboneServerConfig`](crate::hbone::HboneServerConfig) and
//! [`ResilientClient::with_telemetry`](crate::resilience::ResilientClient::with_telemetry).

mod access_log;
pub mod admin;
mod events;
mod families;
mod flags;
pub(crate) mod http;
mod labels;
mod logging;
#[cfg(feature = "otlp")]
pub(crate) mod otlp;
mod recorder;
pub(crate) mod spans;
mod standalone;
mod state;
pub(crate) mod trace;

use std::{
    fmt,
    sync::{Arc, Weak},
};

use mesh_core::{SpiffeId, config::TelemetrySettings};
use prometheus_client::registry::Registry;

pub use access_log::{ACCESS_LOG_TARGET, AccessRecord, FLUSH_INTERVAL};
pub use admin::{AdminServer, AdminState};
pub use families::{BYTES_BUCKETS, DURATION_BUCKETS_MS};
pub use flags::ResponseFlags;
pub use labels::{Reporter, RequestProtocol, ServiceLabels, UNKNOWN, WorkloadLabels};
pub use logging::{LogControl, LogError, init_logging};
pub use recorder::MAX_FLOWS;
pub use standalone::CredentialsState;
pub use state::{CertificateState, DiscoveryState, OutlierState, StateReport, StateSource};
pub use trace::{BAGGAGE, TRACEPARENT, TRACESTATE, TraceContext};

pub(crate) use events::{Direction, Layer, connect_reason, handshake_reason};
pub(crate) use recorder::{FlowRecorder, Outcome, TunnelMeter};

use self::{
    access_log::AccessLogger,
    families::{IstioFamilies, MeshFamilies},
    labels::FlowLabels,
    recorder::{FlowCache, FlowQuery},
    state::StateCollector,
};

/// A Unix time in seconds as RFC 3339 UTC (for certificate expiry in `/config_dump`).
pub(crate) fn rfc3339_secs(unix: u64) -> String {
    access_log::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix))
}

/// The OpenMetrics content type `/metrics` answers with when asked for it.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A workload's metrics registry and recorders, access logger and state sources. Cheap to
/// clone; clones share everything.
///
/// ```
/// use mesh_client::observe::{Telemetry, WorkloadLabels};
/// let telemetry = Telemetry::new(WorkloadLabels::unknown(), &Default::default());
/// let text = telemetry.encode();
/// // OpenMetrics text; a metric family appears once something was recorded in it.
/// assert!(text.ends_with("# EOF\n"));
/// ```
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    istio: Arc<IstioFamilies>,
    mesh: MeshFamilies,
    local: Arc<WorkloadLabels>,
    unknown: Arc<WorkloadLabels>,
    flows: Arc<FlowCache>,
    state: Arc<StateCollector>,
    access_log: AccessLogger,
    metrics: bool,
    /// The span exporter, once installed.
    spans: std::sync::OnceLock<Arc<dyn spans::SpanSink>>,
}

impl Telemetry {
    /// A registry for the workload `local` (its own side of every label set), with the
    /// metrics and access logging `settings` ask for. Create it inside a tokio runtime to
    /// write access logs from a background task (outside one they are written inline).
    pub fn new(local: WorkloadLabels, settings: &TelemetrySettings) -> Self {
        let mut registry = Registry::default();
        let istio = Arc::new(IstioFamilies::register(&mut registry));
        let mesh = MeshFamilies::register(&mut registry);
        let flows = Arc::new(FlowCache::default());
        let state = Arc::new(StateCollector::default());
        registry.register_collector(Box::new(state::Registered(state.clone(), flows.clone())));
        let access_log = AccessLogger::new(settings.access_log, mesh.access_log_dropped.clone());
        Self {
            inner: Arc::new(Inner {
                registry,
                istio,
                mesh,
                local: Arc::new(local),
                unknown: Arc::new(WorkloadLabels::unknown()),
                flows,
                state,
                access_log,
                metrics: settings.metrics,
                spans: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The workload the metrics describe as "us".
    pub fn local(&self) -> &WorkloadLabels {
        &self.inner.local
    }

    /// Whether access log lines are written.
    pub fn access_log_enabled(&self) -> bool {
        self.inner.access_log.enabled()
    }

    /// Every metric in the OpenMetrics text format (what Prometheus scrapes).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry) {
            // Writing to a String cannot fail; a label that cannot be encoded can.
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        out
    }

    /// Every metric in Prometheus' classic text format (0.0.4): OpenMetrics without `# EOF`,
    /// with counter families named by their `_total` series, for scrapers that do not speak
    /// OpenMetrics.
    pub fn encode_classic(&self) -> String {
        to_classic(&self.encode())
    }

    /// Registers a component whose state is read at each scrape. Held weakly.
    pub fn add_state_source(&self, source: Weak<dyn StateSource>) {
        self.inner.state.add(source);
    }

    /// The state every registered source reports now (also what the scrape shows).
    pub fn state(&self) -> StateReport {
        let mut report = self.inner.state.report();
        report.flows = self.inner.flows.len();
        report
    }

    /// Writes an access log record (subject to sampling and errors-only).
    pub fn log(&self, record: AccessRecord) {
        self.inner.access_log.log(record);
    }

    /// The flow of traffic between `peer` and this workload for `service`.
    pub(crate) fn flow(
        &self,
        reporter: Reporter,
        protocol: RequestProtocol,
        service: &str,
        peer: Option<&SpiffeId>,
        baggage: Option<&::http::HeaderValue>,
    ) -> Arc<FlowRecorder> {
        let query = FlowQuery {
            reporter,
            protocol,
            service,
            peer: peer.map(SpiffeId::as_str),
            baggage: baggage.map(::http::HeaderValue::as_bytes),
        };
        let inner = &self.inner;
        inner.flows.get(
            &query,
            |overflow| {
                let (other, service) = if overflow {
                    (inner.unknown.clone(), ServiceLabels::unknown())
                } else {
                    let baggage = baggage.and_then(|b| b.to_str().ok());
                    (
                        Arc::new(WorkloadLabels::peer(peer, baggage)),
                        ServiceLabels::from_host(service),
                    )
                };
                let (source, destination) = match reporter {
                    Reporter::Source => (inner.local.clone(), other),
                    Reporter::Destination => (other, inner.local.clone()),
                };
                Arc::new(FlowRecorder::new(
                    FlowLabels {
                        reporter,
                        protocol,
                        source,
                        destination,
                        service: Arc::new(service),
                    },
                    inner.istio.clone(),
                    inner.metrics,
                ))
            },
            &inner.mesh.label_overflow,
        )
    }
}

/// Rewrites OpenMetrics text as Prometheus' 0.0.4 text format.
fn to_classic(open: &str) -> String {
    let counters: std::collections::HashSet<&str> = open
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open.len());
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = line
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        if let Some((prefix, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if counters.contains(name) {
                out.push_str(&format!("{prefix}{name}_total {tail}\n"));
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("local", &self.inner.local.workload)
            .field("flows", &self.inner.flows.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn telemetry() -> Telemetry {
        Telemetry::new(WorkloadLabels::unknown(), &TelemetrySettings::default())
    }

    #[test]
    fn flows_are_interned_and_bounded() {
        let t = telemetry();
        let id: SpiffeId = "spiffe://cluster.local/ns/shop/sa/orders".parse().unwrap();
        let baggage = ::http::HeaderValue::from_static("k8s.deployment.name=orders");
        let a = t.flow(
            Reporter::Destination,
            RequestProtocol::Http,
            "inventory",
            Some(&id),
            Some(&baggage),
        );
        let b = t.flow(
            Reporter::Destination,
            RequestProtocol::Http,
            "inventory",
            Some(&id),
            Some(&baggage),
        );
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.labels().source.workload, "orders");
        let other = t.flow(
            Reporter::Source,
            RequestProtocol::Http,
            "inventory",
            Some(&id),
            None,
        );
        assert!(!Arc::ptr_eq(&a, &other));
        for i in 0..MAX_FLOWS + 10 {
            t.flow(
                Reporter::Source,
                RequestProtocol::Tcp,
                &format!("s{i}"),
                None,
                None,
            );
        }
        assert_eq!(t.state().flows, MAX_FLOWS);
        let late = t.flow(
            Reporter::Source,
            RequestProtocol::Tcp,
            "late",
            Some(&id),
            None,
        );
        assert_eq!(late.labels().service.host, UNKNOWN);
        assert_eq!(late.labels().destination.principal, UNKNOWN);
        let text = t.encode_classic();
        assert!(
            text.contains("mesh_metrics_label_overflow_total 13"),
            "{text}"
        );
    }

    #[test]
    fn classic_text_names_counters_by_their_series() {
        let t = telemetry();
        t.flow(
            Reporter::Source,
            RequestProtocol::Http,
            "inventory",
            None,
            None,
        )
        .request(
            Outcome {
                code: 200,
                grpc: None,
                flags: ResponseFlags::NONE,
            },
            std::time::Duration::from_millis(3),
            10,
            20,
        );
        let open = t.encode();
        assert!(open.contains("# TYPE istio_requests counter\n"), "{open}");
        assert!(open.ends_with("# EOF\n"));
        let classic = t.encode_classic();
        assert!(classic.contains("# TYPE istio_requests_total counter\n"));
        assert!(classic.contains("# HELP istio_requests_total Requests"));
        assert!(classic.contains("# TYPE istio_request_duration_milliseconds histogram\n"));
        assert!(!classic.contains("# EOF"));
        let sample = classic
            .lines()
            .find(|l| l.starts_with("istio_requests_total{"))
            .unwrap();
        for label in [
            "reporter=\"source\"",
            "destination_service=\"inventory\"",
            "response_code=\"200\"",
            "response_flags=\"-\"",
            "grpc_response_status=\"\"",
            "connection_security_policy=\"unknown\"",
            "request_protocol=\"http\"",
        ] {
            assert!(sample.contains(label), "{label} missing in {sample}");
        }
        assert!(sample.ends_with(" 1"), "{sample}");
        let le_3 = classic
            .lines()
            .find(|l| {
                l.starts_with("istio_request_duration_milliseconds_bucket{")
                    && l.contains("le=\"5.0\"")
            })
            .unwrap();
        assert!(le_3.ends_with(" 1"), "{le_3}");
    }
}
