use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use mesh_core::{
    balance::{BalanceConfigError, Balancer, PickContext, Policy, PriorityConfig},
    clock::{Clock, SystemClock, Timestamp},
    model::{Endpoint, Service, Snapshot},
    resilience::{Outcome, OutlierConfig, OutlierConfigError, OutlierDetector, OutlierEvent},
    rng::{Rng, SplitMix64},
};
use mesh_tls::ExpectedIdentities;

use crate::{discovery::Discovery, hbone::Destination, http::ResolveDestination};

/// Per-service balancers kept in step with a [`Discovery`] backend.
pub struct BalancedDestinations {
    discovery: Arc<dyn Discovery>,
    policy: Policy,
    priority: PriorityConfig,
    outlier: OutlierConfig,
    services: Mutex<HashMap<String, ServiceBalancer>>,
}

struct ServiceBalancer {
    /// The endpoint set the balancer holds (compared by pointer to detect updates).
    endpoints: Arc<[Endpoint]>,
    balancer: Box<dyn Balancer + Send>,
    /// Passive health: ejections are forwarded to the balancer.
    outliers: OutlierDetector,
}

impl ServiceBalancer {
    fn apply(&mut self, events: impl IntoIterator<Item = OutlierEvent>) {
        for event in events {
            tracing::info!(endpoint = %event.address(), ejected = event.is_ejection(), "outlier detection");
            self.balancer
                .set_ejected(event.address(), event.is_ejection());
        }
    }

    fn tick(&mut self, now: Timestamp) {
        if now >= self.outliers.next_deadline() {
            let events = self.outliers.tick(now);
            self.apply(events);
        }
    }
}

impl BalancedDestinations {
    /// Balances every service with `policy` (Istio's `ROUND_ROBIN` is [`Policy::RoundRobin`]).
    ///
    /// Fails only if the policy's settings are invalid.
    pub fn new(discovery: Arc<dyn Discovery>, policy: Policy) -> Result<Self, BalanceConfigError> {
        let priority = PriorityConfig::default();
        // Validate once so `resolve` cannot fail on configuration.
        policy.build(priority.clone(), Arc::new(SystemClock), 0)?;
        Ok(Self {
            discovery,
            policy,
            priority,
            outlier: OutlierConfig::default(),
            services: Mutex::new(HashMap::new()),
        })
    }

    /// Uses `config` for passive health checking (Istio `outlierDetection`; default: Istio's).
    pub fn with_outlier_detection(
        mut self,
        config: OutlierConfig,
    ) -> Result<Self, OutlierConfigError> {
        config.validate()?;
        self.outlier = config;
        Ok(self)
    }

    /// Whether outlier detection currently ejects `endpoint` of `host`.
    pub fn is_ejected(&self, host: &str, endpoint: SocketAddr) -> bool {
        let services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        services
            .get(&normalize(host))
            .is_some_and(|s| s.outliers.is_ejected(endpoint))
    }

    /// Picks an endpoint of `host` and describes how to reach it on `port`.
    ///
    /// `port` must be one the service declares, when it declares any. The target port inside
    /// the tunnel is the endpoint's own address port for the service's first declared port (or
    /// for any port when none are declared), which is how a `targetPort` differing from the
    /// service port is written; every other declared port is reached at the same number on
    /// the endpoint.
    pub fn pick(&self, host: &str, port: u16) -> Option<Destination> {
        let snapshot = self.discovery.current();
        let (service, endpoints) = lookup(&snapshot, host)?;
        if !service.ports.is_empty() && service.port(port).is_none() {
            return None;
        }
        let mut services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = match services.get_mut(service.hostname.as_str()) {
            Some(entry) => entry,
            None => {
                let balancer = self
                    .policy
                    .build(
                        self.priority.clone(),
                        Arc::new(SystemClock),
                        SplitMix64::from_entropy().next_u64(),
                    )
                    .ok()?;
                let outliers = OutlierDetector::new(self.outlier, SystemClock.now()).ok()?;
                services
                    .entry(service.hostname.as_str().to_owned())
                    .or_insert(ServiceBalancer {
                        endpoints: Arc::from(Vec::new()),
                        balancer,
                        outliers,
                    })
            }
        };
        if !Arc::ptr_eq(&entry.endpoints, endpoints) {
            entry.balancer.update(endpoints.clone());
            entry
                .outliers
                .set_endpoints(endpoints.iter().map(|e| e.address));
            // Ejections survive the update for endpoints that remain.
            let ejected: Vec<SocketAddr> = entry.outliers.ejected().collect();
            for address in ejected {
                entry.balancer.set_ejected(address, true);
            }
            entry.endpoints = endpoints.clone();
        }
        entry.tick(SystemClock.now());
        let index = entry.balancer.pick(&PickContext::new())?;
        let endpoint = entry.balancer.endpoints().get(index)?.clone();
        destination(&service, &endpoint, port)
    }
}

fn normalize(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn lookup<'a>(snapshot: &'a Snapshot, host: &str) -> Option<(Arc<Service>, &'a Arc<[Endpoint]>)> {
    let host = normalize(host);
    Some((snapshot.service(&host)?.clone(), snapshot.endpoints(&host)?))
}

fn destination(service: &Service, endpoint: &Endpoint, port: u16) -> Option<Destination> {
    let hbone_addr: SocketAddr = endpoint.hbone_address()?;
    let expected = match &endpoint.identity {
        Some(id) => ExpectedIdentities::one(id.clone()),
        None if !service.expected_identities.is_empty() => {
            ExpectedIdentities::new(service.expected_identities.iter().cloned())
        }
        // Without any identity to pin, refuse rather than accept anyone.
        None => return None,
    };
    Some(Destination {
        hbone_addr,
        target_port: match service.ports.first() {
            Some(primary) if primary.number != port => port,
            _ => endpoint.address.port(),
        },
        expected,
    })
}

impl ResolveDestination for BalancedDestinations {
    fn resolve(&self, host: &str, port: u16) -> Option<Destination> {
        self.pick(host, port)
    }

    fn report(&self, host: &str, endpoint: SocketAddr, outcome: Outcome) {
        let mut services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = services.get_mut(&normalize(host)) {
            let now = SystemClock.now();
            if let Some(event) = entry.outliers.record(endpoint, outcome, now) {
                entry.apply([event]);
            }
            entry.tick(now);
        }
    }
}

impl fmt::Debug for BalancedDestinations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalancedDestinations")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}
