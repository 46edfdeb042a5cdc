//! VirtualService: HTTP routes with match conditions, weighted destinations, retries, timeout.

use std::{fmt, time::Duration};

use super::{HostPattern, RequestView, RetryPolicy, RouteMatch};
use crate::rng::Rng;

/// Where a route sends traffic: a service, optionally one of its subsets and a port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Destination {
    /// The service name (short names already expanded).
    pub host: String,
    /// A subset defined by the host's DestinationRule.
    pub subset: Option<String>,
    /// The service port; `None`: the port the call was made on.
    pub port: Option<u16>,
}

impl Destination {
    /// All of `host`, on the caller's port.
    pub fn new(host: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            subset: None,
            port: None,
        }
    }

    /// Only the endpoints of `subset`.
    pub fn with_subset(mut self, subset: impl Into<String>) -> Self {
        self.subset = Some(subset.into());
        self
    }

    /// On service port `port`.
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
}

impl fmt::Display for Destination {
    /// `host`, `host:port`, `host subset v1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        if let Some(subset) = &self.subset {
            write!(f, " subset {subset}")?;
        }
        Ok(())
    }
}

/// One weighted destination of a route (`route[]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteDestination {
    /// Where.
    pub destination: Destination,
    /// Relative weight: the destination gets `weight / sum of weights` of the requests. A
    /// lone destination gets all of them whatever its weight.
    pub weight: u32,
}

/// An HTTP route (`http[]`): the conditions it applies to and what it does.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpRoute {
    /// `name`, for logs.
    pub name: Option<String>,
    /// `match`: the route applies when any block matches; no blocks: every request.
    pub matches: Vec<RouteMatch>,
    /// `route`: at least one destination.
    pub destinations: Vec<RouteDestination>,
    /// `retries` (Istio's default when the route does not set them).
    pub retries: RetryPolicy,
    /// `timeout`: limit for the whole request, retries included; `None`: no limit.
    pub timeout: Option<Duration>,
}

impl HttpRoute {
    /// A catch-all route to `destination` with Istio's default retries.
    pub fn to(destination: Destination) -> Self {
        Self {
            name: None,
            matches: Vec::new(),
            destinations: vec![RouteDestination {
                destination,
                weight: 100,
            }],
            retries: RetryPolicy::default(),
            timeout: None,
        }
    }

    /// Whether the route applies to `request` on service port `port`.
    pub fn matches(&self, request: &(impl RequestView + ?Sized), port: u16) -> bool {
        self.matches.is_empty() || self.matches.iter().any(|m| m.matches(request, port))
    }

    /// Chooses a destination by weight, with `rng`'s randomness (Envoy's weighted clusters).
    pub fn pick(&self, rng: &mut impl Rng) -> Option<&RouteDestination> {
        if self.destinations.len() <= 1 {
            return self.destinations.first();
        }
        let total: u64 = self.destinations.iter().map(|d| u64::from(d.weight)).sum();
        if total == 0 {
            return None;
        }
        let mut point = rng.below(total);
        for d in &self.destinations {
            let w = u64::from(d.weight);
            if point < w {
                return Some(d);
            }
            point -= w;
        }
        None
    }
}

/// An Istio VirtualService's HTTP part: the hosts it applies to and their ordered routes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct VirtualService {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `hosts`: calls to these names follow the routes.
    pub hosts: Vec<HostPattern>,
    /// `http`: tried in order, the first that matches wins.
    pub http: Vec<HttpRoute>,
}

impl VirtualService {
    /// A VirtualService called `namespace/name` for `hosts`, with no routes yet.
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        hosts: Vec<HostPattern>,
    ) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            hosts,
            http: Vec::new(),
        }
    }

    /// The first route matching `request` on service port `port`; `None`: no route applies
    /// (Envoy answers such requests 404).
    pub fn route(&self, request: &(impl RequestView + ?Sized), port: u16) -> Option<&HttpRoute> {
        self.http.iter().find(|r| r.matches(request, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{rng::SplitMix64, traffic::RequestAttributes};

    fn weighted(weights: &[u32]) -> HttpRoute {
        let mut route = HttpRoute::to(Destination::new("r"));
        route.destinations = weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| RouteDestination {
                destination: Destination::new("r").with_subset(format!("v{i}")),
                weight,
            })
            .collect();
        route
    }

    #[test]
    fn weights_split_traffic() {
        let route = weighted(&[90, 10, 0]);
        let mut rng = SplitMix64::new(1);
        let mut counts = [0u32; 3];
        for _ in 0..10_000 {
            let d = route.pick(&mut rng).unwrap();
            let i = route.destinations.iter().position(|x| x == d).unwrap();
            counts[i] += 1;
        }
        assert!((8_800..9_200).contains(&counts[0]), "{counts:?}");
        assert_eq!(counts[2], 0);
        let lone = weighted(&[0]);
        assert!(lone.pick(&mut rng).is_some());
        assert!(weighted(&[0, 0]).pick(&mut rng).is_none());
    }

    #[test]
    fn first_matching_route_wins() {
        let mut vs = VirtualService::new("r", "shop", vec![HostPattern::parse("r.shop").unwrap()]);
        let mut canary = HttpRoute::to(Destination::new("r").with_subset("v2"));
        canary.matches.push(RouteMatch {
            headers: vec![("x-canary".into(), super::super::StringMatch::Present)],
            ..RouteMatch::default()
        });
        vs.http.push(canary);
        vs.http
            .push(HttpRoute::to(Destination::new("r").with_subset("v1")));
        let plain = RequestAttributes::new("GET", "/");
        let marked = plain.clone().with_header("x-canary", "1");
        let subset = |r: &RequestAttributes| {
            vs.route(r, 80).unwrap().destinations[0]
                .destination
                .subset
                .clone()
        };
        assert_eq!(subset(&plain).as_deref(), Some("v1"));
        assert_eq!(subset(&marked).as_deref(), Some("v2"));
        assert_eq!(
            Destination::new("r")
                .with_port(80)
                .with_subset("v1")
                .to_string(),
            "r:80 subset v1"
        );
    }
}
