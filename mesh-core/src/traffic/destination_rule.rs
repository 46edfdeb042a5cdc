//! DestinationRule: per-service traffic settings, per-port overrides and subsets.

use std::collections::BTreeMap;

use thiserror::Error;

use super::{
    ConnectionPoolSettings, EffectiveTrafficPolicy, HostPattern, LoadBalancerSettings,
    OutlierDetectionSettings,
};
use crate::model::Endpoint;

/// How calls to the destination are secured (Istio `tls.mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsMode {
    /// `ISTIO_MUTUAL`: mutual TLS with mesh identities (HBONE); the mesh's default.
    #[default]
    IstioMutual,
    /// `DISABLE`: plain TCP to the endpoint, no mesh identity checked.
    Disable,
}

/// The four components a traffic policy sets; each is replaced whole by a more specific level
/// (port, subset, subset port) that sets it, never merged field by field (Istio's rule:
/// "settings at the destination level are not inherited when overridden").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicySettings {
    /// `loadBalancer`.
    pub load_balancer: Option<LoadBalancerSettings>,
    /// `connectionPool`.
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// `outlierDetection`; `None`: no passive health checking, as in Istio.
    pub outlier_detection: Option<OutlierDetectionSettings>,
    /// `tls`.
    pub tls: Option<TlsMode>,
}

impl PolicySettings {
    /// Replaces each component `more_specific` sets.
    pub fn overlay(&mut self, more_specific: &Self) {
        if let Some(lb) = &more_specific.load_balancer {
            self.load_balancer = Some(lb.clone());
        }
        if let Some(pool) = more_specific.connection_pool {
            self.connection_pool = Some(pool);
        }
        if let Some(outlier) = more_specific.outlier_detection {
            self.outlier_detection = Some(outlier);
        }
        if let Some(tls) = more_specific.tls {
            self.tls = Some(tls);
        }
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A `trafficPolicy`: settings for every port plus per-port overrides (`portLevelSettings`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrafficSettings {
    /// Settings for every port.
    pub all_ports: PolicySettings,
    /// `portLevelSettings`, by port number.
    pub ports: BTreeMap<u16, PolicySettings>,
}

impl TrafficSettings {
    /// The settings for `port`: the port's components over the destination's.
    pub fn for_port(&self, port: u16) -> PolicySettings {
        let mut settings = self.all_ports.clone();
        if let Some(p) = self.ports.get(&port) {
            settings.overlay(p);
        }
        settings
    }
}

/// A named group of a service's endpoints, selected by labels, with its own settings.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Subset {
    /// The name routes use (`v1`).
    pub name: String,
    /// Endpoints carrying all these labels belong to the subset (none: every endpoint).
    pub labels: BTreeMap<String, String>,
    /// The subset's `trafficPolicy`, over the service's.
    pub traffic: Option<TrafficSettings>,
}

impl Subset {
    /// A subset of the endpoints labelled `labels`.
    pub fn new(name: impl Into<String>, labels: BTreeMap<String, String>) -> Self {
        Self {
            name: name.into(),
            labels,
            traffic: None,
        }
    }

    /// Whether `endpoint` belongs to the subset (it carries every label with the same value).
    pub fn selects(&self, endpoint: &Endpoint) -> bool {
        self.labels
            .iter()
            .all(|(k, v)| endpoint.labels.get(k) == Some(v))
    }
}

/// A route named a subset the service's DestinationRule does not define.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{host} has no subset {subset:?}; define it in the DestinationRule's subsets")]
pub struct UnknownSubset {
    /// The service.
    pub host: String,
    /// The subset asked for.
    pub subset: String,
}

/// Everything a DestinationRule says about calls to one host (or wildcard of hosts).
///
/// ```
/// use mesh_core::traffic::{TrafficConfig, parse_resources};
///
/// let yaml = r#"
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: { name: reviews, namespace: shop }
/// spec:
///   host: reviews
///   trafficPolicy:
///     connectionPool: { http: { http2MaxRequests: 100 } }
///   subsets:
///   - name: v2
///     labels: { version: v2 }
///     trafficPolicy: { loadBalancer: { simple: ROUND_ROBIN } }
/// "#;
/// let config = TrafficConfig::from_resources(parse_resources(yaml)?).unwrap();
/// let policy = config.policy("reviews.shop.svc.cluster.local").unwrap();
/// let v2 = policy.for_port(9080, Some("v2"))?;
/// assert_eq!(v2.breaker_limits().max_requests, 100);
/// assert_eq!(v2.balancer_policy(), mesh_core::balance::Policy::RoundRobin);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrafficPolicy {
    /// The host the settings apply to.
    pub host: HostPattern,
    /// `trafficPolicy`.
    pub settings: TrafficSettings,
    /// `subsets`, in order; names are unique.
    pub subsets: Vec<Subset>,
}

impl TrafficPolicy {
    /// A policy for `host` with Istio's defaults and no subsets.
    pub fn new(host: HostPattern) -> Self {
        Self {
            host,
            settings: TrafficSettings::default(),
            subsets: Vec::new(),
        }
    }

    /// The subset called `name`.
    pub fn subset(&self, name: &str) -> Option<&Subset> {
        self.subsets.iter().find(|s| s.name == name)
    }

    /// The settings that apply to calls on `port` of `subset` (or of the whole service), merged
    /// as istiod does: service settings, then the service's port-level settings, then the
    /// subset's, then the subset's port-level settings. Retries and timeout are Istio's
    /// defaults (no route): [`TrafficConfig::resolve`](super::TrafficConfig::resolve) fills in
    /// the route's.
    pub fn for_port(
        &self,
        port: u16,
        subset: Option<&str>,
    ) -> Result<EffectiveTrafficPolicy, UnknownSubset> {
        let mut settings = self.settings.for_port(port);
        if let Some(name) = subset {
            let subset = self.subset(name).ok_or_else(|| UnknownSubset {
                host: self.host.to_string(),
                subset: name.to_owned(),
            })?;
            if let Some(traffic) = &subset.traffic {
                settings.overlay(&traffic.for_port(port));
            }
        }
        Ok(EffectiveTrafficPolicy::new(settings))
    }
}

/// An Istio DestinationRule: its identity and its [`TrafficPolicy`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DestinationRule {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` (the loader's default namespace when absent).
    pub namespace: String,
    /// The policy, for `spec.host` (short names expanded in the rule's namespace).
    pub policy: TrafficPolicy,
}

impl DestinationRule {
    /// A rule called `namespace/name` carrying `policy`.
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        policy: TrafficPolicy,
    ) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            policy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        balance::Policy,
        traffic::{Algorithm, OutlierDetectionSettings},
    };

    fn lb(a: Algorithm) -> Option<LoadBalancerSettings> {
        Some(LoadBalancerSettings::new(a))
    }

    #[test]
    fn merge_order_follows_istio() {
        let mut policy = TrafficPolicy::new(HostPattern::parse("r.shop").unwrap());
        policy.settings.all_ports.load_balancer = lb(Algorithm::Random);
        policy.settings.all_ports.outlier_detection = Some(OutlierDetectionSettings::default());
        policy.settings.ports.insert(
            80,
            PolicySettings {
                load_balancer: lb(Algorithm::RoundRobin),
                ..PolicySettings::default()
            },
        );
        let mut v2 = Subset::new("v2", BTreeMap::from([("version".into(), "v2".into())]));
        let mut subset_traffic = TrafficSettings::default();
        subset_traffic.all_ports.tls = Some(TlsMode::Disable);
        subset_traffic.ports.insert(
            80,
            PolicySettings {
                load_balancer: lb(Algorithm::LeastRequest),
                ..PolicySettings::default()
            },
        );
        v2.traffic = Some(subset_traffic);
        policy.subsets.push(v2);

        let p = |port, subset| policy.for_port(port, subset).unwrap();
        assert_eq!(p(81, None).balancer_policy(), Policy::Random);
        assert_eq!(p(80, None).balancer_policy(), Policy::RoundRobin);
        assert_eq!(p(81, Some("v2")).balancer_policy(), Policy::Random);
        assert_eq!(p(81, Some("v2")).tls_mode(), TlsMode::Disable);
        assert_eq!(p(80, Some("v2")).balancer_policy(), Policy::LeastRequest);
        assert!(p(80, Some("v2")).outlier_config().is_some());
        assert_eq!(p(80, None).tls_mode(), TlsMode::IstioMutual);
        let err = policy.for_port(80, Some("v3")).unwrap_err();
        assert!(err.to_string().contains("no subset \"v3\""), "{err}");
    }

    #[test]
    fn subsets_select_by_labels() {
        let s = Subset::new("v1", BTreeMap::from([("version".into(), "v1".into())]));
        let ep = Endpoint::new("10.0.0.1:80".parse().unwrap());
        assert!(!s.selects(&ep));
        assert!(
            s.selects(
                &ep.clone()
                    .with_label("version", "v1")
                    .with_label("app", "r")
            )
        );
        assert!(!s.selects(&ep.with_label("version", "v2")));
        assert!(
            Subset::new("all", BTreeMap::new())
                .selects(&Endpoint::new("10.0.0.2:80".parse().unwrap()))
        );
    }
}
