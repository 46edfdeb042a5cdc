//! The metric families: Istio's standard metrics with Istio's buckets, and the mesh's own.
//!
//! Counters are registered without `_total`; the OpenMetrics encoder appends it, so
//! `istio_requests` is scraped as `istio_requests_total`, exactly Istio's name.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

use super::labels::{RequestLabels, TcpLabels};

/// Istio's buckets for `istio_request_duration_milliseconds` (the stats plugin's defaults).
pub const DURATION_BUCKETS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Istio's buckets for `istio_request_bytes` and `istio_response_bytes`: powers of ten from 1
/// to 10^7.
pub const BYTES_BUCKETS: [f64; 8] = [
    1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0, 10000000.0,
];

/// A family of histograms built by a plain function (so the family stays `Send + Sync`).
pub(crate) type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS_MS)
}

fn bytes_histogram() -> Histogram {
    Histogram::new(BYTES_BUCKETS)
}

/// Istio's standard metrics.
#[derive(Debug)]
pub(crate) struct IstioFamilies {
    pub(crate) requests: Family<RequestLabels, Counter>,
    pub(crate) duration: Histograms<RequestLabels>,
    pub(crate) request_bytes: Histograms<RequestLabels>,
    pub(crate) response_bytes: Histograms<RequestLabels>,
    pub(crate) tcp_sent: Family<TcpLabels, Counter>,
    pub(crate) tcp_received: Family<TcpLabels, Counter>,
    pub(crate) tcp_opened: Family<TcpLabels, Counter>,
    pub(crate) tcp_closed: Family<TcpLabels, Counter>,
}

impl IstioFamilies {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let this = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            request_bytes: Family::new_with_constructor(bytes_histogram),
            response_bytes: Family::new_with_constructor(bytes_histogram),
            tcp_sent: Family::default(),
            tcp_received: Family::default(),
            tcp_opened: Family::default(),
            tcp_closed: Family::default(),
        };
        registry.register(
            "istio_requests",
            "Requests, by source and destination workload and response code",
            this.requests.clone(),
        );
        registry.register(
            "istio_request_duration_milliseconds",
            "Time from the request's arrival (or sending) to the end of its response, in milliseconds",
            this.duration.clone(),
        );
        registry.register(
            "istio_request_bytes",
            "HTTP request body sizes, in bytes",
            this.request_bytes.clone(),
        );
        registry.register(
            "istio_response_bytes",
            "HTTP response body sizes, in bytes",
            this.response_bytes.clone(),
        );
        registry.register(
            "istio_tcp_sent_bytes",
            "Bytes sent to the downstream (towards the caller) on TCP tunnels",
            this.tcp_sent.clone(),
        );
        registry.register(
            "istio_tcp_received_bytes",
            "Bytes received from the downstream (from the caller) on TCP tunnels",
            this.tcp_received.clone(),
        );
        registry.register(
            "istio_tcp_connections_opened",
            "TCP tunnels opened",
            this.tcp_opened.clone(),
        );
        registry.register(
            "istio_tcp_connections_closed",
            "TCP tunnels closed",
            this.tcp_closed.clone(),
        );
        this
    }
}

/// `direction`, `result` and `reason` of a TLS handshake.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HandshakeLabels {
    pub(crate) direction: &'static str,
    pub(crate) result: &'static str,
    pub(crate) reason: &'static str,
}

/// A destination service (`host`, or `host/subset`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ServiceLabel {
    pub(crate) destination_service: String,
}

/// A circuit-breaker overflow.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OverflowLabels {
    pub(crate) destination_service: String,
    /// `connections`, `pending`, `requests` or `retries`.
    pub(crate) kind: &'static str,
}

/// An authorization decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AuthzLabels {
    /// `tcp` (per tunnel) or `http` (per request).
    pub(crate) layer: &'static str,
    /// `allow` or `deny`.
    pub(crate) action: &'static str,
    /// `namespace/name` of the deciding policy, or `none` (no policy decided: the default).
    pub(crate) policy: String,
}

/// A request refused by a rate limit.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RateLimitLabels {
    /// `local` or `global`.
    pub(crate) limiter: &'static str,
    /// `tcp` or `http`.
    pub(crate) layer: &'static str,
    /// `over_limit` (429) or `service_error` (Redis failed and the limit fails closed).
    pub(crate) reason: &'static str,
}

/// The mesh's own event counters (state gauges are collected at scrape time, see `state`).
#[derive(Debug)]
pub(crate) struct MeshFamilies {
    pub(crate) handshakes: Family<HandshakeLabels, Counter>,
    pub(crate) retries: Family<ServiceLabel, Counter>,
    pub(crate) retry_budget_exhausted: Family<ServiceLabel, Counter>,
    pub(crate) breaker_overflows: Family<OverflowLabels, Counter>,
    pub(crate) authz: Family<AuthzLabels, Counter>,
    pub(crate) rate_limited: Family<RateLimitLabels, Counter>,
    pub(crate) access_log_dropped: Counter,
    pub(crate) label_overflow: Counter,
    /// Spans not exported: queue full, or the collector refused or could not be reached.
    pub(crate) spans_dropped: Counter,
}

impl MeshFamilies {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let this = Self {
            handshakes: Family::default(),
            retries: Family::default(),
            retry_budget_exhausted: Family::default(),
            breaker_overflows: Family::default(),
            authz: Family::default(),
            rate_limited: Family::default(),
            access_log_dropped: Counter::default(),
            label_overflow: Counter::default(),
            spans_dropped: Counter::default(),
        };
        registry.register(
            "mesh_tls_handshakes",
            "Mutual-TLS handshakes of HBONE connections, by direction, result and failure reason",
            this.handshakes.clone(),
        );
        registry.register(
            "mesh_retries",
            "Request retries sent, by destination service",
            this.retries.clone(),
        );
        registry.register(
            "mesh_retry_budget_exhausted",
            "Retries not sent because the retry budget (or the breaker's retry limit) was exhausted",
            this.retry_budget_exhausted.clone(),
        );
        registry.register(
            "mesh_circuit_breaker_overflows",
            "Requests or connections refused by a circuit breaker, by destination and limit kind",
            this.breaker_overflows.clone(),
        );
        registry.register(
            "mesh_authz_decisions",
            "Authorization decisions on inbound traffic, by layer, action and deciding policy",
            this.authz.clone(),
        );
        registry.register(
            "mesh_rate_limit_rejections",
            "Inbound requests and tunnels refused by a rate limit",
            this.rate_limited.clone(),
        );
        registry.register(
            "mesh_access_log_dropped",
            "Access log lines dropped because the writer fell behind",
            this.access_log_dropped.clone(),
        );
        registry.register(
            "mesh_spans_dropped",
            "Spans not exported to the OTLP collector (queue full, or the export failed)",
            this.spans_dropped.clone(),
        );
        registry.register(
            "mesh_metrics_label_overflow",
            "Flows recorded under `unknown` labels because the label-set limit was reached",
            this.label_overflow.clone(),
        );
        this
    }
}
