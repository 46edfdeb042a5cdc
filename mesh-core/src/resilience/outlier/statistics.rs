//! The interval statistics: which endpoints are outliers by success rate or failure percentage.

use std::net::SocketAddr;

use super::{FailurePercentageConfig, SuccessRateConfig};

/// One endpoint's results over the interval that just ended.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sample {
    pub(super) address: SocketAddr,
    pub(super) requests: u64,
    pub(super) successes: u64,
}

impl Sample {
    /// Success rate in percent.
    fn success_rate(&self) -> f64 {
        if self.requests == 0 {
            return 100.0;
        }
        100.0 * self.successes as f64 / self.requests as f64
    }
}

/// Envoy's success-rate outliers: endpoints with enough volume whose success rate is below
/// `mean - stdev_factor * stdev` of those endpoints, if at least `minimum_hosts` qualify.
///
/// With rates {50, 100, 100, 100, 100}: mean 90, stdev 20, threshold 90 - 1.9 * 20 = 52, so the
/// first endpoint is an outlier.
pub(super) fn success_rate_outliers(
    samples: &[Sample],
    config: &SuccessRateConfig,
) -> Vec<SocketAddr> {
    let judged: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.requests >= config.request_volume.max(1))
        .collect();
    if judged.is_empty() || judged.len() < config.minimum_hosts as usize {
        return Vec::new();
    }
    let n = judged.len() as f64;
    let mean = judged.iter().map(|s| s.success_rate()).sum::<f64>() / n;
    let variance = judged
        .iter()
        .map(|s| (s.success_rate() - mean).powi(2))
        .sum::<f64>()
        / n;
    let threshold = mean - f64::from(config.stdev_factor) / 1000.0 * variance.sqrt();
    judged
        .into_iter()
        .filter(|s| s.success_rate() < threshold)
        .map(|s| s.address)
        .collect()
}

/// Envoy's failure-percentage outliers: endpoints with enough volume whose failure percentage
/// is at least the threshold, if at least `minimum_hosts` have enough volume.
pub(super) fn failure_percentage_outliers(
    samples: &[Sample],
    config: &FailurePercentageConfig,
) -> Vec<SocketAddr> {
    let judged: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.requests >= config.request_volume.max(1))
        .collect();
    if judged.is_empty() || judged.len() < config.minimum_hosts as usize {
        return Vec::new();
    }
    judged
        .into_iter()
        .filter(|s| 100.0 - s.success_rate() >= f64::from(config.threshold))
        .map(|s| s.address)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(rates: &[(u64, u64)]) -> Vec<Sample> {
        rates
            .iter()
            .enumerate()
            .map(|(i, &(requests, successes))| Sample {
                address: format!("10.0.0.{i}:80").parse().unwrap(),
                requests,
                successes,
            })
            .collect()
    }

    #[test]
    fn envoy_success_rate_example() {
        let s = samples(&[(100, 50), (100, 100), (100, 100), (100, 100), (100, 100)]);
        let out = success_rate_outliers(&s, &SuccessRateConfig::default());
        assert_eq!(out, vec![s[0].address]);
        // {90, 95, 100, 100, 100}: mean 97, stdev 4, threshold 89.4: nobody is out.
        let s = samples(&[(100, 90), (100, 95), (100, 100), (100, 100), (100, 100)]);
        assert!(success_rate_outliers(&s, &SuccessRateConfig::default()).is_empty());
    }

    #[test]
    fn volume_and_minimum_hosts_gate_the_statistics() {
        // Only four endpoints have 100 requests: not enough hosts.
        let s = samples(&[(100, 0), (100, 100), (100, 100), (100, 100), (99, 99)]);
        assert!(success_rate_outliers(&s, &SuccessRateConfig::default()).is_empty());
        assert!(success_rate_outliers(&[], &SuccessRateConfig::default()).is_empty());
        let config = SuccessRateConfig {
            minimum_hosts: 0,
            request_volume: 0,
            ..SuccessRateConfig::default()
        };
        // Zero volume counts as 100% success and never divides by zero.
        assert!(success_rate_outliers(&samples(&[(0, 0)]), &config).is_empty());
    }

    #[test]
    fn failure_percentage() {
        let config = FailurePercentageConfig {
            minimum_hosts: 2,
            ..FailurePercentageConfig::default()
        };
        let s = samples(&[(50, 7), (50, 8), (50, 50), (10, 0)]);
        // 86% failures >= 85 is out; 84% is not; the 10-request endpoint is not judged.
        assert_eq!(failure_percentage_outliers(&s, &config), vec![s[0].address]);
        let one = samples(&[(50, 0)]);
        assert!(failure_percentage_outliers(&one, &config).is_empty());
    }
}
