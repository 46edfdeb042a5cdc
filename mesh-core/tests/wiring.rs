//! The machines wired together the way `mesh-client` will: discovery snapshot -> balancer,
//! responses -> outlier detector -> balancer, retries through budget, breaker and backoff.

use std::{sync::Arc, time::Duration};

use mesh_core::{
    balance::{Balancer, PickContext, Policy, PriorityConfig},
    clock::{Clock, ManualClock},
    model::{Endpoint, Locality, Service, Snapshot},
    resilience::{
        Backoff, BackoffConfig, CircuitBreaker, Limits, Outcome, OutlierConfig, OutlierDetector,
        OutlierEvent, ResourceKind, RetryBudget, RetryBudgetConfig,
    },
    rng::SplitMix64,
};

const SERVICE: &str = "reviews.shop.svc.cluster.local";

fn snapshot() -> Snapshot {
    let zone_a = Locality::new("eu", "eu-a", "");
    let zone_b = Locality::new("eu", "eu-b", "");
    let endpoints: Arc<[Endpoint]> = (1..=6u8)
        .map(|i| {
            let zone = if i <= 4 { &zone_a } else { &zone_b };
            Endpoint::new(format!("10.0.0.{i}:9080").parse().unwrap()).with_locality(zone.clone())
        })
        .collect();
    Snapshot::new(1).with_service(Service::new(SERVICE.parse().unwrap()), endpoints)
}

/// Forwards detector events to the balancer, as the mesh-client task will.
fn apply(lb: &mut dyn Balancer, events: impl IntoIterator<Item = OutlierEvent>) {
    for event in events {
        lb.set_ejected(event.address(), event.is_ejection());
    }
}

#[test]
fn failing_endpoint_is_ejected_avoided_and_returned() {
    let clock = ManualClock::new();
    let snapshot = snapshot();
    let endpoints = snapshot.endpoints(SERVICE).unwrap().clone();
    let priority = PriorityConfig::local_to(Locality::new("eu", "eu-a", ""));
    let mut lb = Policy::LeastRequest
        .build(priority, Arc::new(clock.clone()), 7)
        .unwrap();
    lb.update(endpoints.clone());
    let config = OutlierConfig {
        max_ejection_percent: 50,
        ..OutlierConfig::default()
    };
    let mut detector = OutlierDetector::new(config, clock.now()).unwrap();
    detector.set_endpoints(endpoints.iter().map(|e| e.address));
    let bad = endpoints[0].address;

    // Traffic stays in zone eu-a; the bad endpoint answers 503 until it is ejected.
    let mut served_by_bad_after_ejection = 0;
    for _ in 0..300 {
        let i = lb.pick(&PickContext::new()).unwrap();
        let address = endpoints[i].address;
        // 3 of 4 healthy x 1.4 overprovisioning is still 100%: nothing spills to eu-b.
        assert!(
            i < 4,
            "the local zone is healthy enough to take all traffic"
        );
        if detector.is_ejected(address) {
            served_by_bad_after_ejection += 1;
        }
        lb.on_start(address);
        clock.advance(Duration::from_millis(5));
        let status = if address == bad { 503 } else { 200 };
        lb.on_complete(address, Duration::from_millis(5));
        apply(
            &mut *lb,
            detector.record(address, Outcome::Http(status), clock.now()),
        );
        if clock.now() >= detector.next_deadline() {
            apply(&mut *lb, detector.tick(clock.now()));
        }
    }
    assert!(detector.is_ejected(bad));
    assert_eq!(served_by_bad_after_ejection, 0);

    // After the base ejection time the endpoint is back.
    clock.advance(Duration::from_secs(30));
    apply(&mut *lb, detector.tick(clock.now()));
    assert!(!detector.is_ejected(bad));
    let picks: Vec<usize> = (0..300)
        .filter_map(|_| lb.pick(&PickContext::new()))
        .collect();
    assert!(picks.contains(&0));
}

#[test]
fn retries_go_through_breaker_budget_and_backoff() {
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::new(Limits {
        max_retries: 2,
        ..Limits::default()
    });
    let mut budget = RetryBudget::new(RetryBudgetConfig {
        budget_percent: 20,
        min_retries: 3,
        ..RetryBudgetConfig::default()
    })
    .unwrap();
    let mut attempts = 0u32;
    let mut requests = 0u32;
    // An outage: every attempt fails; each request would retry up to 5 times.
    for _ in 0..50 {
        requests += 1;
        attempts += 1;
        budget.record_request(clock.now());
        let mut backoff = Backoff::new(BackoffConfig::default(), SplitMix64::new(1)).unwrap();
        for _ in 0..5 {
            let Ok(_permit) = breaker.try_acquire(ResourceKind::Retry) else {
                break;
            };
            if budget.try_retry(clock.now()).is_err() {
                break;
            }
            clock.advance(backoff.next_delay());
            attempts += 1;
        }
    }
    // 50 requests, 20% budget + 3: at most 13 retries instead of 250.
    assert_eq!(requests, 50);
    assert!(attempts <= 50 + 13, "{attempts}");
    assert!(attempts > 50, "some retries happen");
}
