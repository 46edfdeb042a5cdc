use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use mesh_core::{
    balance::{BalanceConfigError, Balancer, PickContext, Policy, PriorityConfig},
    clock::SystemClock,
    model::{Endpoint, Service, Snapshot},
    rng::{Rng, SplitMix64},
};
use mesh_tls::ExpectedIdentities;

use crate::{discovery::Discovery, hbone::Destination, http::ResolveDestination};

/// Per-service balancers kept in step with a [`Discovery`] backend.
pub struct BalancedDestinations {
    discovery: Arc<dyn Discovery>,
    policy: Policy,
    priority: PriorityConfig,
    services: Mutex<HashMap<String, ServiceBalancer>>,
}

struct ServiceBalancer {
    /// The endpoint set the balancer holds (compared by pointer to detect updates).
    endpoints: Arc<[Endpoint]>,
    balancer: Box<dyn Balancer + Send>,
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
            services: Mutex::new(HashMap::new()),
        })
    }

    /// Picks an endpoint of `host` and describes how to reach it on `port`.
    ///
    /// The endpoint's own address port is the target port (the application port inside the
    /// tunnel); `port` selects the service port and must be one the service declares, when it
    /// declares any.
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
                services
                    .entry(service.hostname.as_str().to_owned())
                    .or_insert(ServiceBalancer {
                        endpoints: Arc::from(Vec::new()),
                        balancer,
                    })
            }
        };
        if !Arc::ptr_eq(&entry.endpoints, endpoints) {
            entry.balancer.update(endpoints.clone());
            entry.endpoints = endpoints.clone();
        }
        let index = entry.balancer.pick(&PickContext::new())?;
        let endpoint = entry.balancer.endpoints().get(index)?.clone();
        destination(&service, &endpoint)
    }
}

fn lookup<'a>(snapshot: &'a Snapshot, host: &str) -> Option<(Arc<Service>, &'a Arc<[Endpoint]>)> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    Some((snapshot.service(&host)?.clone(), snapshot.endpoints(&host)?))
}

fn destination(service: &Service, endpoint: &Endpoint) -> Option<Destination> {
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
        target_port: endpoint.address.port(),
        expected,
    })
}

impl ResolveDestination for BalancedDestinations {
    fn resolve(&self, host: &str, port: u16) -> Option<Destination> {
        self.pick(host, port)
    }
}

impl fmt::Debug for BalancedDestinations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalancedDestinations")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}
