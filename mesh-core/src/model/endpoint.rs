use std::{collections::BTreeMap, net::SocketAddr};

use super::Locality;
use crate::SpiffeId;

/// The port ztunnel and the mesh accept HBONE tunnels on.
pub const DEFAULT_HBONE_PORT: u16 = 15008;

/// Whether an endpoint should receive new requests, as discovery reports it.
///
/// This is the *reported* health (from Kubernetes readiness, EDS, a file). Outlier ejection is
/// tracked separately by [`OutlierDetector`](crate::resilience::OutlierDetector) and told to the
/// balancer, so a fresh snapshot never silently un-ejects an endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Health {
    /// Serving.
    #[default]
    Healthy,
    /// Not serving. Picked only when the balancer's panic threshold applies.
    Unhealthy,
    /// Shutting down: finishes what it has but gets nothing new, not even in panic mode, and
    /// does not count towards the size of its locality.
    Draining,
}

/// One instance of a service: where to reach it, who it is, and how much traffic it should get.
///
/// Build with [`Endpoint::new`] and the `with_*` methods; fields are public because the model is
/// plain data.
///
/// ```
/// use mesh_core::model::{Endpoint, Health, Locality};
/// let ep = Endpoint::new("10.0.0.7:8080".parse().unwrap())
///     .with_weight(3)
///     .with_locality(Locality::new("us-east1", "us-east1-b", ""));
/// assert_eq!(ep.hbone_address(), Some("10.0.0.7:15008".parse().unwrap()));
/// assert_eq!(ep.health, Health::Healthy);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The workload's own address: what the application inside the tunnel is asked to reach.
    /// Balancers key their per-endpoint state by this address.
    pub address: SocketAddr,
    /// The port on the same IP that accepts HBONE; 0 if the endpoint is outside the mesh.
    pub hbone_port: u16,
    /// The SPIFFE ID the endpoint must present, if discovery knows it.
    pub identity: Option<SpiffeId>,
    /// Relative share of traffic. Balancers treat 0 as 1 (as Envoy rejects 0).
    pub weight: u32,
    /// Where the endpoint runs.
    pub locality: Locality,
    /// Reported health.
    pub health: Health,
    /// Workload labels (`app`, `version`, ...), for subsets and metrics.
    pub labels: BTreeMap<String, String>,
}

impl Endpoint {
    /// A healthy endpoint of weight 1 at `address`, reachable over HBONE on
    /// [`DEFAULT_HBONE_PORT`], with no identity, locality or labels.
    pub fn new(address: SocketAddr) -> Self {
        Self {
            address,
            hbone_port: DEFAULT_HBONE_PORT,
            identity: None,
            weight: 1,
            locality: Locality::default(),
            health: Health::Healthy,
            labels: BTreeMap::new(),
        }
    }

    /// Sets the HBONE port (0: not in the mesh).
    pub fn with_hbone_port(mut self, port: u16) -> Self {
        self.hbone_port = port;
        self
    }

    /// Sets the expected SPIFFE ID.
    pub fn with_identity(mut self, identity: SpiffeId) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Sets the weight.
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Sets the locality.
    pub fn with_locality(mut self, locality: Locality) -> Self {
        self.locality = locality;
        self
    }

    /// Sets the reported health.
    pub fn with_health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    /// Adds a label.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Where to open the HBONE tunnel: the endpoint's IP with [`hbone_port`](Self::hbone_port),
    /// or `None` if the endpoint does not speak HBONE.
    pub fn hbone_address(&self) -> Option<SocketAddr> {
        (self.hbone_port != 0).then(|| SocketAddr::new(self.address.ip(), self.hbone_port))
    }

    /// The weight balancers use: at least 1.
    pub fn effective_weight(&self) -> u32 {
        self.weight.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sets_fields() {
        let id: SpiffeId = "spiffe://cluster.local/ns/a/sa/b".parse().unwrap();
        let ep = Endpoint::new("[::1]:80".parse().unwrap())
            .with_hbone_port(0)
            .with_identity(id.clone())
            .with_weight(0)
            .with_health(Health::Draining)
            .with_label("version", "v2");
        assert_eq!(ep.hbone_address(), None);
        assert_eq!(ep.identity, Some(id));
        assert_eq!(ep.effective_weight(), 1);
        assert_eq!(ep.health, Health::Draining);
        assert_eq!(ep.labels.get("version").map(String::as_str), Some("v2"));
        let ep = ep.with_hbone_port(15008);
        assert_eq!(ep.hbone_address(), Some("[::1]:15008".parse().unwrap()));
    }
}
