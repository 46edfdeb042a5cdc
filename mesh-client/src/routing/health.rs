//! Active health checks: each endpoint of a checked service is probed through the mesh (an
//! HBONE tunnel to its application port, and for HTTP checks a `GET` inside it) and the
//! verdicts, debounced by [`HealthChecker`]'s thresholds, are handed to the balancers.

use std::{net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http::{Request, StatusCode, header::HOST};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use mesh_core::{
    config::{Probe, ServiceHealthCheck},
    model::{Endpoint, Service},
    resilience::HealthChecker,
};
use mesh_tls::ExpectedIdentities;
use tokio::task::{JoinHandle, JoinSet};

use super::BalancedDestinations;
use crate::{
    discovery::Discovery,
    hbone::{Destination, HboneClient},
};

/// Probing tasks; they stop when this is dropped.
pub struct HealthChecks {
    tasks: Vec<JoinHandle<()>>,
}

impl HealthChecks {
    /// Starts one probing task per checked service. Needs a tokio runtime.
    pub fn spawn(
        checks: Vec<ServiceHealthCheck>,
        hbone: HboneClient,
        discovery: Arc<dyn Discovery>,
        routes: Arc<BalancedDestinations>,
    ) -> Self {
        let tasks = checks
            .into_iter()
            .map(|check| tokio::spawn(run(check, hbone.clone(), discovery.clone(), routes.clone())))
            .collect();
        Self { tasks }
    }
}

impl Drop for HealthChecks {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl std::fmt::Debug for HealthChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthChecks")
            .field("services", &self.tasks.len())
            .finish()
    }
}

async fn run(
    check: ServiceHealthCheck,
    hbone: HboneClient,
    discovery: Arc<dyn Discovery>,
    routes: Arc<BalancedDestinations>,
) {
    let Ok(mut checker) = HealthChecker::new(check.config) else {
        return; // validated with the configuration
    };
    let host = check.host.as_str().to_owned();
    let mut ticker = tokio::time::interval(check.config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let snapshot = discovery.current();
        let (Some(service), Some(endpoints)) = (snapshot.service(&host), snapshot.endpoints(&host))
        else {
            continue;
        };
        checker.set_endpoints(endpoints.iter().map(|e| e.address));
        let mut probes = JoinSet::new();
        for endpoint in endpoints.iter() {
            let Some(dest) = destination(service, endpoint) else {
                continue;
            };
            let (hbone, probe, address) = (hbone.clone(), check.probe.clone(), endpoint.address);
            let (timeout, host) = (check.config.timeout, host.clone());
            probes.spawn(async move {
                let ok = tokio::time::timeout(timeout, probe_once(&hbone, &dest, &probe, &host))
                    .await
                    .unwrap_or(false);
                (address, ok)
            });
        }
        while let Some(result) = probes.join_next().await {
            let Ok((address, ok)) = result else { continue };
            if let Some(healthy) = checker.record(address, ok) {
                tracing::info!(service = %host, endpoint = %address, healthy, "active health check");
                routes.set_health(&host, address, healthy);
            }
        }
    }
}

/// Where a probe of `endpoint` goes: its own address port, verified like any call.
fn destination(service: &Service, endpoint: &Endpoint) -> Option<Destination> {
    let expected = match &endpoint.identity {
        Some(id) => ExpectedIdentities::one(id.clone()),
        None if !service.expected_identities.is_empty() => {
            ExpectedIdentities::new(service.expected_identities.iter().cloned())
        }
        None => return None,
    };
    Some(Destination {
        hbone_addr: endpoint.hbone_address()?,
        target_port: endpoint.address.port(),
        expected,
    })
}

async fn probe_once(hbone: &HboneClient, dest: &Destination, probe: &Probe, host: &str) -> bool {
    let Ok(stream) = hbone.connect(dest).await else {
        return false;
    };
    match probe {
        Probe::Http { path } => http_get(stream, path, host, dest.authority()).await,
        // The tunnel opened: the destination reached the application port.
        _ => true,
    }
}

async fn http_get(
    stream: crate::hbone::H2Stream,
    path: &str,
    host: &str,
    authority: SocketAddr,
) -> bool {
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return false;
    };
    tokio::spawn(conn);
    let Ok(request) = Request::get(path)
        .header(HOST, host)
        .header("user-agent", "mesh-health-check")
        .body(Empty::<Bytes>::new())
    else {
        return false;
    };
    match sender.send_request(request).await {
        Ok(response) => {
            let ok = response.status().is_success();
            if !ok && response.status() != StatusCode::SERVICE_UNAVAILABLE {
                tracing::debug!(endpoint = %authority, status = %response.status(), "health check failed");
            }
            ok
        }
        Err(_) => false,
    }
}
