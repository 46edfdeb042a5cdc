use super::{EjectionReason, OutlierConfig};
use crate::clock::Timestamp;

/// What happened to one request or connection, as outlier detection classifies it.
///
/// gRPC callers should map `grpc-status` to the HTTP status Envoy uses for it (for example
/// UNAVAILABLE to 503) before reporting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response arrived with this HTTP status. 5xx counts as a failure; 502, 503 and 504 are
    /// also gateway errors.
    Http(u16),
    /// The mesh failed to reach the endpoint: connect refused or timed out, TLS failure, reset
    /// before a response. Counted as a 503 unless local-origin errors are split.
    LocalOriginFailure,
    /// A TCP connection completed and no HTTP status will follow. (HTTP callers report the
    /// status instead.) Counted as a 200 unless local-origin errors are split.
    LocalOriginSuccess,
}

/// Counters and ejection state of one endpoint.
#[derive(Clone, Debug, Default)]
pub(super) struct HostState {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    consecutive_local_origin: u32,
    /// Requests and successes in the current interval (external origin).
    pub(super) interval_requests: u64,
    pub(super) interval_successes: u64,
    /// Set while ejected.
    pub(super) ejected_until: Option<Timestamp>,
    /// Ejections in a row; scales the ejection time and decays by one per healthy interval.
    pub(super) backoff: u32,
}

impl HostState {
    pub(super) fn is_ejected(&self) -> bool {
        self.ejected_until.is_some()
    }

    /// Counts an outcome; returns the consecutive-error detector it trips, if any.
    #[inline]
    pub(super) fn record(
        &mut self,
        outcome: Outcome,
        config: &OutlierConfig,
    ) -> Option<EjectionReason> {
        let status = match (outcome, config.split_external_local_origin_errors) {
            (Outcome::Http(status), _) => status,
            (Outcome::LocalOriginFailure, false) => 503,
            (Outcome::LocalOriginSuccess, false) => 200,
            (Outcome::LocalOriginFailure, true) => {
                self.consecutive_local_origin = self.consecutive_local_origin.saturating_add(1);
                return trips(
                    self.consecutive_local_origin,
                    config.consecutive_local_origin_failures,
                )
                .then_some(EjectionReason::ConsecutiveLocalOriginFailures);
            }
            (Outcome::LocalOriginSuccess, true) => {
                self.consecutive_local_origin = 0;
                return None;
            }
        };
        self.interval_requests = self.interval_requests.saturating_add(1);
        if !(500..600).contains(&status) {
            self.interval_successes = self.interval_successes.saturating_add(1);
            self.consecutive_5xx = 0;
            self.consecutive_gateway = 0;
            return None;
        }
        if matches!(status, 502..=504) {
            self.consecutive_gateway = self.consecutive_gateway.saturating_add(1);
        } else {
            self.consecutive_gateway = 0;
        }
        self.consecutive_5xx = self.consecutive_5xx.saturating_add(1);
        if trips(self.consecutive_gateway, config.consecutive_gateway_errors) {
            Some(EjectionReason::ConsecutiveGatewayErrors)
        } else if trips(self.consecutive_5xx, config.consecutive_5xx) {
            Some(EjectionReason::Consecutive5xx)
        } else {
            None
        }
    }

    /// Resets the counter behind `reason` after an ejection attempt, so the next attempt needs
    /// a fresh run of errors (Envoy does the same).
    pub(super) fn reset_consecutive(&mut self, reason: EjectionReason) {
        match reason {
            EjectionReason::Consecutive5xx => self.consecutive_5xx = 0,
            EjectionReason::ConsecutiveGatewayErrors => self.consecutive_gateway = 0,
            EjectionReason::ConsecutiveLocalOriginFailures => self.consecutive_local_origin = 0,
            EjectionReason::SuccessRate | EjectionReason::FailurePercentage => {}
        }
    }

    /// Ejects until `until`, growing the backoff as Envoy does (it stops growing once the
    /// ejection time has reached its cap).
    pub(super) fn eject(&mut self, now: Timestamp, config: &OutlierConfig) -> Timestamp {
        let next = self.backoff.saturating_add(1);
        if config.base_ejection_time.saturating_mul(self.backoff)
            < config
                .max_ejection_time
                .saturating_add(config.base_ejection_time)
        {
            self.backoff = next;
        }
        let until = now + config.ejection_time(self.backoff.max(1));
        self.ejected_until = Some(until);
        until
    }

    /// Ends the ejection; consecutive counters restart so a couple of errors right after
    /// returning do not re-eject at once.
    pub(super) fn uneject(&mut self) {
        self.ejected_until = None;
        self.consecutive_5xx = 0;
        self.consecutive_gateway = 0;
        self.consecutive_local_origin = 0;
    }

    /// Takes the interval's counts, leaving them empty for the next interval.
    pub(super) fn take_interval(&mut self) -> (u64, u64) {
        let counts = (self.interval_requests, self.interval_successes);
        self.interval_requests = 0;
        self.interval_successes = 0;
        counts
    }
}

/// True when a counter reaches an enabled (non-zero) threshold.
fn trips(count: u32, threshold: u32) -> bool {
    threshold != 0 && count >= threshold
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn consecutive_5xx_and_gateway_counters() {
        let config = OutlierConfig {
            consecutive_5xx: 3,
            consecutive_gateway_errors: 2,
            ..OutlierConfig::default()
        };
        let mut h = HostState::default();
        assert_eq!(h.record(Outcome::Http(500), &config), None);
        assert_eq!(h.record(Outcome::Http(503), &config), None);
        // 3 5xx in a row trips 5xx; only 2 gateway errors in a row trip the gateway detector.
        assert_eq!(
            h.record(Outcome::Http(502), &config),
            Some(EjectionReason::ConsecutiveGatewayErrors)
        );
        h.reset_consecutive(EjectionReason::ConsecutiveGatewayErrors);
        assert_eq!(
            h.record(Outcome::Http(500), &config),
            Some(EjectionReason::Consecutive5xx)
        );
        h.reset_consecutive(EjectionReason::Consecutive5xx);
        assert_eq!(h.record(Outcome::Http(200), &config), None);
        assert_eq!(h.take_interval(), (5, 1));
        assert_eq!(h.take_interval(), (0, 0));
    }

    #[test]
    fn local_origin_split_and_unsplit() {
        let unsplit = OutlierConfig {
            consecutive_5xx: 2,
            ..OutlierConfig::default()
        };
        let mut h = HostState::default();
        assert_eq!(h.record(Outcome::LocalOriginFailure, &unsplit), None);
        assert_eq!(
            h.record(Outcome::LocalOriginFailure, &unsplit),
            Some(EjectionReason::Consecutive5xx)
        );
        let split = OutlierConfig {
            split_external_local_origin_errors: true,
            consecutive_local_origin_failures: 2,
            ..unsplit
        };
        let mut h = HostState::default();
        assert_eq!(h.record(Outcome::LocalOriginFailure, &split), None);
        assert_eq!(h.record(Outcome::LocalOriginSuccess, &split), None);
        assert_eq!(h.record(Outcome::LocalOriginFailure, &split), None);
        assert_eq!(
            h.record(Outcome::LocalOriginFailure, &split),
            Some(EjectionReason::ConsecutiveLocalOriginFailures)
        );
        assert_eq!(
            h.take_interval(),
            (0, 0),
            "split local-origin results stay out of rates"
        );
    }

    #[test]
    fn zero_threshold_disables() {
        let config = OutlierConfig {
            consecutive_5xx: 0,
            ..OutlierConfig::default()
        };
        let mut h = HostState::default();
        assert!((0..100).all(|_| h.record(Outcome::Http(500), &config).is_none()));
    }

    #[test]
    fn backoff_grows_until_the_cap() {
        let config = OutlierConfig {
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(25),
            ..OutlierConfig::default()
        };
        let mut h = HostState::default();
        let t0 = Timestamp::ZERO;
        let ends: Vec<u64> = (0..5)
            .map(|_| h.eject(t0, &config).as_nanos() / 1_000_000_000)
            .collect();
        assert_eq!(ends, [10, 20, 25, 25, 25]);
        assert_eq!(
            h.backoff, 4,
            "stops growing once base * backoff >= max + base"
        );
        h.uneject();
        assert!(!h.is_ejected());
    }
}
