//! The settings that apply to one call, and their conversion into the state machines' configs.

use std::{collections::BTreeMap, time::Duration};

use super::{
    ConnectionPoolSettings, HashKeySource, LoadBalancerSettings, PolicySettings, RetryPolicy,
    TlsMode,
};
use crate::{
    balance::{LocalityRules, Policy, PriorityConfig},
    model::Locality,
    resilience::{Limits, OutlierConfig},
};

/// What applies to calls to one destination (host, port, subset), with every level of the
/// DestinationRule merged and the route's retries and timeout attached.
///
/// Each accessor hands a `mesh-core` state machine its configuration:
///
/// ```
/// use std::sync::Arc;
/// use mesh_core::{clock::ManualClock, model::Locality, resilience::CircuitBreaker};
/// use mesh_core::traffic::EffectiveTrafficPolicy;
///
/// let policy = EffectiveTrafficPolicy::default(); // no DestinationRule, no VirtualService
/// let balancer = policy
///     .balancer_policy()
///     .build(policy.priority_config(Locality::default()), Arc::new(ManualClock::new()), 7)?;
/// let breaker = CircuitBreaker::new(policy.breaker_limits());
/// assert!(policy.outlier_config().is_none()); // Istio: no outlierDetection, no ejection
/// assert_eq!(policy.retry().attempts, 2);     // Istio's default retries
/// # let _ = (balancer, breaker);
/// # Ok::<(), mesh_core::balance::BalanceConfigError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EffectiveTrafficPolicy {
    settings: PolicySettings,
    retry: RetryPolicy,
    timeout: Option<Duration>,
}

impl EffectiveTrafficPolicy {
    /// The policy for merged `settings`, with Istio's default retries and no timeout.
    pub fn new(settings: PolicySettings) -> Self {
        Self {
            settings,
            retry: RetryPolicy::default(),
            timeout: None,
        }
    }

    /// The same settings with a route's retries and timeout.
    pub fn with_route(mut self, retry: RetryPolicy, timeout: Option<Duration>) -> Self {
        self.retry = retry;
        self.timeout = timeout;
        self
    }

    /// The merged DestinationRule components.
    pub fn settings(&self) -> &PolicySettings {
        &self.settings
    }

    /// The load-balancer settings (Istio's default, `LEAST_REQUEST`, when unset).
    pub fn load_balancer(&self) -> LoadBalancerSettings {
        self.settings.load_balancer.clone().unwrap_or_default()
    }

    /// The balancing algorithm to [`build`](Policy::build).
    pub fn balancer_policy(&self) -> Policy {
        self.load_balancer().policy()
    }

    /// Where consistent-hash keys come from, when the algorithm hashes.
    pub fn hash_key_source(&self) -> Option<HashKeySource> {
        self.load_balancer().hash_key_source().cloned()
    }

    /// Locality priorities for a caller at `local` with no labels (see
    /// [`priority_config_for`](Self::priority_config_for)).
    pub fn priority_config(&self, local: Locality) -> PriorityConfig {
        self.priority_config_for(local, &BTreeMap::new())
    }

    /// Locality priorities for a caller at `local` with workload `labels` (compared by
    /// `failoverPriority`), as istiod sets them up:
    ///
    /// - nothing applies when `localityLbSetting.enabled` is false;
    /// - `distribute` applies whenever it is set (istiod then applies no failover);
    /// - otherwise endpoints are prioritised by locality (and `failover`, `failoverPriority`)
    ///   only when outlier detection is configured (Istio enables failover only with outlier
    ///   detection, since without it nothing ever fails over);
    /// - with outlier detection the panic threshold is `minHealthPercent` (0 unless set:
    ///   istiod disables panic mode); without it, Envoy's 50%.
    pub fn priority_config_for(
        &self,
        local: Locality,
        labels: &BTreeMap<String, String>,
    ) -> PriorityConfig {
        let mut config = PriorityConfig::default();
        let lb = self.settings.load_balancer.as_ref();
        let enabled = lb.and_then(|lb| lb.locality_enabled).unwrap_or(true);
        let rules = lb.map(|lb| &lb.locality_rules);
        if let Some(outlier) = &self.settings.outlier_detection {
            config.panic_threshold_percent = outlier.panic_threshold_percent();
        }
        if !enabled {
            return config;
        }
        if let Some(rules) = rules.filter(|r| !r.distribute.is_empty()) {
            config.local = local;
            config.rules = LocalityRules {
                distribute: rules.distribute.clone(),
                ..LocalityRules::default()
            };
        } else if self.settings.outlier_detection.is_some() {
            config.local = local;
            if let Some(rules) = rules {
                config.rules = LocalityRules {
                    distribute: Vec::new(),
                    failover: rules.failover.clone(),
                    failover_priority: rules.failover_priority.clone(),
                    labels: if rules.failover_priority.is_empty() {
                        BTreeMap::new()
                    } else {
                        labels.clone()
                    },
                };
            }
        }
        config
    }

    /// The connection pool settings (Istio's defaults when unset).
    pub fn connection_pool(&self) -> ConnectionPoolSettings {
        self.settings.connection_pool.unwrap_or_default()
    }

    /// Circuit-breaker limits from `connectionPool`.
    pub fn breaker_limits(&self) -> Limits {
        self.connection_pool().limits()
    }

    /// How long to wait for a connection (`tcp.connectTimeout`, default 10 s).
    pub fn connect_timeout(&self) -> Duration {
        self.connection_pool().connect_timeout()
    }

    /// The outlier detector's configuration, or `None` when the DestinationRule has no
    /// `outlierDetection` (Istio then ejects nothing).
    pub fn outlier_config(&self) -> Option<OutlierConfig> {
        self.settings
            .outlier_detection
            .as_ref()
            .map(|o| o.outlier_config())
    }

    /// How calls are secured (`ISTIO_MUTUAL` unless the rule says `DISABLE`).
    pub fn tls_mode(&self) -> TlsMode {
        self.settings.tls.unwrap_or_default()
    }

    /// The route's retry policy (Istio's default when no route set one).
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The route's overall timeout; `None`: no limit (Istio's default).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::{Algorithm, OutlierDetectionSettings};

    fn local() -> Locality {
        "us-east1/us-east1-b".parse().unwrap()
    }

    #[test]
    fn locality_and_panic_follow_istio() {
        let none = EffectiveTrafficPolicy::default().priority_config(local());
        assert!(none.local.is_unknown());
        assert_eq!(none.panic_threshold_percent, 50);

        let mut settings = PolicySettings {
            outlier_detection: Some(OutlierDetectionSettings::default()),
            ..PolicySettings::default()
        };
        let with_outlier = EffectiveTrafficPolicy::new(settings.clone()).priority_config(local());
        assert_eq!(with_outlier.local, local());
        assert_eq!(with_outlier.panic_threshold_percent, 0);

        let mut lb = LoadBalancerSettings::new(Algorithm::RoundRobin);
        lb.locality_enabled = Some(false);
        settings.load_balancer = Some(lb);
        settings.outlier_detection = Some(OutlierDetectionSettings {
            min_health_percent: Some(40),
            ..OutlierDetectionSettings::default()
        });
        let disabled = EffectiveTrafficPolicy::new(settings).priority_config(local());
        assert!(disabled.local.is_unknown());
        assert_eq!(disabled.panic_threshold_percent, 40);
    }

    #[test]
    fn route_settings_attach() {
        let p = EffectiveTrafficPolicy::default()
            .with_route(RetryPolicy::disabled(), Some(Duration::from_secs(3)));
        assert_eq!(p.retry().attempts, 0);
        assert_eq!(p.timeout(), Some(Duration::from_secs(3)));
        assert_eq!(p.connect_timeout(), Duration::from_secs(10));
        assert_eq!(p.breaker_limits(), Limits::default());
    }
}
