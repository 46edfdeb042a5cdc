//! `outlierDetection`: Istio's fields and their mapping onto the detector's config.

use std::time::Duration;

use crate::resilience::OutlierConfig;

/// Istio `outlierDetection`, as written (unset fields are `None` and take Istio's defaults).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutlierDetectionSettings {
    /// `consecutive5xxErrors` (default 5; 0 disables).
    pub consecutive_5xx_errors: Option<u32>,
    /// `consecutiveGatewayErrors` (default off; 0 disables).
    pub consecutive_gateway_errors: Option<u32>,
    /// `consecutiveLocalOriginFailures` (default 5; needs
    /// `split_external_local_origin_errors`).
    pub consecutive_local_origin_failures: Option<u32>,
    /// `splitExternalLocalOriginErrors`.
    pub split_external_local_origin_errors: bool,
    /// `interval` (default 10 s).
    pub interval: Option<Duration>,
    /// `baseEjectionTime` (default 30 s).
    pub base_ejection_time: Option<Duration>,
    /// `maxEjectionPercent` (default 10).
    pub max_ejection_percent: Option<u32>,
    /// `minHealthPercent` (default 0: panic mode off while outlier detection is on).
    pub min_health_percent: Option<u32>,
}

impl OutlierDetectionSettings {
    /// The detector configuration, as istiod would configure Envoy: Istio's values where set,
    /// Envoy's defaults elsewhere, and a maximum ejection time raised to the base ejection time
    /// when the base is longer than Envoy's 300 s cap.
    pub fn outlier_config(&self) -> OutlierConfig {
        let d = OutlierConfig::default();
        let base = self.base_ejection_time.unwrap_or(d.base_ejection_time);
        OutlierConfig {
            consecutive_5xx: self.consecutive_5xx_errors.unwrap_or(d.consecutive_5xx),
            consecutive_gateway_errors: self
                .consecutive_gateway_errors
                .unwrap_or(d.consecutive_gateway_errors),
            consecutive_local_origin_failures: self
                .consecutive_local_origin_failures
                .unwrap_or(d.consecutive_local_origin_failures),
            split_external_local_origin_errors: self.split_external_local_origin_errors,
            interval: self.interval.unwrap_or(d.interval),
            base_ejection_time: base,
            max_ejection_time: d.max_ejection_time.max(base),
            max_ejection_percent: self.max_ejection_percent.unwrap_or(d.max_ejection_percent),
            ..d
        }
    }

    /// The balancer's panic threshold while outlier detection is on: `minHealthPercent`, which
    /// istiod always sets (so 0, panic mode off, unless written).
    pub fn panic_threshold_percent(&self) -> u32 {
        self.min_health_percent.unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_onto_the_detector() {
        assert_eq!(
            OutlierDetectionSettings::default().outlier_config(),
            OutlierConfig::default()
        );
        let s = OutlierDetectionSettings {
            consecutive_5xx_errors: Some(0),
            consecutive_gateway_errors: Some(3),
            consecutive_local_origin_failures: Some(2),
            split_external_local_origin_errors: true,
            interval: Some(Duration::from_secs(1)),
            base_ejection_time: Some(Duration::from_secs(600)),
            max_ejection_percent: Some(50),
            min_health_percent: Some(30),
        };
        let c = s.outlier_config();
        assert!(c.validate().is_ok());
        assert_eq!(c.consecutive_5xx, 0);
        assert_eq!(c.consecutive_gateway_errors, 3);
        assert_eq!(c.consecutive_local_origin_failures, 2);
        assert!(c.split_external_local_origin_errors);
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(c.max_ejection_time, Duration::from_secs(600));
        assert_eq!(c.max_ejection_percent, 50);
        assert_eq!(s.panic_threshold_percent(), 30);
        assert_eq!(
            OutlierDetectionSettings::default().panic_threshold_percent(),
            0
        );
    }
}
