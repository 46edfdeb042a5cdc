//! Drives the resilience state machines of `mesh_core::resilience` — circuit breaker, retry
//! budget, outlier detector — through arbitrary operation sequences on a manual clock, each
//! checked against a small reference model after every step.
//!
//! Input layout (read with `arbitrary::Unstructured`): the breaker limits, the retry budget and
//! outlier detection configs (configs the validators refuse end the run), then operations until
//! the input runs out.
//!
//! Invariants:
//! - breaker: a permit is granted exactly when fewer than the limit are held (limits may change
//!   while permits are held); `in_use` equals the permits alive and `overflows` the refusals;
//! - retry budget: a retry is granted exactly when the retries counted in the live buckets
//!   (the last 10 tenths of the window) are below `budget% * requests + min_retries`, so no
//!   window ever sees more; `remaining` agrees;
//! - outlier detector: ejected addresses are present endpoints; `ejected_count` agrees with
//!   `ejected()`; an ejection never takes the ejected share above `max_ejection_percent`
//!   (unless it is the one host `always_eject_one_host` allows); an ejection lasts
//!   `base * n` capped at `max(max, base)`; a host is returned by the first `tick` at or after
//!   its time and not before; `next_deadline` is never after a pending return.

#![no_main]

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    time::Duration,
};

use libfuzzer_sys::{
    arbitrary::{Result, Unstructured},
    fuzz_target,
};
use mesh_core::{
    clock::{Clock, ManualClock, Timestamp},
    resilience::{
        CircuitBreaker, FailurePercentageConfig, Limits, Outcome, OutlierConfig, OutlierDetector,
        OutlierEvent, Permit, ResourceKind, RetryBudget, RetryBudgetConfig, SuccessRateConfig,
    },
};

const POOL: u8 = 10;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u);
});

fn address(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 1, 0, i % POOL], 8080))
}

fn small_limit(u: &mut Unstructured<'_>) -> Result<u64> {
    Ok(match u.int_in_range(0..=9u8)? {
        9 => u64::MAX,
        n => u64::from(n),
    })
}

fn limits(u: &mut Unstructured<'_>) -> Result<Limits> {
    Ok(Limits {
        max_connections: small_limit(u)?,
        max_pending_requests: small_limit(u)?,
        max_requests: small_limit(u)?,
        max_retries: small_limit(u)?,
    })
}

fn limit_of(limits: &Limits, kind: ResourceKind) -> u64 {
    match kind {
        ResourceKind::Connection => limits.max_connections,
        ResourceKind::PendingRequest => limits.max_pending_requests,
        ResourceKind::Request => limits.max_requests,
        ResourceKind::Retry => limits.max_retries,
    }
}

fn outlier_config(u: &mut Unstructured<'_>) -> Result<OutlierConfig> {
    let secs = |u: &mut Unstructured<'_>| -> Result<Duration> {
        Ok(Duration::from_millis(u.int_in_range(0..=600_000u64)?))
    };
    Ok(OutlierConfig {
        consecutive_5xx: u.int_in_range(0..=6)?,
        consecutive_gateway_errors: u.int_in_range(0..=6)?,
        consecutive_local_origin_failures: u.int_in_range(0..=6)?,
        split_external_local_origin_errors: u.arbitrary()?,
        interval: secs(u)?,
        base_ejection_time: secs(u)?,
        max_ejection_time: secs(u)?,
        max_ejection_percent: u.int_in_range(0..=110)?,
        always_eject_one_host: u.arbitrary()?,
        success_rate: if u.arbitrary()? {
            Some(SuccessRateConfig {
                minimum_hosts: u.int_in_range(0..=6)?,
                request_volume: u.int_in_range(0..=20)?,
                stdev_factor: u.int_in_range(0..=3000)?,
            })
        } else {
            None
        },
        failure_percentage: if u.arbitrary()? {
            Some(FailurePercentageConfig {
                threshold: u.int_in_range(0..=110)?,
                minimum_hosts: u.int_in_range(0..=6)?,
                request_volume: u.int_in_range(0..=20)?,
            })
        } else {
            None
        },
    })
}

fn outcome(u: &mut Unstructured<'_>) -> Result<Outcome> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => Outcome::Http(*u.choose(&[200, 204, 404, 500, 502, 503, 504, 599, 600, 0])?),
        1 => Outcome::Http(u.arbitrary()?),
        2 => Outcome::LocalOriginFailure,
        _ => Outcome::LocalOriginSuccess,
    })
}

/// The retry budget's reference model: every request and granted retry with its bucket epoch.
struct BudgetModel {
    config: RetryBudgetConfig,
    bucket_nanos: u64,
    events: Vec<(u64, bool)>,
}

impl BudgetModel {
    fn totals(&self, now: Timestamp) -> (u64, u64) {
        let epoch = now.as_nanos() / self.bucket_nanos;
        let live = self.events.iter().filter(|(e, _)| e + 10 > epoch);
        live.fold(
            (0, 0),
            |(q, r), (_, retry)| {
                if *retry { (q, r + 1) } else { (q + 1, r) }
            },
        )
    }

    fn allowed(&self, requests: u64) -> u64 {
        requests * u64::from(self.config.budget_percent) / 100 + u64::from(self.config.min_retries)
    }
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let clock = ManualClock::new();
    let mut limits = limits(u)?;
    let breaker = CircuitBreaker::new(limits);
    let mut permits: Vec<Permit> = Vec::new();
    let mut overflows = [0u64; 4];

    let budget_config = RetryBudgetConfig {
        budget_percent: u.int_in_range(0..=1100)?,
        min_retries: u.int_in_range(0..=12)?,
        window: Duration::from_millis(u.int_in_range(500..=61_000)?),
    };
    let Ok(mut budget) = RetryBudget::new(budget_config) else {
        assert!(budget_config.validate().is_err());
        return Ok(());
    };
    let mut budget_model = BudgetModel {
        config: budget_config,
        bucket_nanos: (budget_config.window.as_nanos() as u64 / 10).max(1),
        events: Vec::new(),
    };

    let config = outlier_config(u)?;
    let Ok(mut detector) = OutlierDetector::new(config, clock.now()) else {
        assert!(config.validate().is_err());
        return Ok(());
    };
    let mut hosts: BTreeSet<SocketAddr> = BTreeSet::new();
    // Ejected hosts and when they are due back.
    let mut ejected: BTreeMap<SocketAddr, Timestamp> = BTreeMap::new();

    while !u.is_empty() {
        let now = clock.now();
        match u.int_in_range(0..=11u8)? {
            0 | 1 => {
                let kind = *u.choose(&ResourceKind::ALL)?;
                let held = permits.iter().filter(|p| p.kind() == kind).count() as u64;
                match breaker.try_acquire(kind) {
                    Ok(permit) => {
                        assert!(held < limit_of(&limits, kind), "{kind:?} beyond its limit");
                        permits.push(permit);
                    }
                    Err(overflow) => {
                        assert!(
                            held >= limit_of(&limits, kind),
                            "{kind:?} refused below limit"
                        );
                        assert_eq!(overflow.limit, limit_of(&limits, kind));
                        overflows[kind as usize] += 1;
                    }
                }
            }
            2 => {
                if !permits.is_empty() {
                    let i = u.choose_index(permits.len())?;
                    drop(permits.swap_remove(i));
                }
            }
            3 => {
                limits = self::limits(u)?;
                breaker.set_limits(limits);
                assert_eq!(breaker.limits(), limits);
            }
            4 => {
                budget.record_request(now);
                budget_model
                    .events
                    .push((now.as_nanos() / budget_model.bucket_nanos, false));
            }
            5 => {
                let (requests, retries) = budget_model.totals(now);
                let allowed = budget_model.allowed(requests);
                assert_eq!(budget.remaining(now), allowed.saturating_sub(retries));
                match budget.try_retry(now) {
                    Ok(()) => {
                        assert!(retries < allowed, "retry granted beyond the budget");
                        let epoch = now.as_nanos() / budget_model.bucket_nanos;
                        budget_model.events.push((epoch, true));
                    }
                    Err(e) => {
                        assert!(retries >= allowed, "retry refused within the budget");
                        assert_eq!((e.requests, e.retries), (requests, retries));
                    }
                }
            }
            6 | 7 => {
                let addr = address(u.arbitrary()?);
                let outcome = outcome(u)?;
                let event = detector.record(addr, outcome, now);
                if let Some(event) = event {
                    assert!(hosts.contains(&addr), "event for unknown {addr}");
                    check_event(&config, &hosts, &mut ejected, event, now);
                }
            }
            8 => {
                let events = detector.tick(now);
                for event in events {
                    check_event(&config, &hosts, &mut ejected, event, now);
                }
                // Everything due has been returned.
                assert!(
                    ejected.values().all(|until| *until > now),
                    "not returned in time"
                );
            }
            9 => {
                let mut set = BTreeSet::new();
                let n = u.int_in_range(0..=POOL)?;
                for _ in 0..n {
                    set.insert(address(u.arbitrary()?));
                }
                let list: Vec<SocketAddr> = set.iter().copied().collect();
                detector.set_endpoints(list);
                ejected.retain(|a, _| set.contains(a));
                hosts = set;
            }
            _ => {
                let millis = u.int_in_range(0..=700_000u64)?;
                clock.advance(Duration::from_millis(millis));
            }
        }

        let stats = breaker.stats();
        for kind in ResourceKind::ALL {
            let held = permits.iter().filter(|p| p.kind() == kind).count() as u64;
            assert_eq!(stats.in_use(kind), held, "{kind:?} in use");
            assert_eq!(stats.overflows(kind), overflows[kind as usize], "{kind:?}");
        }

        let reported: BTreeSet<SocketAddr> = detector.ejected().collect();
        let modelled: BTreeSet<SocketAddr> = ejected.keys().copied().collect();
        assert_eq!(reported, modelled, "ejected set");
        assert_eq!(detector.ejected_count(), modelled.len());
        for addr in (0..POOL).map(address) {
            assert_eq!(detector.is_ejected(addr), ejected.contains_key(&addr));
        }
        if let Some(first) = ejected.values().min() {
            assert!(
                detector.next_deadline() <= *first,
                "deadline after a return"
            );
        }
    }
    drop(permits);
    for kind in ResourceKind::ALL {
        assert_eq!(breaker.stats().in_use(kind), 0);
    }
    Ok(())
}

fn check_event(
    config: &OutlierConfig,
    hosts: &BTreeSet<SocketAddr>,
    ejected: &mut BTreeMap<SocketAddr, Timestamp>,
    event: OutlierEvent,
    now: Timestamp,
) {
    match event {
        OutlierEvent::Ejected { address, until, .. } => {
            assert!(hosts.contains(&address), "ejected unknown {address}");
            assert!(ejected.insert(address, until).is_none(), "ejected twice");
            let count = ejected.len() as u64;
            let within = count * 100 <= u64::from(config.max_ejection_percent) * hosts.len() as u64;
            assert!(
                within || (config.always_eject_one_host && count == 1),
                "{count} of {} ejected, cap {}%",
                hosts.len(),
                config.max_ejection_percent
            );
            let duration = until.saturating_duration_since(now);
            let cap = config.max_ejection_time.max(config.base_ejection_time);
            assert!(duration <= cap, "ejected for {duration:?}, cap {cap:?}");
            assert!(duration >= config.base_ejection_time.min(cap));
        }
        OutlierEvent::Unejected { address } => {
            let until = ejected
                .remove(&address)
                .unwrap_or_else(|| panic!("returned {address}, which was not ejected"));
            assert!(until <= now, "returned before its time");
        }
    }
}
