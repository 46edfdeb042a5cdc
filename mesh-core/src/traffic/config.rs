//! All traffic rules of a workload, indexed by host: which policy and which route apply to a call.

use std::{borrow::Cow, time::Duration};

use thiserror::Error;

use super::{
    Destination, DestinationRule, EffectiveTrafficPolicy, HostPattern, ReferenceError, RequestView,
    ResourceKind, RetryPolicy, TrafficPolicy, TrafficResource, UnknownSubset, VirtualService,
};
use crate::{fast_hash::FastMap, rng::Rng};

/// Finds the most specific pattern for a host: exact names by hash, wildcards longest first.
#[derive(Clone, Debug, Default)]
struct HostIndex {
    exact: FastMap<String, usize>,
    /// Wildcard patterns and their item, most specific first.
    wildcards: Vec<(HostPattern, usize)>,
}

impl HostIndex {
    /// Adds `pattern` for item `index`; returns the item already holding it, if any.
    fn insert(&mut self, pattern: &HostPattern, index: usize) -> Option<usize> {
        if pattern.is_wildcard() {
            if let Some((_, existing)) = self.wildcards.iter().find(|(p, _)| p == pattern) {
                return Some(*existing);
            }
            self.wildcards.push((pattern.clone(), index));
            self.wildcards
                .sort_by_key(|(p, _)| std::cmp::Reverse(p.specificity()));
            None
        } else {
            match self.exact.get(pattern.as_str()) {
                Some(existing) => Some(*existing),
                None => {
                    self.exact.insert(pattern.as_str().to_owned(), index);
                    None
                }
            }
        }
    }

    fn get(&self, host: &str) -> Option<usize> {
        let host = normalize_host(host);
        self.exact.get(&*host).copied().or_else(|| {
            self.wildcards
                .iter()
                .find(|(p, _)| p.matches(&host))
                .map(|(_, i)| *i)
        })
    }
}

fn normalize(host: &str) -> String {
    normalize_host(host).into_owned()
}

/// `host` as traffic rules and service catalogues key it: without a trailing dot, lowercased.
/// Borrowed when it already is, so looking a host up per request allocates nothing.
pub fn normalize_host(host: &str) -> Cow<'_, str> {
    let host = host.trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// Why a call could not be routed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The host has a VirtualService but none of its routes matches the request (Envoy
    /// answers 404).
    #[error("no route of VirtualService {virtual_service} matches this request to {host}")]
    NoRoute {
        /// The host called.
        host: String,
        /// `namespace/name` of the VirtualService.
        virtual_service: String,
    },
    /// The route's destination names a subset that does not exist.
    #[error(transparent)]
    UnknownSubset(#[from] UnknownSubset),
}

/// The route chosen for a call: where it goes, and its retries and timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteDecision {
    /// The destination, with its port filled in.
    pub destination: Destination,
    /// The route's retry policy.
    pub retries: RetryPolicy,
    /// The route's overall timeout.
    pub timeout: Option<Duration>,
    /// The route's name, when it has one.
    pub route: Option<String>,
}

/// A call resolved completely: where it goes and every setting that applies to it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResolvedCall {
    /// The destination (host, subset, port).
    pub destination: Destination,
    /// The DestinationRule settings for it, with the route's retries and timeout.
    pub policy: EffectiveTrafficPolicy,
}

/// The DestinationRules and VirtualServices of a workload, checked against each other and
/// indexed by host.
///
/// Build one from loaded resources ([`from_resources`](Self::from_resources)) or from the mesh
/// config ([`MeshConfig::traffic_config`](crate::config::MeshConfig::traffic_config)); then,
/// per call, [`resolve`](Self::resolve) gives the destination and its [`EffectiveTrafficPolicy`].
///
/// ```
/// use mesh_core::{rng::SplitMix64, traffic::{RequestAttributes, TrafficConfig, parse_resources}};
///
/// let yaml = r#"
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: { name: reviews, namespace: shop }
/// spec:
///   hosts: [reviews]
///   http:
///   - match: [{ headers: { end-user: { exact: jason } } }]
///     route: [{ destination: { host: reviews, subset: v2 } }]
///   - route: [{ destination: { host: reviews, subset: v1 } }]
///     retries: { attempts: 3, perTryTimeout: 2s, retryOn: 5xx }
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: { name: reviews, namespace: shop }
/// spec:
///   host: reviews
///   subsets:
///   - { name: v1, labels: { version: v1 } }
///   - { name: v2, labels: { version: v2 } }
/// "#;
/// let config = TrafficConfig::from_resources(parse_resources(yaml)?).unwrap();
/// let host = "reviews.shop.svc.cluster.local";
/// let call = config.resolve(host, 9080, &RequestAttributes::new("GET", "/"), &mut SplitMix64::new(1))?;
/// assert_eq!(call.destination.subset.as_deref(), Some("v1"));
/// assert_eq!(call.policy.retry().attempts, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct TrafficConfig {
    rules: Vec<DestinationRule>,
    services: Vec<VirtualService>,
    policies: HostIndex,
    routes: HostIndex,
}

impl TrafficConfig {
    /// Indexes `rules` and `services`, refusing references that do not resolve: a route to a
    /// subset no DestinationRule of its host defines, two DestinationRules for one host, two
    /// VirtualServices for one host. Every problem is reported.
    pub fn new(
        rules: Vec<DestinationRule>,
        services: Vec<VirtualService>,
    ) -> Result<Self, Vec<ReferenceError>> {
        let mut errors = Vec::new();
        let mut policies = HostIndex::default();
        for (i, rule) in rules.iter().enumerate() {
            if let Some(first) = policies.insert(&rule.policy.host, i) {
                let other = &rules[first];
                errors.push(ReferenceError {
                    kind: ResourceKind::DestinationRule,
                    index: i,
                    namespace: rule.namespace.clone(),
                    name: rule.name.clone(),
                    path: "host".to_owned(),
                    reason: format!(
                        "{} already has DestinationRule {}/{}; merge the two rules into one",
                        rule.policy.host, other.namespace, other.name
                    ),
                });
            }
        }
        let mut routes = HostIndex::default();
        for (i, vs) in services.iter().enumerate() {
            for (h, host) in vs.hosts.iter().enumerate() {
                if let Some(first) = routes.insert(host, i).filter(|&f| f != i) {
                    let other = &services[first];
                    errors.push(ReferenceError {
                        kind: ResourceKind::VirtualService,
                        index: i,
                        namespace: vs.namespace.clone(),
                        name: vs.name.clone(),
                        path: format!("hosts[{h}]"),
                        reason: format!(
                            "{host} is already routed by VirtualService {}/{}; merge the two",
                            other.namespace, other.name
                        ),
                    });
                }
            }
            for (r, route) in vs.http.iter().enumerate() {
                for (d, dest) in route.destinations.iter().enumerate() {
                    let Some(subset) = &dest.destination.subset else {
                        continue;
                    };
                    let policy = policies
                        .get(&dest.destination.host)
                        .map(|p| &rules[p].policy);
                    if policy.is_some_and(|p| p.subset(subset).is_some()) {
                        continue;
                    }
                    let defined = policy.map_or_else(Vec::new, |p| {
                        p.subsets.iter().map(|s| s.name.as_str()).collect()
                    });
                    let reason = match policy {
                        None => format!(
                            "subset {subset:?} of {} is not defined: no DestinationRule for that host defines subsets",
                            dest.destination.host
                        ),
                        Some(p) if defined.is_empty() => format!(
                            "subset {subset:?} of {} is not defined: DestinationRule for {} has no subsets",
                            dest.destination.host, p.host
                        ),
                        Some(p) => format!(
                            "subset {subset:?} of {} is not defined by the DestinationRule for {} (it defines {})",
                            dest.destination.host,
                            p.host,
                            defined.join(", ")
                        ),
                    };
                    errors.push(ReferenceError {
                        kind: ResourceKind::VirtualService,
                        index: i,
                        namespace: vs.namespace.clone(),
                        name: vs.name.clone(),
                        path: format!("http[{r}].route[{d}].destination.subset"),
                        reason,
                    });
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            rules,
            services,
            policies,
            routes,
        })
    }

    /// Splits loaded resources by kind and indexes them ([`new`](Self::new)).
    pub fn from_resources(
        resources: impl IntoIterator<Item = TrafficResource>,
    ) -> Result<Self, Vec<ReferenceError>> {
        let mut rules = Vec::new();
        let mut services = Vec::new();
        for resource in resources {
            match resource {
                TrafficResource::DestinationRule(r) => rules.push(*r),
                TrafficResource::VirtualService(v) => services.push(v),
            }
        }
        Self::new(rules, services)
    }

    /// The DestinationRules, in the order given.
    pub fn destination_rules(&self) -> &[DestinationRule] {
        &self.rules
    }

    /// The VirtualServices, in the order given.
    pub fn virtual_services(&self) -> &[VirtualService] {
        &self.services
    }

    /// The traffic policy for `host`: the DestinationRule for exactly that name, else the most
    /// specific wildcard rule covering it.
    pub fn policy(&self, host: &str) -> Option<&TrafficPolicy> {
        self.policies.get(host).map(|i| &self.rules[i].policy)
    }

    /// The VirtualService routing calls to `host`, chosen like [`policy`](Self::policy).
    pub fn virtual_service(&self, host: &str) -> Option<&VirtualService> {
        self.routes.get(host).map(|i| &self.services[i])
    }

    /// Routes a call to `host:port`. Without a VirtualService for the host the call goes to
    /// the host itself with Istio's default retries and no timeout; with one, the first
    /// matching route decides, weighted destinations drawing from `rng`.
    pub fn route(
        &self,
        host: &str,
        port: u16,
        request: &(impl RequestView + ?Sized),
        rng: &mut impl Rng,
    ) -> Result<RouteDecision, RouteError> {
        let Some(vs) = self.virtual_service(host) else {
            return Ok(RouteDecision {
                destination: Destination::new(normalize(host)).with_port(port),
                retries: RetryPolicy::default(),
                timeout: None,
                route: None,
            });
        };
        let no_route = || RouteError::NoRoute {
            host: normalize(host),
            virtual_service: format!("{}/{}", vs.namespace, vs.name),
        };
        let route = vs.route(request, port).ok_or_else(no_route)?;
        let chosen = route.pick(rng).ok_or_else(no_route)?;
        let mut destination = chosen.destination.clone();
        destination.port.get_or_insert(port);
        Ok(RouteDecision {
            destination,
            retries: route.retries.clone(),
            timeout: route.timeout,
            route: route.name.clone(),
        })
    }

    /// Whether every call to `host:port` is routed alike, whatever the request: the host has no
    /// VirtualService, or the route that applies first matches every request and has a single
    /// destination. Then [`resolve`](Self::resolve)'s answer for one call holds for all of
    /// them until this configuration is replaced, and callers may keep it (the HTTP client
    /// does, so that a request does not match routes and merge policies again).
    pub fn resolves_alike(&self, host: &str, port: u16) -> bool {
        let Some(vs) = self.virtual_service(host) else {
            return true;
        };
        for route in &vs.http {
            if route.matches.is_empty() {
                return route.destinations.len() <= 1;
            }
            // Routes matching on the port only are decided by it, not by the request.
            if !route.matches.iter().all(|m| m.is_port_only()) {
                return false;
            }
            if route
                .matches
                .iter()
                .any(|m| m.port.is_none_or(|p| p == port))
            {
                return route.destinations.len() <= 1;
            }
        }
        // No route applies: every call fails alike (no route), which is not kept anyway.
        true
    }

    /// Routes a call ([`route`](Self::route)) and merges the destination's DestinationRule
    /// for its port and subset, attaching the route's retries and timeout.
    pub fn resolve(
        &self,
        host: &str,
        port: u16,
        request: &(impl RequestView + ?Sized),
        rng: &mut impl Rng,
    ) -> Result<ResolvedCall, RouteError> {
        let decision = self.route(host, port, request, rng)?;
        let destination = decision.destination;
        let dest_port = destination.port.unwrap_or(port);
        let policy = match self.policy(&destination.host) {
            Some(p) => p.for_port(dest_port, destination.subset.as_deref())?,
            None => match &destination.subset {
                Some(subset) => {
                    return Err(UnknownSubset {
                        host: destination.host.clone(),
                        subset: subset.clone(),
                    }
                    .into());
                }
                None => EffectiveTrafficPolicy::default(),
            },
        };
        Ok(ResolvedCall {
            destination,
            policy: policy.with_route(decision.retries, decision.timeout),
        })
    }
}
