//! The sans-I/O state machines on the request path: one load-balancer pick per algorithm at
//! 10, 1,000 and 10,000 endpoints, and the per-request bookkeeping of retry budget, circuit
//! breaker and outlier detector together.
//!
//! Baselines in the same groups: `baseline/uniform_index` (one random number reduced to an
//! index: the least any picker can do) and `baseline/clock_read` (one read of the system
//! clock, which every request pays anyway). Goals: P2C (`least_request`) <= 100 ns at 1,000
//! endpoints; bookkeeping <= 60 ns per request (`budget+breaker+outlier`: the state machines
//! given the request's timestamp; `...+clock_read` adds a clock read of its own).
//!
//! `lb_pick` completes each request right after starting it. `lb_in_flight` keeps
//! [`IN_FLIGHT`] requests outstanding and completes the oldest on each pick, as a busy client
//! does: completions name endpoints picked long before, and P2C sees uneven in-flight counts.
//! `request_bookkeeping` also has one row per state machine (`parts/...`) and a row that adds the
//! outlier detector's deadline check, which a client makes on every request to know when to
//! call `tick`.
//!
//! `cargo bench --bench balance -- --quick` (filter with a regular expression after `--`).

use std::{hint::black_box, net::SocketAddr, sync::Arc, time::Duration};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mesh_core::{
    balance::{HashKey, MaglevConfig, PickContext, Policy, PriorityConfig, RingHashConfig},
    clock::{Clock, SystemClock, Timestamp},
    model::Endpoint,
    resilience::{
        CircuitBreaker, Limits, Outcome, OutlierConfig, OutlierDetector, ResourceKind, RetryBudget,
        RetryBudgetConfig,
    },
    rng::{Rng, SplitMix64},
};

const SIZES: [usize; 3] = [10, 1_000, 10_000];

/// Requests outstanding in `lb_in_flight`.
const IN_FLIGHT: usize = 32;

fn address(i: usize) -> SocketAddr {
    let i = u32::try_from(i).unwrap_or(u32::MAX);
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 8080))
}

fn endpoints(n: usize, weighted: bool) -> Arc<[Endpoint]> {
    (0..n)
        .map(|i| {
            let endpoint = Endpoint::new(address(i));
            if weighted {
                endpoint.with_weight(1 + (i % 5) as u32)
            } else {
                endpoint
            }
        })
        .collect()
}

fn policies() -> Vec<(&'static str, Policy, bool)> {
    vec![
        ("round_robin", Policy::RoundRobin, false),
        ("weighted_round_robin", Policy::RoundRobin, true),
        ("least_request", Policy::LeastRequest, false),
        ("random", Policy::Random, false),
        (
            "ring_hash",
            Policy::RingHash(RingHashConfig::default()),
            false,
        ),
        ("maglev", Policy::Maglev(MaglevConfig::default()), false),
    ]
}

fn pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("lb_pick");
    for n in SIZES {
        let mut rng = SplitMix64::new(7);
        group.bench_function(BenchmarkId::new("baseline/uniform_index", n), |b| {
            b.iter(|| black_box(rng.below(n as u64)));
        });
        for (name, policy, weighted) in policies() {
            let mut balancer = policy
                .build(PriorityConfig::default(), Arc::new(SystemClock), 42)
                .expect("valid policy");
            balancer.update(endpoints(n, weighted));
            let hashed = policy.uses_hash_key();
            let mut key = 0u64;
            // A pick as a request makes it: the balancer is told when the request starts and
            // ends (P2C's load and latency estimates depend on it).
            group.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter(|| {
                    key = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    let ctx = if hashed {
                        PickContext::with_hash(HashKey::from_hash(key))
                    } else {
                        PickContext::new()
                    };
                    let i = balancer.pick(&ctx).expect("healthy endpoints");
                    let addr = balancer.endpoints()[i].address;
                    balancer.on_start(addr);
                    balancer.on_complete(addr, Duration::from_micros(500));
                    black_box(i)
                });
            });
        }
    }
    group.finish();
}

fn in_flight(c: &mut Criterion) {
    let mut group = c.benchmark_group("lb_in_flight");
    for n in SIZES {
        for (name, policy, weighted) in policies() {
            let mut balancer = policy
                .build(PriorityConfig::default(), Arc::new(SystemClock), 42)
                .expect("valid policy");
            balancer.update(endpoints(n, weighted));
            let hashed = policy.uses_hash_key();
            let mut key = 0u64;
            // A ring of outstanding requests: each iteration starts one and completes the oldest.
            let mut outstanding: Vec<SocketAddr> = Vec::with_capacity(IN_FLIGHT);
            for _ in 0..IN_FLIGHT {
                let i = balancer
                    .pick(&PickContext::new())
                    .expect("healthy endpoints");
                let addr = balancer.endpoints()[i].address;
                balancer.on_start(addr);
                outstanding.push(addr);
            }
            let mut oldest = 0;
            let mut latency = 0u64;
            group.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter(|| {
                    key = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    let ctx = if hashed {
                        PickContext::with_hash(HashKey::from_hash(key))
                    } else {
                        PickContext::new()
                    };
                    let i = balancer.pick(&ctx).expect("healthy endpoints");
                    let addr = balancer.endpoints()[i].address;
                    balancer.on_start(addr);
                    let done = std::mem::replace(&mut outstanding[oldest], addr);
                    oldest = (oldest + 1) % IN_FLIGHT;
                    // Latencies vary between 200 us and ~1.8 ms.
                    latency = (latency + 397) % 1_600;
                    balancer.on_complete(done, Duration::from_micros(200 + latency));
                    black_box(i)
                });
            });
        }
    }
    group.finish();
}

fn bookkeeping(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_bookkeeping");
    group.bench_function("baseline/clock_read", |b| {
        b.iter(|| black_box(SystemClock.now()));
    });
    let mut budget = RetryBudget::new(RetryBudgetConfig::default()).expect("valid budget");
    let breaker = CircuitBreaker::new(Limits::default());
    let now = SystemClock.now();
    let mut detector = OutlierDetector::new(OutlierConfig::default(), now).expect("valid config");
    let hosts: Vec<SocketAddr> = (0..100).map(address).collect();
    detector.set_endpoints(hosts.iter().copied());
    let mut i = 0usize;
    // Everything a request does outside the network, given the timestamp the request already
    // read for its deadline and metrics (the client passes that reading on, see
    // `SystemClock::timestamp`): count it in the retry budget, hold a request permit, record
    // its outcome for outlier detection. Time advances 50 us per request.
    let mut request_time = now;
    // One request's bookkeeping at `now`; with `deadline`, also the check a client makes to
    // know when the detector's timers are due.
    let mut one_request = |now: Timestamp, deadline: bool| {
        budget.record_request(now);
        let permit = breaker
            .try_acquire(ResourceKind::Request)
            .expect("unlimited");
        i = if i + 1 == hosts.len() { 0 } else { i + 1 };
        let event = detector.record(hosts[i], Outcome::Http(200), now);
        if deadline && now >= detector.next_deadline() {
            black_box(detector.tick(now));
        }
        drop(permit);
        // As a client does: an ejection goes on to the balancer.
        if let Some(event) = event {
            black_box(event);
        }
    };
    group.bench_function("budget+breaker+outlier", |b| {
        b.iter(|| {
            request_time = request_time + Duration::from_micros(50);
            one_request(black_box(request_time), false);
        });
    });
    // The same with a clock read of its own, as if no timestamp were at hand.
    group.bench_function("budget+breaker+outlier+clock_read", |b| {
        b.iter(|| one_request(SystemClock.now(), false));
    });
    // The same, plus the deadline check.
    group.bench_function("budget+breaker+outlier+deadline", |b| {
        b.iter(|| one_request(SystemClock.now(), true));
    });
    // Each state machine alone, at a fixed time (no clock read).
    let now = SystemClock.now();
    group.bench_function("parts/retry_budget", |b| {
        b.iter(|| budget.record_request(black_box(now)));
    });
    group.bench_function("parts/circuit_breaker", |b| {
        b.iter(|| {
            let permit = breaker
                .try_acquire(ResourceKind::Request)
                .expect("unlimited");
            drop(black_box(permit));
        });
    });
    group.bench_function("parts/outlier_record", |b| {
        b.iter(|| {
            i = if i + 1 == hosts.len() { 0 } else { i + 1 };
            if let Some(event) = detector.record(hosts[i], Outcome::Http(200), now) {
                black_box(event);
            }
        });
    });
    group.finish();
}

criterion_group!(benches, pick, in_flight, bookkeeping);
criterion_main!(benches);
