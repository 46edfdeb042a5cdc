//! The workload's telemetry and admin endpoint: what `/metrics`, `/healthz/ready` and
//! `/config_dump` show about a [`Mesh`].
//!
//! The mesh's [`Telemetry`] is built from the `telemetry:` section and wired into its HBONE
//! client and server, its HTTP client and its policy checks. State the mesh already holds
//! (certificate expiry, discovery, outlier ejections) is read at scrape time through a
//! [`StateSource`] that holds the mesh weakly. With an `admin:` section the endpoint starts
//! with the mesh; [`Mesh::serve_admin`] starts one anywhere else.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError, Weak},
    time::{SystemTime, UNIX_EPOCH},
};

use mesh_core::{
    config::{IdentitySource, WorkloadSettings},
    model::{Health, Protocol},
};
use mesh_tls::MeshTls;
use serde_json::{Value, json};

use super::{Inner, Mesh, MeshError, policy::Policies};
use crate::observe::{
    AdminServer, AdminState, CertificateState, DiscoveryState, LogControl, OutlierState,
    StateReport, StateSource, Telemetry, WorkloadLabels,
};
use crate::resilience::ResilientClient;

/// The mesh's telemetry and what keeps the admin endpoint running, held by the mesh.
pub(crate) struct Observe {
    telemetry: Telemetry,
    /// Whether the data path records (metrics or access logs wanted).
    recording: bool,
    /// The endpoint started from the `admin:` section.
    admin: Mutex<Option<AdminServer>>,
    /// The scrape-time source; the telemetry holds it weakly.
    source: Mutex<Option<Arc<MeshState>>>,
}

impl Observe {
    /// The telemetry of a workload with these settings and identity; policy decisions are
    /// recorded in it from now on.
    pub(crate) fn new(settings: &WorkloadSettings, tls: &MeshTls, policies: &Policies) -> Self {
        let id = tls.credentials().svid().spiffe_id().clone();
        let telemetry = Telemetry::new(WorkloadLabels::local(settings, &id), &settings.telemetry);
        let wanted = &settings.telemetry;
        let recording = wanted.metrics || wanted.access_log.enabled || wanted.otlp.is_some();
        if recording {
            policies.set_telemetry(telemetry.clone());
        }
        Self {
            telemetry,
            recording,
            admin: Mutex::new(None),
            source: Mutex::new(None),
        }
    }

    /// What the data path records into (`None`: nothing is recorded).
    pub(crate) fn recording(&self) -> Option<Telemetry> {
        self.recording.then(|| self.telemetry.clone())
    }

    /// `client` recording into this telemetry (unchanged when nothing is recorded).
    pub(crate) fn instrument(&self, client: ResilientClient) -> ResilientClient {
        match self.recording() {
            Some(telemetry) => client.with_telemetry(telemetry),
            None => client,
        }
    }
}

/// Starts exporting spans to the configured OTLP collector.
#[cfg(feature = "otlp")]
fn start_otlp(mesh: &Mesh, otlp: &mesh_core::config::OtlpSettings) -> Result<(), MeshError> {
    let local = mesh.inner.observe.telemetry.local();
    let mut resource = vec![(
        "service.name",
        otlp.service_name
            .clone()
            .unwrap_or_else(|| local.canonical_service.clone()),
    )];
    for (key, value) in [
        ("service.version", &local.canonical_revision),
        ("k8s.namespace.name", &local.namespace),
        ("mesh.workload", &local.workload),
        ("mesh.principal", &local.principal),
    ] {
        if value != crate::observe::UNKNOWN {
            resource.push((key, value.clone()));
        }
    }
    let telemetry = &mesh.inner.observe.telemetry;
    let exporter = crate::observe::otlp::OtlpExporter::start(
        &otlp.endpoint,
        resource,
        telemetry.spans_dropped(),
    )
    .map_err(|e| MeshError::Telemetry(e.to_string()))?;
    mesh.inner.observe.telemetry.set_span_sink(exporter);
    Ok(())
}

#[cfg(not(feature = "otlp"))]
fn start_otlp(_: &Mesh, _: &mesh_core::config::OtlpSettings) -> Result<(), MeshError> {
    Err(MeshError::Telemetry(
        "telemetry.otlp needs mesh-client built with the `otlp` cargo feature (features = \
         [\"otlp\"]); remove the section or enable the feature"
            .to_owned(),
    ))
}

/// Registers the mesh's state for scrapes and starts the configured admin endpoint and span
/// export.
pub(crate) async fn start(mesh: &Mesh) -> Result<(), MeshError> {
    if let Some(otlp) = &mesh.inner.settings.telemetry.otlp {
        start_otlp(mesh, otlp)?;
    }
    let observe = &mesh.inner.observe;
    let state = Arc::new(MeshState(Arc::downgrade(&mesh.inner)));
    observe
        .telemetry
        .add_state_source(Arc::downgrade(&state) as Weak<dyn StateSource>);
    let server = match &mesh.inner.settings.admin {
        Some(admin) => Some(mesh.bind_admin(admin.listen, state.clone()).await?),
        None => None,
    };
    *observe.admin.lock().unwrap_or_else(PoisonError::into_inner) = server;
    *observe
        .source
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(state);
    Ok(())
}

impl Mesh {
    /// The workload's metrics registry (Istio's standard metrics and the mesh's own), for
    /// exposing it elsewhere or recording into it.
    pub fn telemetry(&self) -> &Telemetry {
        &self.inner.observe.telemetry
    }

    /// The telemetry the data path records into, or `None` when neither metrics nor access
    /// logs are wanted (`telemetry: { metrics: false }`).
    pub(crate) fn recording(&self) -> Option<Telemetry> {
        self.inner.observe.recording()
    }

    /// Where the admin endpoint started from the `admin:` section listens, if it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.inner
            .observe
            .admin
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(AdminServer::local_addr)
    }

    /// Starts an admin endpoint on `listen` (port 0 picks one): `/metrics`,
    /// `/stats/prometheus`, `/healthz/ready`, `/config_dump`, and `/logging` when the process
    /// installed its subscriber with [`init_logging`](crate::observe::init_logging). It runs
    /// until the returned server is dropped.
    pub async fn serve_admin(&self, listen: SocketAddr) -> Result<AdminServer, MeshError> {
        let state = Arc::new(MeshState(Arc::downgrade(&self.inner)));
        self.bind_admin(listen, state).await
    }

    async fn bind_admin(
        &self,
        listen: SocketAddr,
        state: Arc<MeshState>,
    ) -> Result<AdminServer, MeshError> {
        let telemetry = self.inner.observe.telemetry.clone();
        AdminServer::bind(listen, telemetry, state, LogControl::global())
            .await
            .map_err(|e| MeshError::Admin {
                addr: listen.to_string(),
                reason: e.to_string(),
            })
    }
}

/// The mesh as the admin endpoint and the scrape see it; holds it weakly.
pub(crate) struct MeshState(Weak<Inner>);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl StateSource for MeshState {
    fn report(&self, report: &mut StateReport) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let svid = inner.identity.tls.credentials().svid();
        report.certificates.push(CertificateState::new(
            svid.spiffe_id().as_str(),
            svid.not_after().as_secs(),
        ));
        // One series per backend (`static`, `file`, `etcd`, `dns`, and `merged` for conflicts
        // between them), with the failures each backend counted itself.
        for (kind, status) in inner.discovery.backends() {
            report.discovery.push(DiscoveryState::new(
                kind,
                status.updates,
                status.errors,
                status.last_error.is_none(),
            ));
        }
        for o in inner.routes.outlier_status() {
            let service = match &o.subset {
                Some(subset) => format!("{}/{subset}", o.host),
                None => o.host.clone(),
            };
            report
                .outliers
                .push(OutlierState::new(service, o.ejected.len(), o.ejections));
        }
    }
}

impl AdminState for MeshState {
    fn ready(&self) -> Result<(), String> {
        let inner = self.0.upgrade().ok_or("the mesh has shut down")?;
        let svid = inner.identity.tls.credentials().svid();
        let expiry = svid.not_after().as_secs();
        if expiry <= unix_now() {
            return Err(format!(
                "the SVID of {} expired at {} (Unix seconds) and has not been renewed",
                svid.spiffe_id(),
                expiry
            ));
        }
        if inner.discovery.current().is_empty() && inner.discovery.status().last_error.is_some() {
            return Err(format!(
                "discovery has no services and is failing: {}",
                inner.discovery.status().last_error.unwrap_or_default()
            ));
        }
        Ok(())
    }

    fn config_dump(&self) -> Value {
        let Some(inner) = self.0.upgrade() else {
            return json!({ "error": "the mesh has shut down" });
        };
        config_dump(&inner)
    }
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Http => "http",
        Protocol::Http2 => "http2",
        Protocol::Grpc => "grpc",
        _ => "tcp",
    }
}

fn health_name(h: Health) -> &'static str {
    match h {
        Health::Healthy => "healthy",
        Health::Unhealthy => "unhealthy",
        Health::Draining => "draining",
        #[allow(unreachable_patterns)]
        _ => "unknown",
    }
}

fn config_dump(inner: &Inner) -> Value {
    let settings = &inner.settings;
    let svid = inner.identity.tls.credentials().svid();
    let expiry = svid.not_after().as_secs();
    let snapshot = inner.discovery.current();
    let status = inner.discovery.status();
    let outliers = inner.routes.outlier_status();
    let services: Vec<Value> = snapshot
        .iter()
        .map(|(service, endpoints)| {
            let host = service.hostname.as_str();
            let endpoints: Vec<Value> = endpoints
                .iter()
                .map(|e| {
                    let ejected = outliers
                        .iter()
                        .any(|o| o.host == host && o.ejected.contains(&e.address));
                    json!({
                        "address": e.address.to_string(),
                        "hbone_port": e.hbone_port,
                        "identity": e.identity.as_ref().map(|id| id.as_str()),
                        "weight": e.weight,
                        "locality": e.locality.to_string(),
                        "health": health_name(e.health),
                        "ejected": ejected,
                        "labels": e.labels,
                    })
                })
                .collect();
            json!({
                "host": host,
                "ports": service.ports.iter().map(|p| json!({
                    "port": p.number,
                    "name": p.name,
                    "protocol": protocol_name(p.protocol),
                })).collect::<Vec<_>>(),
                "identities": service.expected_identities.iter().map(|i| i.as_str()).collect::<Vec<_>>(),
                "endpoints": endpoints,
            })
        })
        .collect();
    let identity_source = match &settings.identity.source {
        IdentitySource::Files { cert, .. } => {
            json!({ "files": { "cert": cert.display().to_string() } })
        }
        IdentitySource::DevCa { dir, svid_ttl } => json!({
            "dev_ca": { "dir": dir.display().to_string(), "svid_ttl_seconds": svid_ttl.as_secs() }
        }),
        _ => json!("other"),
    };
    let pool = inner.hbone.stats();
    let state = inner.observe.telemetry.state();
    json!({
        "workload": {
            "name": settings.name,
            "namespace": settings.namespace,
            "labels": settings.labels,
            "spiffe_id": svid.spiffe_id().as_str(),
        },
        "certificates": [{
            "spiffe_id": svid.spiffe_id().as_str(),
            "not_after": crate::observe::rfc3339_secs(expiry),
            "expiry_unix": expiry,
            "seconds_left": expiry.saturating_sub(unix_now()),
            "source": identity_source,
            "trust_domains": settings.identity.trust_domains.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }],
        "inbound": settings.inbound.as_ref().map(|i| json!({
            "listen": i.listen.to_string(),
            "forward": i.forward.iter().map(|(p, a)| (p.to_string(), a.to_string())).collect::<std::collections::BTreeMap<_, _>>(),
            "max_concurrent_streams": i.max_concurrent_streams,
            "drain_timeout_ms": i.drain_timeout.as_millis() as u64,
        })),
        "admin": settings.admin.as_ref().map(|a| json!({ "listen": a.listen.to_string() })),
        "telemetry": {
            "metrics": settings.telemetry.metrics,
            "access_log": {
                "enabled": settings.telemetry.access_log.enabled,
                "sampling": settings.telemetry.access_log.sampling,
                "errors_only": settings.telemetry.access_log.errors_only,
            },
            "flows": state.flows,
        },
        "discovery": {
            "version": snapshot.version(),
            "updates": status.updates,
            "last_error": status.last_error,
            "file": settings.discovery_file.as_ref().map(|p| p.display().to_string()),
            "etcd": settings.etcd.as_ref().map(|e| json!({ "endpoints": e.endpoints, "prefix": e.prefix })),
            "services": services,
        },
        "outlier_detection": outliers.iter().map(|o| json!({
            "host": o.host,
            "port": o.port,
            "subset": o.subset,
            "enabled": o.detecting,
            "ejected": o.ejected.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "ejections": o.ejections,
        })).collect::<Vec<_>>(),
        "pools": {
            "outbound": {
                "connections_open": pool.connections_open,
                "connections_opened": pool.connections_opened,
                "streams_open": pool.streams_open,
            },
            "inbound": {
                "connections": state.inbound_connections,
                "tunnels": state.inbound_tunnels,
            },
        },
        "policies": {
            "files": settings.policies.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "authorization": inner.authz.authorization_policies(),
            "request_authentication": inner.authz.authenticates(),
            "rate_limit": {
                "local": settings.rate_limit.local.as_ref().map(|p| p.display().to_string()),
                "global": settings.rate_limit.global.as_ref().map(|g| json!({
                    "rules": g.rules.display().to_string(),
                    "redis": g.redis,
                    "fail_closed": g.fail_closed,
                })),
            },
            "traffic_files": settings.traffic_files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        },
    })
}
