use mesh_core::fast_hash::FastMap;
use std::{
    collections::{BTreeMap, HashSet},
    fmt,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use arc_swap::ArcSwap;
use mesh_core::{
    balance::{BalanceConfigError, Balancer, PickContext, Policy, PriorityConfig},
    clock::{Clock, SystemClock, Timestamp},
    model::{Endpoint, Health, Locality, Service, Snapshot},
    resilience::{Outcome, OutlierConfig, OutlierConfigError, OutlierDetector, OutlierEvent},
    rng::{Rng, SplitMix64},
    traffic::TrafficConfig,
};
use mesh_tls::ExpectedIdentities;

use crate::{discovery::Discovery, hbone::Destination, http::ResolveDestination};

/// Per-service balancers kept in step with a [`Discovery`] backend.
///
/// One balancer (with its own outlier detector) exists per called `(service, port, subset)`.
/// Its settings come from the service's DestinationRule when a [`TrafficConfig`] is installed
/// ([`set_traffic`](Self::set_traffic): algorithm, locality priority with `distribute`,
/// `failover` and `failoverPriority`, panic threshold,
/// outlier detection, port-level and subset overrides, subset membership by labels), and from
/// the defaults given at construction otherwise.
pub struct BalancedDestinations {
    discovery: Arc<dyn Discovery>,
    policy: Policy,
    priority: PriorityConfig,
    outlier: Option<OutlierConfig>,
    traffic: ArcSwap<TrafficConfig>,
    local: Locality,
    /// This workload's labels, compared by `failoverPriority`.
    labels: BTreeMap<String, String>,
    /// Balancers by service host, then port and subset: a pick finds its host without
    /// allocating a key, and a report visits only its host's balancers.
    services: Mutex<FastMap<String, Vec<(Key, ServiceBalancer)>>>,
    /// Endpoints failing active health checks, per service host.
    failing: Mutex<HashSet<(String, SocketAddr)>>,
}

/// Outlier detection of one balancer (see [`BalancedDestinations::outlier_status`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutlierStatus {
    /// The service.
    pub host: String,
    /// The service port called.
    pub port: u16,
    /// The DestinationRule subset, if any.
    pub subset: Option<String>,
    /// Whether outlier detection is configured for it.
    pub detecting: bool,
    /// Endpoints ejected now.
    pub ejected: Vec<SocketAddr>,
    /// Ejections enforced since the balancer was built.
    pub ejections: u64,
}

/// One endpoint picked for an attempt ([`BalancedDestinations::pick_attempt`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pick {
    /// How to reach it: the tunnel address, the target port and the identities to expect.
    pub destination: Destination,
    /// The endpoint's address as discovery lists it: what outlier detection and the retry
    /// host predicate know it by (the tunnel's authority differs for secondary ports).
    pub endpoint: SocketAddr,
    /// Its priority level (0 is preferred; `None` if unknown), for
    /// [`PreviousPriorities`](mesh_core::balance::PreviousPriorities).
    pub priority: Option<usize>,
}

/// What one balancer serves.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    host: String,
    port: u16,
    subset: Option<String>,
}

struct ServiceBalancer {
    /// Discovery's endpoint set this balancer was last fed from (compared by pointer).
    source: Arc<[Endpoint]>,
    /// Subset membership: endpoints carrying all these labels.
    labels: Option<BTreeMap<String, String>>,
    balancer: Box<dyn Balancer + Send>,
    /// Passive health (absent when the DestinationRule has no `outlierDetection`).
    outliers: Option<OutlierDetector>,
    /// The identities the service expects of endpoints that name none, built once per
    /// version of the service (compared by pointer) instead of per pick.
    service_identities: Option<(Arc<Service>, ExpectedIdentities)>,
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
        let Some(outliers) = &mut self.outliers else {
            return;
        };
        if now >= outliers.next_deadline() {
            let events = outliers.tick(now);
            self.apply(events);
        }
    }

    /// Feeds a new discovery set (filtered to the subset, with endpoints failing active
    /// health checks marked unhealthy), keeping ejections of endpoints that remain.
    fn update(&mut self, source: &Arc<[Endpoint]>, failing: &HashSet<SocketAddr>) {
        let endpoints: Arc<[Endpoint]> = if self.labels.is_none() && failing.is_empty() {
            source.clone()
        } else {
            source
                .iter()
                .filter(|e| {
                    self.labels
                        .as_ref()
                        .is_none_or(|labels| labels.iter().all(|(k, v)| e.labels.get(k) == Some(v)))
                })
                .map(|e| {
                    let mut e = e.clone();
                    if failing.contains(&e.address) && e.health == Health::Healthy {
                        e.health = Health::Unhealthy;
                    }
                    e
                })
                .collect()
        };
        self.balancer.update(endpoints.clone());
        if let Some(outliers) = &mut self.outliers {
            outliers.set_endpoints(endpoints.iter().map(|e| e.address));
            let ejected: Vec<SocketAddr> = outliers.ejected().collect();
            for address in ejected {
                self.balancer.set_ejected(address, true);
            }
        }
        self.source = source.clone();
    }
}

impl BalancedDestinations {
    /// Balances every service with `policy` (Istio's `ROUND_ROBIN` is [`Policy::RoundRobin`])
    /// and Istio's default outlier detection, until a [`TrafficConfig`] says otherwise.
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
            outlier: Some(OutlierConfig::default()),
            traffic: ArcSwap::from_pointee(TrafficConfig::default()),
            local: Locality::default(),
            labels: BTreeMap::new(),
            services: Mutex::new(FastMap::default()),
            failing: Mutex::new(HashSet::new()),
        })
    }

    /// Uses `config` for passive health checking of services without a DestinationRule
    /// (Istio `outlierDetection`; default: Istio's).
    pub fn with_outlier_detection(
        mut self,
        config: OutlierConfig,
    ) -> Result<Self, OutlierConfigError> {
        config.validate()?;
        self.outlier = Some(config);
        Ok(self)
    }

    /// This workload's locality, for locality-aware priority in DestinationRules.
    #[must_use]
    pub fn with_locality(mut self, local: Locality) -> Self {
        self.local = local;
        self
    }

    /// This workload's labels, which a DestinationRule's `localityLbSetting.failoverPriority`
    /// compares with the endpoints' labels (the topology labels of its locality are added).
    #[must_use]
    pub fn with_labels(mut self, labels: BTreeMap<String, String>) -> Self {
        self.labels = labels;
        self
    }

    /// Installs DestinationRules (and VirtualServices, used by the HTTP client). Balancers
    /// are rebuilt with the new settings on their next pick; ejections are forgotten.
    pub fn set_traffic(&self, traffic: Arc<TrafficConfig>) {
        self.traffic.store(traffic);
        self.services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Active health checking's verdict on `endpoint` of `host`: an unhealthy endpoint is
    /// picked only when the panic threshold applies, until it is reported healthy again.
    pub fn set_health(&self, host: &str, endpoint: SocketAddr, healthy: bool) {
        let host = normalize(host).into_owned();
        let changed = {
            let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
            if healthy {
                failing.remove(&(host.clone(), endpoint))
            } else {
                failing.insert((host.clone(), endpoint))
            }
        };
        if changed {
            // Force every balancer of the host to re-read its endpoints on the next pick.
            let mut services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
            for (_, entry) in services.get_mut(host.as_str()).into_iter().flatten() {
                entry.source = Arc::from(Vec::new());
            }
        }
    }

    /// The installed traffic configuration.
    pub fn traffic(&self) -> Arc<TrafficConfig> {
        self.traffic.load_full()
    }

    /// Whether outlier detection currently ejects `endpoint` of `host` (in any port or subset).
    pub fn is_ejected(&self, host: &str, endpoint: SocketAddr) -> bool {
        let host = normalize(host);
        let services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        services
            .get(&*host)
            .into_iter()
            .flatten()
            .any(|(_, s)| s.outliers.as_ref().is_some_and(|o| o.is_ejected(endpoint)))
    }

    /// Outlier detection of every balancer built so far (one per called service, port and
    /// subset): the endpoints ejected now and the ejections enforced, for the admin
    /// endpoint and metrics.
    pub fn outlier_status(&self) -> Vec<OutlierStatus> {
        use mesh_core::resilience::EjectionReason as R;
        let services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<OutlierStatus> = services
            .values()
            .flatten()
            .map(|(key, s)| {
                let (ejected, ejections) = match &s.outliers {
                    Some(o) => {
                        let stats = o.stats();
                        let total = [
                            R::Consecutive5xx,
                            R::ConsecutiveGatewayErrors,
                            R::ConsecutiveLocalOriginFailures,
                            R::SuccessRate,
                            R::FailurePercentage,
                        ]
                        .into_iter()
                        .map(|r| stats.enforced(r))
                        .sum();
                        (o.ejected().collect(), total)
                    }
                    None => (Vec::new(), 0),
                };
                OutlierStatus {
                    host: key.host.clone(),
                    port: key.port,
                    subset: key.subset.clone(),
                    detecting: s.outliers.is_some(),
                    ejected,
                    ejections,
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.host, a.port, &a.subset).cmp(&(&b.host, b.port, &b.subset)));
        out
    }

    /// Picks an endpoint of `host` and describes how to reach it on `port`.
    ///
    /// `port` must be one the service declares, when it declares any. The target port inside
    /// the tunnel is the endpoint's own address port for the service's first declared port (or
    /// for any port when none are declared), which is how a `targetPort` differing from the
    /// service port is written; every other declared port is reached at the same number on
    /// the endpoint.
    pub fn pick(&self, host: &str, port: u16) -> Option<Destination> {
        self.pick_with(host, port, None, &PickContext::new())
    }

    /// Like [`pick`](Self::pick), among the endpoints of `subset` (a DestinationRule subset
    /// name) and with a consistent-hash key in `ctx` when the policy hashes.
    pub fn pick_with(
        &self,
        host: &str,
        port: u16,
        subset: Option<&str>,
        ctx: &PickContext,
    ) -> Option<Destination> {
        self.pick_with_priority(host, port, subset, ctx)
            .map(|(destination, _)| destination)
    }

    /// Like [`pick_with`](Self::pick_with), also returning the priority level of the endpoint
    /// picked (0 is preferred; `None` if unknown), which a retry that avoids levels already
    /// tried records ([`PreviousPriorities`](mesh_core::balance::PreviousPriorities), Istio's
    /// `retryRemoteLocalities`).
    pub fn pick_with_priority(
        &self,
        host: &str,
        port: u16,
        subset: Option<&str>,
        ctx: &PickContext,
    ) -> Option<(Destination, Option<usize>)> {
        self.pick_attempt(host, port, subset, ctx, &[])
            .map(|pick| (pick.destination, pick.priority))
    }

    /// The pick for one attempt of a request: like
    /// [`pick_with_priority`](Self::pick_with_priority), avoiding the endpoints in `tried`
    /// (the [`Pick::endpoint`]s of the request's earlier attempts) while others can serve, as
    /// Envoy's `previous_hosts` retry host predicate that Istio puts on every retry policy
    /// (see [`Balancer::pick_avoiding`]). When every endpoint the pick could use was tried,
    /// one of them is tried again.
    pub fn pick_attempt(
        &self,
        host: &str,
        port: u16,
        subset: Option<&str>,
        ctx: &PickContext,
        tried: &[SocketAddr],
    ) -> Option<Pick> {
        let snapshot = self.discovery.current();
        let (service, endpoints) = lookup(&snapshot, host)?;
        if !service.ports.is_empty() && service.port(port).is_none() {
            return None;
        }
        let host = service.hostname.as_str();
        let mut services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        if !services.contains_key(host) {
            services.insert(host.to_owned(), Vec::new());
        }
        let balancers = services.get_mut(host)?;
        let found = balancers
            .iter()
            .position(|(k, _)| k.port == port && k.subset.as_deref() == subset);
        let index = match found {
            Some(index) => index,
            None => {
                let key = Key {
                    host: host.to_owned(),
                    port,
                    subset: subset.map(str::to_owned),
                };
                let built = self.build(&key)?;
                balancers.push((key, built));
                balancers.len() - 1
            }
        };
        let (_, entry) = balancers.get_mut(index)?;
        if !Arc::ptr_eq(&entry.source, endpoints) {
            let failing: HashSet<SocketAddr> = self
                .failing
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .filter(|(h, _)| *h == key_host(&service))
                .map(|(_, a)| *a)
                .collect();
            entry.update(endpoints, &failing);
        }
        entry.tick(SystemClock.now());
        let index = entry.balancer.pick_avoiding(ctx, tried)?;
        let priority = entry.balancer.priority_of(index);
        // Borrowed, not cloned: an endpoint carries labels and a locality (allocations).
        let endpoint = entry.balancer.endpoints().get(index)?;
        Some(Pick {
            destination: destination(&service, endpoint, port, &mut entry.service_identities)?,
            endpoint: endpoint.address,
            priority,
        })
    }

    /// A balancer for `key` with the settings that apply to it; `None` for an unknown subset.
    fn build(&self, key: &Key) -> Option<ServiceBalancer> {
        let traffic = self.traffic.load();
        let (policy, priority, outlier, labels) = match traffic.policy(&key.host) {
            Some(rule) => {
                let effective = match rule.for_port(key.port, key.subset.as_deref()) {
                    Ok(effective) => effective,
                    Err(e) => {
                        tracing::warn!(error = %e, "no endpoints: unknown subset");
                        return None;
                    }
                };
                let labels = key
                    .subset
                    .as_deref()
                    .and_then(|s| rule.subset(s))
                    .map(|s| s.labels.clone());
                (
                    effective.balancer_policy(),
                    effective.priority_config_for(self.local.clone(), &self.labels),
                    effective.outlier_config(),
                    labels,
                )
            }
            // A subset needs a DestinationRule defining it.
            None if key.subset.is_some() => return None,
            None => (
                self.policy,
                PriorityConfig {
                    local: self.local.clone(),
                    ..self.priority.clone()
                },
                self.outlier,
                None,
            ),
        };
        let balancer = policy
            .build(
                priority,
                Arc::new(SystemClock),
                SplitMix64::from_entropy().next_u64(),
            )
            .map_err(|e| tracing::warn!(error = %e, host = %key.host, "invalid balancer settings"))
            .ok()?;
        let outliers = match outlier {
            Some(config) => Some(
                OutlierDetector::new(config, SystemClock.now())
                    .map_err(|e| tracing::warn!(error = %e, host = %key.host, "invalid outlier detection"))
                    .ok()?,
            ),
            None => None,
        };
        Some(ServiceBalancer {
            source: Arc::from(Vec::new()),
            labels,
            balancer,
            outliers,
            service_identities: None,
        })
    }
}

fn key_host(service: &Service) -> String {
    service.hostname.as_str().to_owned()
}

/// `host` without a trailing dot, lowercased; borrowed when it already is (per request).
fn normalize(host: &str) -> std::borrow::Cow<'_, str> {
    mesh_core::traffic::normalize_host(host)
}

fn lookup<'a>(snapshot: &'a Snapshot, host: &str) -> Option<(Arc<Service>, &'a Arc<[Endpoint]>)> {
    let host = normalize(host);
    Some((snapshot.service(&host)?.clone(), snapshot.endpoints(&host)?))
}

fn destination(
    service: &Arc<Service>,
    endpoint: &Endpoint,
    port: u16,
    service_identities: &mut Option<(Arc<Service>, ExpectedIdentities)>,
) -> Option<Destination> {
    let hbone_addr: SocketAddr = endpoint.hbone_address()?;
    let expected = match &endpoint.identity {
        Some(id) => ExpectedIdentities::one(id.clone()),
        None if !service.expected_identities.is_empty() => match service_identities {
            Some((version, ids)) if Arc::ptr_eq(version, service) => ids.clone(),
            _ => {
                let ids = ExpectedIdentities::new(service.expected_identities.iter().cloned());
                *service_identities = Some((service.clone(), ids.clone()));
                ids
            }
        },
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
        let host = normalize(host);
        let now = SystemClock.now();
        let mut services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, entry) in services.get_mut(&*host).into_iter().flatten() {
            if let Some(outliers) = &mut entry.outliers
                && let Some(event) = outliers.record(endpoint, outcome, now)
            {
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
