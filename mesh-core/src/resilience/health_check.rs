//! Active health checking's bookkeeping: consecutive probe results per endpoint, turned into
//! healthy/unhealthy transitions with Envoy's thresholds. Probing itself is the runtime's job.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use thiserror::Error;

/// Envoy's `HealthCheck` thresholds and timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthCheckConfig {
    /// Time between probes of one endpoint.
    pub interval: Duration,
    /// A probe not answered within this counts as failed.
    pub timeout: Duration,
    /// Consecutive failures that mark a healthy endpoint unhealthy (Envoy: required).
    pub unhealthy_threshold: u32,
    /// Consecutive successes that mark an unhealthy endpoint healthy again.
    pub healthy_threshold: u32,
}

impl Default for HealthCheckConfig {
    /// 5 s interval, 1 s timeout, 2 failures down, 1 success up.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            unhealthy_threshold: 2,
            healthy_threshold: 1,
        }
    }
}

/// The health check settings are unusable.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HealthCheckConfigError {
    /// A zero interval or timeout would probe without pause or never succeed.
    #[error("interval and timeout must be positive, and the timeout not above the interval")]
    Timing,
    /// A zero threshold would flip health without any evidence.
    #[error("unhealthy_threshold and healthy_threshold must be at least 1")]
    Threshold,
}

impl HealthCheckConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), HealthCheckConfigError> {
        if self.interval.is_zero() || self.timeout.is_zero() || self.timeout > self.interval {
            return Err(HealthCheckConfigError::Timing);
        }
        if self.unhealthy_threshold == 0 || self.healthy_threshold == 0 {
            return Err(HealthCheckConfigError::Threshold);
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Probes {
    unhealthy: bool,
    successes: u32,
    failures: u32,
}

/// Per-endpoint probe history. Endpoints start healthy (Envoy starts them unhealthy until the
/// first probe only when told to; a new endpoint from discovery is trusted, as Istio does).
#[derive(Clone, Debug)]
pub struct HealthChecker {
    config: HealthCheckConfig,
    endpoints: HashMap<SocketAddr, Probes>,
}

impl HealthChecker {
    /// A checker with `config` (validated) and no endpoints.
    pub fn new(config: HealthCheckConfig) -> Result<Self, HealthCheckConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            endpoints: HashMap::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &HealthCheckConfig {
        &self.config
    }

    /// Tracks exactly `addresses`; history is kept for those that remain.
    pub fn set_endpoints(&mut self, addresses: impl IntoIterator<Item = SocketAddr>) {
        let mut old = std::mem::take(&mut self.endpoints);
        self.endpoints = addresses
            .into_iter()
            .map(|a| (a, old.remove(&a).unwrap_or_default()))
            .collect();
    }

    /// Records a probe of `address`; returns `Some(healthy)` when its health changes.
    /// Results for untracked addresses are ignored.
    pub fn record(&mut self, address: SocketAddr, success: bool) -> Option<bool> {
        let probes = self.endpoints.get_mut(&address)?;
        if success {
            probes.failures = 0;
            probes.successes = probes.successes.saturating_add(1);
            if probes.unhealthy && probes.successes >= self.config.healthy_threshold {
                probes.unhealthy = false;
                return Some(true);
            }
        } else {
            probes.successes = 0;
            probes.failures = probes.failures.saturating_add(1);
            if !probes.unhealthy && probes.failures >= self.config.unhealthy_threshold {
                probes.unhealthy = true;
                return Some(false);
            }
        }
        None
    }

    /// Whether `address` is currently failing its checks.
    pub fn is_unhealthy(&self, address: SocketAddr) -> bool {
        self.endpoints.get(&address).is_some_and(|p| p.unhealthy)
    }

    /// The endpoints currently failing their checks.
    pub fn unhealthy(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.endpoints
            .iter()
            .filter(|(_, p)| p.unhealthy)
            .map(|(a, _)| *a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 80))
    }

    fn checker(down: u32, up: u32) -> HealthChecker {
        let config = HealthCheckConfig {
            unhealthy_threshold: down,
            healthy_threshold: up,
            ..HealthCheckConfig::default()
        };
        let mut c = HealthChecker::new(config).unwrap();
        c.set_endpoints([addr(1), addr(2)]);
        c
    }

    #[test]
    fn thresholds_decide_transitions() {
        let mut c = checker(2, 3);
        assert_eq!(c.record(addr(1), false), None);
        assert_eq!(
            c.record(addr(1), true),
            None,
            "a success resets the failure count"
        );
        assert_eq!(c.record(addr(1), false), None);
        assert_eq!(c.record(addr(1), false), Some(false));
        assert!(c.is_unhealthy(addr(1)));
        assert_eq!(c.record(addr(1), false), None, "no repeated transitions");
        assert_eq!(c.record(addr(1), true), None);
        assert_eq!(c.record(addr(1), true), None);
        assert_eq!(c.record(addr(1), true), Some(true));
        assert!(!c.is_unhealthy(addr(1)));
        assert!(!c.is_unhealthy(addr(2)), "endpoints are independent");
    }

    #[test]
    fn history_follows_the_endpoint_set() {
        let mut c = checker(1, 1);
        assert_eq!(c.record(addr(1), false), Some(false));
        c.set_endpoints([addr(1), addr(3)]);
        assert!(c.is_unhealthy(addr(1)), "kept for remaining endpoints");
        assert_eq!(
            c.record(addr(2), false),
            None,
            "removed endpoints are ignored"
        );
        assert_eq!(c.unhealthy().collect::<Vec<_>>(), [addr(1)]);
    }

    #[test]
    fn bad_settings_are_refused() {
        let zero = HealthCheckConfig {
            healthy_threshold: 0,
            ..HealthCheckConfig::default()
        };
        assert_eq!(
            HealthChecker::new(zero).unwrap_err(),
            HealthCheckConfigError::Threshold
        );
        let slow = HealthCheckConfig {
            timeout: Duration::from_secs(10),
            ..HealthCheckConfig::default()
        };
        assert_eq!(
            HealthChecker::new(slow).unwrap_err(),
            HealthCheckConfigError::Timing
        );
    }
}
