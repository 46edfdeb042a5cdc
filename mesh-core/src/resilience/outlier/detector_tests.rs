use std::time::Duration;

use super::*;
use crate::resilience::outlier::{FailurePercentageConfig, SuccessRateConfig};

fn addr(i: u8) -> SocketAddr {
    format!("10.0.0.{i}:80").parse().unwrap()
}

fn secs(s: u64) -> Timestamp {
    Timestamp::from_nanos(s * 1_000_000_000)
}

fn detector(config: OutlierConfig, hosts: u8) -> OutlierDetector {
    let mut d = OutlierDetector::new(config, Timestamp::ZERO).unwrap();
    d.set_endpoints((1..=hosts).map(addr));
    d
}

fn permissive() -> OutlierConfig {
    OutlierConfig {
        max_ejection_percent: 100,
        ..OutlierConfig::default()
    }
}

fn fail(d: &mut OutlierDetector, host: u8, times: u32, now: Timestamp) -> Vec<OutlierEvent> {
    (0..times)
        .filter_map(|_| d.record(addr(host), Outcome::Http(500), now))
        .collect()
}

#[test]
fn consecutive_5xx_ejects_and_time_returns_it() {
    let mut d = detector(permissive(), 4);
    assert!(fail(&mut d, 1, 4, secs(0)).is_empty());
    // A success breaks the run.
    assert!(d.record(addr(1), Outcome::Http(200), secs(0)).is_none());
    assert!(fail(&mut d, 1, 4, secs(0)).is_empty());
    let events = fail(&mut d, 1, 1, secs(1));
    assert_eq!(
        events,
        vec![OutlierEvent::Ejected {
            address: addr(1),
            reason: EjectionReason::Consecutive5xx,
            until: secs(31),
        }]
    );
    assert!(events[0].is_ejection());
    assert!(d.is_ejected(addr(1)));
    assert_eq!(d.ejected().collect::<Vec<_>>(), vec![addr(1)]);
    assert_eq!(d.next_deadline(), secs(10), "the interval ends first");
    assert!(d.tick(secs(10)).is_empty());
    assert_eq!(d.next_deadline(), secs(20));
    assert!(
        d.tick(secs(30)).is_empty(),
        "30 s from the ejection is at 31 s"
    );
    assert_eq!(d.next_deadline(), secs(31));
    let events = d.tick(secs(31));
    assert_eq!(events, vec![OutlierEvent::Unejected { address: addr(1) }]);
    assert_eq!(events[0].address(), addr(1));
    assert!(!d.is_ejected(addr(1)));
    assert_eq!(d.stats().enforced(EjectionReason::Consecutive5xx), 1);
}

#[test]
fn ejection_time_grows_and_decays() {
    let mut d = detector(permissive(), 2);
    let first = fail(&mut d, 1, 5, secs(0));
    assert!(matches!(first[..], [OutlierEvent::Ejected { until, .. }] if until == secs(30)));
    d.tick(secs(30));
    // Ejected again right away: twice the base time.
    let second = fail(&mut d, 1, 5, secs(30));
    assert!(matches!(second[..], [OutlierEvent::Ejected { until, .. }] if until == secs(90)));
    d.tick(secs(90));
    // Two healthy intervals bring the multiplier back to zero: next ejection is 30 s again.
    d.tick(secs(100));
    d.tick(secs(110));
    let third = fail(&mut d, 1, 5, secs(111));
    assert!(matches!(third[..], [OutlierEvent::Ejected { until, .. }] if until == secs(141)));
}

#[test]
fn errors_while_ejected_do_not_re_eject() {
    let mut d = detector(permissive(), 2);
    assert_eq!(fail(&mut d, 1, 5, secs(0)).len(), 1);
    assert!(fail(&mut d, 1, 20, secs(1)).is_empty());
    assert_eq!(d.stats().enforced(EjectionReason::Consecutive5xx), 1);
}

#[test]
fn max_ejection_percent_caps_ejections() {
    let config = OutlierConfig {
        max_ejection_percent: 20,
        ..OutlierConfig::default()
    };
    let mut d = detector(config, 10);
    for host in 1..=5 {
        fail(&mut d, host, 5, secs(0));
    }
    assert_eq!(d.ejected_count(), 2);
    assert_eq!(d.stats().overflow(), 3);
    // Small services with the default 10% eject nothing, unless always_eject_one_host.
    let mut d = detector(OutlierConfig::default(), 3);
    assert!(fail(&mut d, 1, 5, secs(0)).is_empty());
    let one = OutlierConfig {
        always_eject_one_host: true,
        ..OutlierConfig::default()
    };
    let mut d = detector(one, 3);
    assert_eq!(fail(&mut d, 1, 5, secs(0)).len(), 1);
    assert!(fail(&mut d, 2, 5, secs(0)).is_empty());
}

#[test]
fn gateway_and_local_origin_detectors() {
    let config = OutlierConfig {
        consecutive_gateway_errors: 2,
        consecutive_5xx: 0,
        ..permissive()
    };
    let mut d = detector(config, 2);
    assert!(d.record(addr(1), Outcome::Http(503), secs(0)).is_none());
    let e = d.record(addr(1), Outcome::LocalOriginFailure, secs(0));
    assert!(matches!(
        e,
        Some(OutlierEvent::Ejected {
            reason: EjectionReason::ConsecutiveGatewayErrors,
            ..
        })
    ));
    let split = OutlierConfig {
        split_external_local_origin_errors: true,
        consecutive_local_origin_failures: 3,
        ..permissive()
    };
    let mut d = detector(split, 2);
    for _ in 0..2 {
        assert!(
            d.record(addr(2), Outcome::LocalOriginFailure, secs(0))
                .is_none()
        );
    }
    assert!(matches!(
        d.record(addr(2), Outcome::LocalOriginFailure, secs(0)),
        Some(OutlierEvent::Ejected {
            reason: EjectionReason::ConsecutiveLocalOriginFailures,
            ..
        })
    ));
}

#[test]
fn success_rate_ejects_at_the_interval() {
    let config = OutlierConfig {
        success_rate: Some(SuccessRateConfig::default()),
        consecutive_5xx: 0,
        ..permissive()
    };
    let mut d = detector(config, 5);
    for host in 1..=5 {
        for i in 0..100 {
            let status = if host == 3 && i % 2 == 0 { 500 } else { 200 };
            d.record(addr(host), Outcome::Http(status), secs(1));
        }
    }
    assert!(
        d.tick(secs(9)).is_empty(),
        "not judged before the interval ends"
    );
    let events = d.tick(secs(10));
    assert_eq!(events.len(), 1);
    assert!(matches!(
        events[0],
        OutlierEvent::Ejected { reason: EjectionReason::SuccessRate, address, .. } if address == addr(3)
    ));
    // The next interval starts empty: no volume, no judgement.
    assert!(d.tick(secs(20)).is_empty());
}

#[test]
fn failure_percentage_ejects_at_the_interval() {
    let config = OutlierConfig {
        failure_percentage: Some(FailurePercentageConfig {
            minimum_hosts: 1,
            ..FailurePercentageConfig::default()
        }),
        consecutive_5xx: 0,
        ..permissive()
    };
    let mut d = detector(config, 2);
    for i in 0..50 {
        let status = if i < 45 { 503 } else { 200 };
        d.record(addr(1), Outcome::Http(status), secs(1));
        d.record(addr(2), Outcome::Http(200), secs(1));
    }
    let events = d.tick(secs(10));
    assert!(matches!(
        events[..],
        [OutlierEvent::Ejected { reason: EjectionReason::FailurePercentage, address, .. }] if address == addr(1)
    ));
    assert_eq!(d.stats().enforced(EjectionReason::FailurePercentage), 1);
}

#[test]
fn endpoint_set_changes() {
    let mut d = detector(permissive(), 3);
    fail(&mut d, 1, 5, secs(0));
    fail(&mut d, 2, 3, secs(0));
    d.set_endpoints([addr(2), addr(3), addr(4)]);
    assert!(!d.is_ejected(addr(1)), "removed endpoints are forgotten");
    // Host 2 kept its run of three errors.
    assert_eq!(fail(&mut d, 2, 2, secs(0)).len(), 1);
    assert!(d.record(addr(9), Outcome::Http(500), secs(0)).is_none());
    assert_eq!(d.config().max_ejection_percent, 100);
}

#[test]
fn invalid_config_is_refused() {
    let config = OutlierConfig {
        base_ejection_time: Duration::ZERO,
        ..OutlierConfig::default()
    };
    assert!(OutlierDetector::new(config, Timestamp::ZERO).is_err());
}

/// The deadline and ejected count kept up to date agree with the ejections the events report,
/// through failures, ticks at arbitrary times and endpoint set changes.
#[test]
fn deadline_and_count_follow_the_events() {
    use crate::rng::{Rng, SplitMix64};
    use std::collections::BTreeMap;

    let config = OutlierConfig {
        max_ejection_percent: 60,
        consecutive_5xx: 2,
        ..OutlierConfig::default()
    };
    let mut d = detector(config, 8);
    let mut live: Vec<u8> = (1..=8).collect();
    let mut ejected: BTreeMap<SocketAddr, Timestamp> = BTreeMap::new();
    let mut now = Timestamp::ZERO;
    let mut interval_end = now + config.interval;
    let mut rng = SplitMix64::new(99);
    for step in 0..5000 {
        match rng.below(10) {
            0..=5 => {
                let host = live[rng.below(live.len() as u64) as usize];
                let status = if rng.below(3) == 0 { 200 } else { 503 };
                if let Some(OutlierEvent::Ejected { address, until, .. }) =
                    d.record(addr(host), Outcome::Http(status), now)
                {
                    ejected.insert(address, until);
                }
            }
            6..=8 => {
                now = now + Duration::from_millis(rng.below(8000));
                if now >= d.next_deadline() {
                    if now >= interval_end {
                        interval_end = now + config.interval;
                    }
                    for event in d.tick(now) {
                        match event {
                            OutlierEvent::Ejected { address, until, .. } => {
                                ejected.insert(address, until);
                            }
                            OutlierEvent::Unejected { address } => {
                                ejected.remove(&address);
                            }
                        }
                    }
                }
            }
            _ => {
                live = (1..=12u8).filter(|_| rng.below(3) != 0).collect();
                if live.is_empty() {
                    live.push(1);
                }
                d.set_endpoints(live.iter().map(|&h| addr(h)));
                ejected.retain(|a, _| live.iter().any(|&h| addr(h) == *a));
            }
        }
        assert_eq!(d.ejected_count(), ejected.len(), "step {step}");
        assert_eq!(
            d.ejected().collect::<Vec<_>>(),
            ejected.keys().copied().collect::<Vec<_>>()
        );
        let earliest = ejected.values().copied().fold(interval_end, Timestamp::min);
        assert_eq!(d.next_deadline(), earliest, "step {step}");
    }
    assert!(d.stats().enforced(EjectionReason::Consecutive5xx) > 50);
    assert!(d.stats().overflow() > 0, "the cap was reached too");
}
