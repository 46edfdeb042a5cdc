use std::time::Duration;

use thiserror::Error;

/// Why an outlier detection configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OutlierConfigError {
    /// A duration that must be positive is zero.
    #[error("outlier detection {field} must be greater than zero")]
    ZeroDuration {
        /// The offending setting.
        field: &'static str,
    },
    /// A percentage above 100.
    #[error("outlier detection {field} is {value}%; it must be at most 100%")]
    Percentage {
        /// The offending setting.
        field: &'static str,
        /// Its value.
        value: u32,
    },
}

/// Success-rate ejection: eject endpoints whose success rate is far below the mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SuccessRateConfig {
    /// At least this many endpoints must have enough traffic for the statistics to be used
    /// (Envoy: 5).
    pub minimum_hosts: u32,
    /// An endpoint needs this many requests in the interval to be judged (Envoy: 100).
    pub request_volume: u64,
    /// Eject below `mean - stdev_factor / 1000 * stdev` (Envoy: 1900, i.e. 1.9).
    pub stdev_factor: u32,
}

impl Default for SuccessRateConfig {
    fn default() -> Self {
        Self {
            minimum_hosts: 5,
            request_volume: 100,
            stdev_factor: 1900,
        }
    }
}

/// Failure-percentage ejection: eject endpoints whose failure rate exceeds a fixed threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailurePercentageConfig {
    /// Eject at or above this failure percentage (Envoy: 85).
    pub threshold: u32,
    /// At least this many endpoints must have enough traffic (Envoy: 5).
    pub minimum_hosts: u32,
    /// An endpoint needs this many requests in the interval to be judged (Envoy: 50).
    pub request_volume: u64,
}

impl Default for FailurePercentageConfig {
    fn default() -> Self {
        Self {
            threshold: 85,
            minimum_hosts: 5,
            request_volume: 50,
        }
    }
}

/// Istio's `DestinationRule.trafficPolicy.outlierDetection`, with Envoy's extra knobs.
///
/// Consecutive-error thresholds of 0 disable that detector, as in Istio. Istio's
/// `minHealthPercent` is not here: it is the balancer's panic threshold
/// ([`PriorityConfig::panic_threshold_percent`](crate::balance::PriorityConfig)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutlierConfig {
    /// Eject after this many 5xx responses in a row (Istio `consecutive5xxErrors`, default 5).
    /// Local-origin failures count as 503 unless `split_external_local_origin_errors` is set.
    pub consecutive_5xx: u32,
    /// Eject after this many 502/503/504 in a row (Istio `consecutiveGatewayErrors`, default 0:
    /// off).
    pub consecutive_gateway_errors: u32,
    /// Eject after this many connect failures, timeouts or resets in a row, when split
    /// (Istio `consecutiveLocalOriginFailures`, default 5).
    pub consecutive_local_origin_failures: u32,
    /// Judge local-origin failures separately from HTTP statuses (Istio
    /// `splitExternalLocalOriginErrors`, default false).
    pub split_external_local_origin_errors: bool,
    /// How often statistics are evaluated (Istio `interval`, default 10 s).
    pub interval: Duration,
    /// Ejection time per ejection in a row (Istio `baseEjectionTime`, default 30 s).
    pub base_ejection_time: Duration,
    /// Cap on the ejection time (Envoy `max_ejection_time`, default 300 s).
    pub max_ejection_time: Duration,
    /// At most this share of endpoints is ejected at once (Istio `maxEjectionPercent`,
    /// default 10).
    pub max_ejection_percent: u32,
    /// Allow one ejection even when `max_ejection_percent` would forbid it, so small services
    /// can eject at all (Envoy `always_eject_one_host`, default false).
    pub always_eject_one_host: bool,
    /// Success-rate ejection; off by default, as Istio configures Envoy.
    pub success_rate: Option<SuccessRateConfig>,
    /// Failure-percentage ejection; off by default.
    pub failure_percentage: Option<FailurePercentageConfig>,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            consecutive_5xx: 5,
            consecutive_gateway_errors: 0,
            consecutive_local_origin_failures: 5,
            split_external_local_origin_errors: false,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
            always_eject_one_host: false,
            success_rate: None,
            failure_percentage: None,
        }
    }
}

impl OutlierConfig {
    /// Checks that the interval and base ejection time are positive and percentages at most 100.
    pub fn validate(&self) -> Result<(), OutlierConfigError> {
        for (field, value) in [
            ("interval", self.interval),
            ("base ejection time", self.base_ejection_time),
        ] {
            if value.is_zero() {
                return Err(OutlierConfigError::ZeroDuration { field });
            }
        }
        let mut percentages = vec![("max ejection percent", self.max_ejection_percent)];
        if let Some(fp) = self.failure_percentage {
            percentages.push(("failure percentage threshold", fp.threshold));
        }
        for (field, value) in percentages {
            if value > 100 {
                return Err(OutlierConfigError::Percentage { field, value });
            }
        }
        Ok(())
    }

    /// How long the `n`th ejection in a row lasts: `min(base * n, max(max, base))`.
    pub fn ejection_time(&self, n: u32) -> Duration {
        let cap = self.max_ejection_time.max(self.base_ejection_time);
        self.base_ejection_time.saturating_mul(n).min(cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_istio() {
        let c = OutlierConfig::default();
        assert!(c.validate().is_ok());
        assert_eq!(c.consecutive_5xx, 5);
        assert_eq!(c.max_ejection_percent, 10);
        assert!(c.success_rate.is_none());
    }

    #[test]
    fn ejection_time_grows_and_caps() {
        let c = OutlierConfig::default();
        assert_eq!(c.ejection_time(1), Duration::from_secs(30));
        assert_eq!(c.ejection_time(3), Duration::from_secs(90));
        assert_eq!(c.ejection_time(100), Duration::from_secs(300));
        let c = OutlierConfig {
            max_ejection_time: Duration::from_secs(1),
            ..c
        };
        assert_eq!(
            c.ejection_time(2),
            Duration::from_secs(30),
            "base wins over a smaller max"
        );
    }

    #[test]
    fn validation() {
        let zero = OutlierConfig {
            interval: Duration::ZERO,
            ..OutlierConfig::default()
        };
        assert_eq!(
            zero.validate(),
            Err(OutlierConfigError::ZeroDuration { field: "interval" })
        );
        let pct = OutlierConfig {
            failure_percentage: Some(FailurePercentageConfig {
                threshold: 101,
                ..FailurePercentageConfig::default()
            }),
            ..OutlierConfig::default()
        };
        assert!(matches!(
            pct.validate(),
            Err(OutlierConfigError::Percentage { value: 101, .. })
        ));
    }
}
