//! Property tests for the resilience state machines, over the public API only.

use std::{net::SocketAddr, time::Duration};

use mesh_core::{
    clock::Timestamp,
    resilience::{
        Backoff, BackoffConfig, CircuitBreaker, Limits, Outcome, OutlierConfig, OutlierDetector,
        OutlierEvent, ResourceKind, RetryBudget, RetryBudgetConfig,
    },
    rng::SplitMix64,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum BreakerOp {
    Acquire(usize),
    Release(prop::sample::Index),
    SetLimit(usize, u64),
}

fn breaker_op() -> impl Strategy<Value = BreakerOp> {
    prop_oneof![
        4 => (0usize..4).prop_map(BreakerOp::Acquire),
        3 => any::<prop::sample::Index>().prop_map(BreakerOp::Release),
        1 => (0usize..4, 0u64..6).prop_map(|(k, l)| BreakerOp::SetLimit(k, l)),
    ]
}

fn with_limit(limits: Limits, kind: ResourceKind, value: u64) -> Limits {
    let mut l = limits;
    match kind {
        ResourceKind::Connection => l.max_connections = value,
        ResourceKind::PendingRequest => l.max_pending_requests = value,
        ResourceKind::Request => l.max_requests = value,
        ResourceKind::Retry => l.max_retries = value,
    }
    l
}

#[derive(Clone, Debug)]
enum BudgetOp {
    Request,
    Retry,
    Advance(u64),
}

fn budget_op(max_advance_ms: u64) -> impl Strategy<Value = BudgetOp> {
    prop_oneof![
        3 => Just(BudgetOp::Request),
        3 => Just(BudgetOp::Retry),
        1 => (0..=max_advance_ms).prop_map(BudgetOp::Advance),
    ]
}

proptest! {
    /// The breaker admits a permit only below the limit in force, refuses only at or above it,
    /// counts every refusal, and its gauges match the permits actually held.
    #[test]
    fn breaker_never_exceeds_limits(
        initial in prop::array::uniform4(0u64..5),
        ops in prop::collection::vec(breaker_op(), 0..200),
    ) {
        let mut limits = Limits::default();
        for (kind, value) in ResourceKind::ALL.into_iter().zip(initial) {
            limits = with_limit(limits, kind, value);
        }
        let breaker = CircuitBreaker::new(limits);
        let mut held = Vec::new();
        let mut refused = [0u64; 4];
        let count = |held: &Vec<mesh_core::resilience::Permit>, kind| held.iter().filter(|p| p.kind() == kind).count() as u64;
        for op in ops {
            match op {
                BreakerOp::Acquire(k) => {
                    let kind = ResourceKind::ALL[k];
                    let before = count(&held, kind);
                    let limit = breaker.limits().get(kind);
                    match breaker.try_acquire(kind) {
                        Ok(permit) => {
                            prop_assert!(before < limit, "{kind:?}: admitted at {before} with limit {limit}");
                            held.push(permit);
                        }
                        Err(overflow) => {
                            prop_assert!(before >= limit);
                            prop_assert_eq!(overflow.kind, kind);
                            prop_assert_eq!(overflow.limit, limit);
                            refused[k] += 1;
                        }
                    }
                }
                BreakerOp::Release(i) => {
                    if !held.is_empty() {
                        drop(held.swap_remove(i.index(held.len())));
                    }
                }
                BreakerOp::SetLimit(k, value) => {
                    breaker.set_limits(with_limit(breaker.limits(), ResourceKind::ALL[k], value));
                }
            }
            let stats = breaker.stats();
            for (k, kind) in ResourceKind::ALL.into_iter().enumerate() {
                prop_assert_eq!(stats.in_use(kind), count(&held, kind));
                prop_assert_eq!(stats.overflows(kind), refused[k]);
            }
        }
        drop(held);
        prop_assert!(ResourceKind::ALL.iter().all(|&k| breaker.stats().in_use(k) == 0));
    }

    /// During an outage inside one window, total attempts never exceed
    /// `(1 + budget) * requests + min_retries`.
    #[test]
    fn retry_budget_bounds_total_attempts(
        percent in 0u32..=200,
        min_retries in 0u32..20,
        ops in prop::collection::vec(budget_op(100), 0..300),
    ) {
        let config = RetryBudgetConfig { budget_percent: percent, min_retries, window: Duration::from_secs(10) };
        let mut budget = RetryBudget::new(config).unwrap();
        let mut now = Timestamp::from_nanos(123_456_789);
        let (mut requests, mut retries) = (0u64, 0u64);
        for op in ops {
            match op {
                BudgetOp::Request => {
                    budget.record_request(now);
                    requests += 1;
                }
                BudgetOp::Retry => {
                    if budget.try_retry(now).is_ok() {
                        retries += 1;
                    }
                }
                // At most 300 * 100 ms = 30 s in total, but see the window check below.
                BudgetOp::Advance(ms) => now = now + Duration::from_millis(ms),
            }
            let attempts = u128::from(requests + retries);
            let bound = u128::from(requests) * u128::from(100 + percent) + 100 * u128::from(min_retries);
            // Only meaningful while everything is inside the 9/10 of a window the budget always
            // remembers; past that, the windowed property below covers it.
            if now.saturating_duration_since(Timestamp::from_nanos(123_456_789)) < Duration::from_secs(9) {
                prop_assert!(attempts * 100 <= bound, "{attempts} attempts for {requests} requests");
            }
        }
    }

    /// At any time, retries granted over the last 9/10 of a window never exceed the budget of
    /// the requests over the last full window; and a refusal means the budget really is used up.
    #[test]
    fn retry_budget_holds_over_sliding_windows(
        percent in 0u32..=100,
        min_retries in 0u32..10,
        ops in prop::collection::vec(budget_op(3_000), 0..300),
    ) {
        let window = Duration::from_secs(10);
        let config = RetryBudgetConfig { budget_percent: percent, min_retries, window };
        let mut budget = RetryBudget::new(config).unwrap();
        let mut now = Timestamp::ZERO;
        let mut requests: Vec<Timestamp> = Vec::new();
        let mut retries: Vec<Timestamp> = Vec::new();
        let in_last = |events: &[Timestamp], now: Timestamp, span: Duration| {
            events.iter().filter(|&&t| now.saturating_duration_since(t) < span).count() as u64
        };
        let allowed = |requests: u64| requests * u64::from(percent) / 100 + u64::from(min_retries);
        for op in ops {
            match op {
                BudgetOp::Request => {
                    budget.record_request(now);
                    requests.push(now);
                }
                BudgetOp::Retry => match budget.try_retry(now) {
                    Ok(()) => {
                        retries.push(now);
                        let recent = in_last(&retries, now, window * 9 / 10);
                        prop_assert!(recent <= allowed(in_last(&requests, now, window)));
                    }
                    Err(_) => {
                        // Refused only when the retries of the last full window already
                        // use the budget of the requests of the last 9/10 window.
                        let used = in_last(&retries, now, window);
                        prop_assert!(used >= allowed(in_last(&requests, now, window * 9 / 10)));
                    }
                },
                BudgetOp::Advance(ms) => now = now + Duration::from_millis(ms),
            }
        }
    }

    /// Every delay is within its ceiling, and ceilings grow to the cap and stay there.
    #[test]
    fn backoff_delays_stay_under_ceilings(base_ms in 1u64..100, factor in 1u64..50, seed in any::<u64>()) {
        let config = BackoffConfig { base: Duration::from_millis(base_ms), max: Duration::from_millis(base_ms * factor) };
        let mut backoff = Backoff::new(config, SplitMix64::new(seed)).unwrap();
        let mut previous = Duration::ZERO;
        for attempt in 0..40 {
            let ceiling = config.ceiling(attempt);
            prop_assert!(ceiling >= previous && ceiling <= config.max);
            prop_assert!(backoff.next_delay() <= ceiling);
            previous = ceiling;
        }
        prop_assert_eq!(previous, config.max);
    }

    /// Under any outcomes and ticks: never more than max_ejection_percent of endpoints are
    /// ejected (one more with always_eject_one_host), ejections end on the first tick after
    /// their time, and events match `is_ejected`.
    #[test]
    fn outlier_ejections_are_capped_and_end(
        hosts in 1u8..12,
        max_percent in 0u32..=100,
        always_one in any::<bool>(),
        ops in prop::collection::vec((0u8..12, prop_oneof![Just(200u16), Just(500), Just(503), Just(0)], 0u64..4_000), 0..400),
    ) {
        let config = OutlierConfig {
            consecutive_5xx: 2,
            consecutive_gateway_errors: 2,
            max_ejection_percent: max_percent,
            always_eject_one_host: always_one,
            base_ejection_time: Duration::from_secs(3),
            max_ejection_time: Duration::from_secs(10),
            interval: Duration::from_secs(1),
            ..OutlierConfig::default()
        };
        let addr = |i: u8| -> SocketAddr { format!("10.0.0.{i}:80").parse().unwrap() };
        let mut detector = OutlierDetector::new(config, Timestamp::ZERO).unwrap();
        detector.set_endpoints((0..hosts).map(addr));
        let cap = (u64::from(max_percent) * u64::from(hosts) / 100).max(u64::from(always_one)) as usize;
        let mut now = Timestamp::ZERO;
        let mut until = std::collections::BTreeMap::new();
        for (host, status, advance_ms) in ops {
            let host = host % hosts;
            let events = if status == 0 {
                now = now + Duration::from_millis(advance_ms);
                detector.tick(now)
            } else {
                detector.record(addr(host), Outcome::Http(status), now).into_iter().collect()
            };
            for event in events {
                match event {
                    OutlierEvent::Ejected { address, until: end, .. } => {
                        prop_assert!(until.insert(address, end).is_none(), "ejected twice");
                        let length = end.saturating_duration_since(now);
                        prop_assert!(length >= Duration::from_secs(3) && length <= Duration::from_secs(10));
                    }
                    OutlierEvent::Unejected { address } => {
                        let end = until.remove(&address);
                        prop_assert!(end.is_some_and(|e| e <= now), "unejected early");
                    }
                }
            }
            prop_assert!(detector.ejected_count() <= cap, "{} ejected, cap {cap}", detector.ejected_count());
            for i in 0..hosts {
                prop_assert_eq!(detector.is_ejected(addr(i)), until.contains_key(&addr(i)));
            }
            if status == 0 {
                prop_assert!(until.values().all(|&e| e > now), "an ejection outlived its time");
                prop_assert!(detector.next_deadline() > now);
            }
        }
    }
}
