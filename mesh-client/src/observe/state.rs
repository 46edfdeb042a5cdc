//! State read at scrape time: pools, inbound connections, certificates, discovery, outlier
//! ejections. Nothing is recorded on the data path for these; each component that owns such
//! state registers itself as a [`StateSource`] (held weakly, so a dropped component simply
//! disappears from the next scrape).

use std::sync::{Mutex, PoisonError, Weak};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
};

/// A component reporting its state on each scrape.
pub trait StateSource: Send + Sync + 'static {
    /// Adds this component's numbers to `report`.
    fn report(&self, report: &mut StateReport);
}

/// Everything the scrape-time metrics show. Sources add to it; counts of several pools or
/// servers add up.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct StateReport {
    /// Outbound HBONE connections currently pooled.
    pub pool_connections: usize,
    /// Outbound HBONE connections opened since start.
    pub pool_connections_opened: u64,
    /// Outbound tunnels (HTTP/2 streams) currently open.
    pub pool_streams: usize,
    /// Inbound HBONE connections currently open.
    pub inbound_connections: usize,
    /// Inbound tunnels currently open.
    pub inbound_tunnels: usize,
    /// The workload certificates and when they expire.
    pub certificates: Vec<CertificateState>,
    /// Discovery backends.
    pub discovery: Vec<DiscoveryState>,
    /// Outlier detection per destination service.
    pub outliers: Vec<OutlierState>,
    /// Distinct metric flows (label sets) recorded.
    pub flows: usize,
}

/// One certificate in use.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateState {
    /// Its SPIFFE ID.
    pub spiffe_id: String,
    /// Its `notAfter`, in seconds since the Unix epoch.
    pub expiry_unix: u64,
}

impl CertificateState {
    /// A certificate of `spiffe_id` expiring at `expiry_unix`.
    pub fn new(spiffe_id: impl Into<String>, expiry_unix: u64) -> Self {
        Self {
            spiffe_id: spiffe_id.into(),
            expiry_unix,
        }
    }
}

/// One discovery backend.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiscoveryState {
    /// Which backend (`merged`, `static`, ...).
    pub source: String,
    /// Snapshots published.
    pub updates: u64,
    /// Failed refreshes observed.
    pub errors: u64,
    /// Whether the last refresh succeeded.
    pub healthy: bool,
}

impl DiscoveryState {
    /// A backend's numbers.
    pub fn new(source: impl Into<String>, updates: u64, errors: u64, healthy: bool) -> Self {
        Self {
            source: source.into(),
            updates,
            errors,
            healthy,
        }
    }
}

/// Outlier detection of one destination (`host`, or `host/subset`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutlierState {
    /// The destination.
    pub service: String,
    /// Endpoints ejected now.
    pub ejected: usize,
    /// Ejections enforced since its balancer was built.
    pub ejections: u64,
}

impl OutlierState {
    /// A destination's numbers.
    pub fn new(service: impl Into<String>, ejected: usize, ejections: u64) -> Self {
        Self {
            service: service.into(),
            ejected,
            ejections,
        }
    }
}

/// Collects [`StateReport`]s from the registered sources at each scrape.
#[derive(Default)]
pub(crate) struct StateCollector {
    sources: Mutex<Vec<Weak<dyn StateSource>>>,
}

impl std::fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateCollector").finish_non_exhaustive()
    }
}

impl StateCollector {
    pub(crate) fn add(&self, source: Weak<dyn StateSource>) {
        let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        sources.retain(|s| s.strong_count() > 0);
        sources.push(source);
    }

    /// Asks every live source.
    pub(crate) fn report(&self) -> StateReport {
        let sources: Vec<_> = {
            let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
            sources.retain(|s| s.strong_count() > 0);
            sources.iter().filter_map(Weak::upgrade).collect()
        };
        let mut report = StateReport::default();
        for source in sources {
            source.report(&mut report);
        }
        report
    }
}

/// A shared pointer to the collector, registered with the registry.
#[derive(Debug)]
pub(crate) struct Registered(
    pub(crate) std::sync::Arc<StateCollector>,
    pub(crate) std::sync::Arc<super::recorder::FlowCache>,
);

fn gauge<
    V: prometheus_client::encoding::EncodeGaugeValue + std::fmt::Debug + Send + Sync + 'static,
>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: V,
) -> std::fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn labeled<L: EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    series: impl IntoIterator<Item = (L, M)>,
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, metric) in series {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Registered {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let mut report = self.0.report();
        report.flows = self.1.len();
        let e = &mut encoder;
        gauge(
            e,
            "mesh_pool_connections",
            "Outbound HBONE connections pooled now",
            report.pool_connections as i64,
        )?;
        ConstCounter::new(report.pool_connections_opened).encode(e.encode_descriptor(
            "mesh_pool_connections_opened",
            "Outbound HBONE connections opened (one mTLS handshake each)",
            None,
            MetricType::Counter,
        )?)?;
        gauge(
            e,
            "mesh_pool_streams",
            "Outbound tunnels (HTTP/2 streams) open now",
            report.pool_streams as i64,
        )?;
        gauge(
            e,
            "mesh_inbound_connections",
            "Inbound HBONE connections open now",
            report.inbound_connections as i64,
        )?;
        gauge(
            e,
            "mesh_inbound_tunnels",
            "Inbound tunnels open now",
            report.inbound_tunnels as i64,
        )?;
        gauge(
            e,
            "mesh_metrics_flows",
            "Distinct flows (label sets) recorded",
            report.flows as i64,
        )?;
        labeled(
            e,
            "mesh_certificate_expiry_timestamp_seconds",
            "When the workload certificate expires, in seconds since the Unix epoch",
            MetricType::Gauge,
            report.certificates.iter().map(|c| {
                (
                    [("spiffe_id", c.spiffe_id.as_str())],
                    ConstGauge::new(c.expiry_unix as i64),
                )
            }),
        )?;
        labeled(
            e,
            "mesh_discovery_updates",
            "Service snapshots published by discovery",
            MetricType::Counter,
            report.discovery.iter().map(|d| {
                (
                    [("source", d.source.as_str())],
                    ConstCounter::new(d.updates),
                )
            }),
        )?;
        labeled(
            e,
            "mesh_discovery_errors",
            "Failed discovery refreshes observed (the last good snapshot stays in force)",
            MetricType::Counter,
            report
                .discovery
                .iter()
                .map(|d| ([("source", d.source.as_str())], ConstCounter::new(d.errors))),
        )?;
        labeled(
            e,
            "mesh_discovery_healthy",
            "1 when the backend's last refresh succeeded, 0 while it is failing",
            MetricType::Gauge,
            report.discovery.iter().map(|d| {
                (
                    [("source", d.source.as_str())],
                    ConstGauge::new(i64::from(d.healthy)),
                )
            }),
        )?;
        labeled(
            e,
            "mesh_outlier_ejections",
            "Endpoints ejected by outlier detection, by destination",
            MetricType::Counter,
            report.outliers.iter().map(|o| {
                (
                    [("destination_service", o.service.as_str())],
                    ConstCounter::new(o.ejections),
                )
            }),
        )?;
        labeled(
            e,
            "mesh_outlier_ejected_endpoints",
            "Endpoints currently ejected by outlier detection, by destination",
            MetricType::Gauge,
            report.outliers.iter().map(|o| {
                (
                    [("destination_service", o.service.as_str())],
                    ConstGauge::new(o.ejected as i64),
                )
            }),
        )?;
        Ok(())
    }
}
