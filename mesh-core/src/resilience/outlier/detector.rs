use std::{collections::BTreeMap, net::SocketAddr};

use super::{
    Outcome, OutlierConfig, OutlierConfigError,
    host::HostState,
    statistics::{Sample, failure_percentage_outliers, success_rate_outliers},
};
use crate::{balance::AddrIndex, clock::Timestamp};

/// Why an endpoint was ejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EjectionReason {
    /// Too many 5xx (or unsplit local-origin failures) in a row.
    Consecutive5xx,
    /// Too many 502/503/504 in a row.
    ConsecutiveGatewayErrors,
    /// Too many connect failures, timeouts or resets in a row (split mode).
    ConsecutiveLocalOriginFailures,
    /// Success rate far below the other endpoints' over an interval.
    SuccessRate,
    /// Failure percentage above the threshold over an interval.
    FailurePercentage,
}

impl EjectionReason {
    const COUNT: usize = 5;

    const fn index(self) -> usize {
        self as usize
    }
}

/// A change the balancer must hear about: pass it to
/// [`Balancer::set_ejected`](crate::balance::Balancer::set_ejected).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutlierEvent {
    /// The endpoint is ejected until `until`.
    Ejected {
        /// The endpoint.
        address: SocketAddr,
        /// Which detector fired.
        reason: EjectionReason,
        /// When it will be returned (at the first [`OutlierDetector::tick`] at or after this).
        until: Timestamp,
    },
    /// The endpoint's ejection time is over.
    Unejected {
        /// The endpoint.
        address: SocketAddr,
    },
}

impl OutlierEvent {
    /// The endpoint concerned.
    pub fn address(&self) -> SocketAddr {
        match *self {
            Self::Ejected { address, .. } | Self::Unejected { address } => address,
        }
    }

    /// True for [`Ejected`](Self::Ejected).
    pub fn is_ejection(&self) -> bool {
        matches!(self, Self::Ejected { .. })
    }
}

/// Ejection counters, for metrics (Envoy's `outlier_detection.ejections_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutlierStats {
    enforced: [u64; EjectionReason::COUNT],
    overflow: u64,
}

impl OutlierStats {
    /// Ejections carried out for `reason`.
    pub fn enforced(&self, reason: EjectionReason) -> u64 {
        self.enforced[reason.index()]
    }

    /// Ejections refused because `max_ejection_percent` was reached.
    pub fn overflow(&self) -> u64 {
        self.overflow
    }
}

/// Passive health checking: ejects endpoints that fail, returns them after a growing time.
///
/// Semantics follow Istio's `outlierDetection` as Envoy implements it:
///
/// - [`record`](Self::record) every outcome. Consecutive-error detectors (5xx, gateway errors,
///   local-origin failures) eject at once and return the event.
/// - Call [`tick`](Self::tick) at [`next_deadline`](Self::next_deadline) (or more often).
///   Ejections whose time is over end then, and once per `interval` the success-rate and
///   failure-percentage detectors judge the interval that just ended.
/// - The `n`th ejection in a row lasts `min(base_ejection_time * n, max_ejection_time)`; `n`
///   falls by one for every interval the endpoint spends un-ejected.
/// - Never more than `max_ejection_percent` of the endpoints are ejected at once (plus one if
///   `always_eject_one_host`); refused ejections are counted as overflow.
///
/// Ejection events must be forwarded to the balancer; `is_ejected` answers the same question
/// for the admin endpoint. The detector is sans-I/O and takes time as an argument, so tests and
/// fuzzers drive it with plain [`Timestamp`]s. Endpoints are kept in address order, so which
/// endpoints win when the percentage cap bites is deterministic.
///
/// The per-request calls cost O(1) whatever the number of endpoints: [`record`](Self::record)
/// is one hash lookup, and [`next_deadline`](Self::next_deadline) (which a caller may check on
/// every request) is kept up to date rather than searched for. Only
/// [`tick`](Self::tick) and [`set_endpoints`](Self::set_endpoints) walk the endpoints.
///
/// ```
/// use std::time::Duration;
/// use mesh_core::clock::Timestamp;
/// use mesh_core::resilience::{OutlierConfig, OutlierDetector, OutlierEvent, Outcome};
///
/// let config = OutlierConfig { max_ejection_percent: 100, ..OutlierConfig::default() };
/// let t0 = Timestamp::ZERO;
/// let mut detector = OutlierDetector::new(config, t0)?;
/// let bad = "10.0.0.1:80".parse().unwrap();
/// detector.set_endpoints([bad, "10.0.0.2:80".parse().unwrap()]);
/// let events: Vec<_> = (0..5).filter_map(|_| detector.record(bad, Outcome::Http(503), t0)).collect();
/// assert!(matches!(events[..], [OutlierEvent::Ejected { .. }]));
/// assert!(detector.is_ejected(bad));
/// let later = t0 + Duration::from_secs(30);
/// assert_eq!(detector.tick(later), vec![OutlierEvent::Unejected { address: bad }]);
/// # Ok::<(), mesh_core::resilience::OutlierConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct OutlierDetector {
    config: OutlierConfig,
    /// Endpoints in address order, with their state.
    hosts: Vec<(SocketAddr, HostState)>,
    /// Position of each address in `hosts`.
    index: AddrIndex,
    /// Number of ejected hosts.
    ejected: usize,
    /// The earliest end of an ejection, if any host is ejected.
    next_return: Option<Timestamp>,
    next_interval: Timestamp,
    stats: OutlierStats,
}

impl OutlierDetector {
    /// A detector with no endpoints; the first interval ends at `now + interval`.
    pub fn new(config: OutlierConfig, now: Timestamp) -> Result<Self, OutlierConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            hosts: Vec::new(),
            index: AddrIndex::default(),
            ejected: 0,
            next_return: None,
            next_interval: now + config.interval,
            stats: OutlierStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OutlierConfig {
        &self.config
    }

    /// Sets the endpoints to watch. State is kept for endpoints that remain; removed endpoints
    /// are forgotten, ejection included (the balancer forgets them too).
    pub fn set_endpoints(&mut self, addresses: impl IntoIterator<Item = SocketAddr>) {
        let mut old: BTreeMap<SocketAddr, HostState> =
            std::mem::take(&mut self.hosts).into_iter().collect();
        // Collected by address: a repeated address keeps the state of its last mention.
        let hosts: BTreeMap<SocketAddr, HostState> = addresses
            .into_iter()
            .map(|a| (a, old.remove(&a).unwrap_or_default()))
            .collect();
        self.hosts = hosts.into_iter().collect();
        let hosts = &self.hosts;
        self.index = AddrIndex::new(hosts.len(), |i| hosts.get(i).map(|(a, _)| *a));
        self.recount();
    }

    /// Recomputes the ejected count and the earliest return after hosts changed wholesale.
    fn recount(&mut self) {
        let ends = self.hosts.iter().filter_map(|(_, h)| h.ejected_until);
        self.ejected = ends.clone().count();
        self.next_return = ends.min();
    }

    /// The position of `address` in `hosts`.
    #[inline]
    fn position(&self, address: SocketAddr) -> Option<usize> {
        let hosts = &self.hosts;
        self.index.get(address, |i| hosts.get(i).map(|(a, _)| *a))
    }

    fn host_mut(&mut self, address: SocketAddr) -> Option<&mut HostState> {
        let i = self.position(address)?;
        self.hosts.get_mut(i).map(|(_, h)| h)
    }

    /// Records an outcome for `address`; returns the ejection it caused, if any. Outcomes for
    /// addresses not set with [`set_endpoints`](Self::set_endpoints) are ignored.
    #[inline]
    pub fn record(
        &mut self,
        address: SocketAddr,
        outcome: Outcome,
        now: Timestamp,
    ) -> Option<OutlierEvent> {
        let i = self.position(address)?;
        let (_, host) = self.hosts.get_mut(i)?;
        // The common case (no detector trips) stays small enough to inline into the caller.
        let reason = host.record(outcome, &self.config)?;
        self.tripped(i, reason, now)
    }

    /// A consecutive-error detector tripped for `hosts[i]`: eject it if allowed.
    #[cold]
    #[inline(never)]
    fn tripped(
        &mut self,
        i: usize,
        reason: EjectionReason,
        now: Timestamp,
    ) -> Option<OutlierEvent> {
        let (address, host) = self.hosts.get_mut(i)?;
        let address = *address;
        if host.is_ejected() {
            return None;
        }
        host.reset_consecutive(reason);
        self.try_eject(address, reason, now)
    }

    /// Ends ejections that are over and, once per interval, runs the statistical detectors.
    /// Returns the changes in order: un-ejections first, then ejections.
    pub fn tick(&mut self, now: Timestamp) -> Vec<OutlierEvent> {
        let interval_due = now >= self.next_interval;
        let mut events = Vec::new();
        let returns_due = self.next_return.is_some_and(|t| t <= now);
        if interval_due || returns_due {
            for (address, host) in &mut self.hosts {
                match host.ejected_until {
                    Some(until) if until <= now => {
                        host.uneject();
                        events.push(OutlierEvent::Unejected { address: *address });
                    }
                    Some(_) => {}
                    // A healthy interval brings the next ejection time back down.
                    None if interval_due => host.backoff = host.backoff.saturating_sub(1),
                    None => {}
                }
            }
            self.recount();
        }
        if interval_due {
            self.next_interval = now + self.config.interval;
            events.extend(self.evaluate_interval(now));
        }
        events
    }

    /// When [`tick`](Self::tick) next has work: the end of the interval or of an ejection.
    pub fn next_deadline(&self) -> Timestamp {
        self.next_return
            .map_or(self.next_interval, |t| t.min(self.next_interval))
    }

    /// Whether `address` is ejected.
    pub fn is_ejected(&self, address: SocketAddr) -> bool {
        let host = self.position(address).and_then(|i| self.hosts.get(i));
        host.is_some_and(|(_, h)| h.is_ejected())
    }

    /// The ejected endpoints, in address order.
    pub fn ejected(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.hosts
            .iter()
            .filter(|(_, h)| h.is_ejected())
            .map(|(a, _)| *a)
    }

    /// Number of ejected endpoints.
    pub fn ejected_count(&self) -> usize {
        self.ejected
    }

    /// Ejection counters.
    pub fn stats(&self) -> OutlierStats {
        self.stats
    }

    /// Judges the interval that just ended and starts a new one.
    fn evaluate_interval(&mut self, now: Timestamp) -> Vec<OutlierEvent> {
        let mut samples = Vec::new();
        for (address, host) in &mut self.hosts {
            let (requests, successes) = host.take_interval();
            // Ejected endpoints are not judged (Envoy skips them too).
            if !host.is_ejected() {
                samples.push(Sample {
                    address: *address,
                    requests,
                    successes,
                });
            }
        }
        let mut outliers = Vec::new();
        if let Some(config) = &self.config.success_rate {
            outliers.extend(
                success_rate_outliers(&samples, config)
                    .into_iter()
                    .map(|a| (a, EjectionReason::SuccessRate)),
            );
        }
        if let Some(config) = &self.config.failure_percentage {
            outliers.extend(
                failure_percentage_outliers(&samples, config)
                    .into_iter()
                    .map(|a| (a, EjectionReason::FailurePercentage)),
            );
        }
        outliers
            .into_iter()
            .filter_map(|(address, reason)| self.try_eject(address, reason, now))
            .collect()
    }

    /// Ejects `address` unless it already is or the percentage cap forbids it.
    fn try_eject(
        &mut self,
        address: SocketAddr,
        reason: EjectionReason,
        now: Timestamp,
    ) -> Option<OutlierEvent> {
        let total = self.hosts.len() as u64;
        let ejected = self.ejected as u64;
        let allowed = (ejected + 1) * 100 <= u64::from(self.config.max_ejection_percent) * total
            || (self.config.always_eject_one_host && ejected == 0);
        let config = self.config;
        let host = self.host_mut(address)?;
        if host.is_ejected() {
            return None;
        }
        if !allowed {
            self.stats.overflow += 1;
            return None;
        }
        let until = host.eject(now, &config);
        self.ejected += 1;
        self.next_return = Some(self.next_return.map_or(until, |t| t.min(until)));
        self.stats.enforced[reason.index()] += 1;
        Some(OutlierEvent::Ejected {
            address,
            reason,
            until,
        })
    }
}

#[cfg(test)]
#[path = "detector_tests.rs"]
mod tests;
