//! Envoy's `previous_hosts` retry host predicate (`Balancer::pick_avoiding`): a retry avoids
//! the endpoints earlier attempts went to while the pick has others, for every policy, and
//! stays within the locality level the pick chose. Balancers are built as mesh-client builds
//! them (`Policy::build`) with an injected manual clock and fixed seeds.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use mesh_core::{
    balance::{
        Balancer, HOST_SELECTION_ATTEMPTS, HashKey, MaglevConfig, PickContext, Policy,
        PriorityConfig, RingHashConfig,
    },
    clock::ManualClock,
    model::{Endpoint, Health, Locality},
};

fn addr(i: u8) -> SocketAddr {
    format!("10.0.0.{i}:80").parse().unwrap()
}

fn endpoints(n: u8) -> Arc<[Endpoint]> {
    (1..=n).map(|i| Endpoint::new(addr(i))).collect()
}

fn policies() -> Vec<Policy> {
    vec![
        Policy::RoundRobin,
        Policy::LeastRequest,
        Policy::Random,
        Policy::RingHash(RingHashConfig::default()),
        Policy::Maglev(MaglevConfig::default()),
    ]
}

fn build(policy: Policy, priority: PriorityConfig, seed: u64) -> Box<dyn Balancer + Send> {
    policy
        .build(priority, Arc::new(ManualClock::new()), seed)
        .unwrap()
}

fn picked(
    lb: &mut Box<dyn Balancer + Send>,
    ctx: &PickContext,
    tried: &[SocketAddr],
) -> SocketAddr {
    let index = lb.pick_avoiding(ctx, tried).expect("an endpoint");
    lb.endpoints()[index].address
}

#[test]
fn retries_avoid_tried_endpoints_with_every_policy() {
    for policy in policies() {
        for seed in 0..50 {
            let mut lb = build(policy, PriorityConfig::default(), seed);
            lb.update(endpoints(3));
            let ctx = PickContext::new();
            // The first attempt goes anywhere; the retry never to the same endpoint.
            let first = picked(&mut lb, &ctx, &[]);
            let second = picked(&mut lb, &ctx, &[first]);
            assert_ne!(first, second, "{policy:?} seed {seed}");
            let third = picked(&mut lb, &ctx, &[first, second]);
            assert!(
                third != first && third != second,
                "{policy:?} seed {seed}: {third}"
            );
            // Every endpoint tried: any of them may serve the next retry.
            assert!(lb.pick_avoiding(&ctx, &[first, second, third]).is_some());
        }
    }
}

#[test]
fn hash_keys_move_on_to_the_next_candidate_deterministically() {
    for policy in [
        Policy::RingHash(RingHashConfig::default()),
        Policy::Maglev(MaglevConfig::default()),
    ] {
        let mut lb = build(policy, PriorityConfig::default(), 7);
        lb.update(endpoints(4));
        for key in 0..40u64 {
            let ctx = PickContext::with_hash(HashKey::from_hash(key));
            let home = picked(&mut lb, &ctx, &[]);
            let retry = picked(&mut lb, &ctx, &[home]);
            assert_ne!(home, retry, "{policy:?} key {key}");
            // The same key retries to the same place, and its first attempts stay at home.
            assert_eq!(picked(&mut lb, &ctx, &[home]), retry);
            assert_eq!(picked(&mut lb, &ctx, &[]), home);
            // All tried: the key's own endpoint.
            let all: Vec<SocketAddr> = (1..=4).map(addr).collect();
            assert_eq!(picked(&mut lb, &ctx, &all), home);
        }
    }
}

#[test]
fn latency_aware_picks_avoid_tried_endpoints_as_time_passes() {
    let clock = Arc::new(ManualClock::new());
    let mut lb = Policy::LeastRequest
        .build(PriorityConfig::default(), clock.clone(), 3)
        .unwrap();
    lb.update(endpoints(2));
    // 10.0.0.1 is fast and so preferred; a retry after it failed still goes to 10.0.0.2.
    for _ in 0..20 {
        lb.on_start(addr(1));
        clock.advance(Duration::from_millis(1));
        lb.on_complete(addr(1), Duration::from_millis(1));
        lb.on_start(addr(2));
        clock.advance(Duration::from_millis(1));
        lb.on_complete(addr(2), Duration::from_millis(200));
    }
    let ctx = PickContext::new();
    assert_eq!(picked(&mut lb, &ctx, &[addr(1)]), addr(2));
    assert_eq!(picked(&mut lb, &ctx, &[addr(2)]), addr(1));
}

#[test]
fn only_usable_endpoints_are_offered_instead() {
    for policy in policies() {
        let mut lb = build(policy, PriorityConfig::default(), 11);
        let set: Arc<[Endpoint]> = vec![
            Endpoint::new(addr(1)),
            Endpoint::new(addr(2)).with_health(Health::Draining),
            Endpoint::new(addr(3)),
            Endpoint::new(addr(4)),
        ]
        .into();
        lb.update(set);
        lb.set_ejected(addr(4), true);
        let ctx = PickContext::with_hash(HashKey::from_hash(5));
        // 1 tried, 2 draining, 4 ejected: the retry goes to 3.
        for _ in 0..10 {
            assert_eq!(picked(&mut lb, &ctx, &[addr(1)]), addr(3), "{policy:?}");
            assert_eq!(picked(&mut lb, &ctx, &[addr(3)]), addr(1), "{policy:?}");
        }
        // Both usable endpoints tried: one of them again, never a draining or ejected one.
        let again = picked(&mut lb, &ctx, &[addr(1), addr(3)]);
        assert!(again == addr(1) || again == addr(3), "{policy:?}: {again}");
    }
}

#[test]
fn retries_stay_in_the_locality_level_unless_told_to_leave() {
    let here = Locality::new("us-east", "a", "");
    let set: Arc<[Endpoint]> = vec![
        Endpoint::new(addr(1)).with_locality(here.clone()),
        Endpoint::new(addr(2)).with_locality(Locality::new("eu-west", "a", "")),
    ]
    .into();
    for policy in policies() {
        let mut lb = build(policy, PriorityConfig::local_to(here.clone()), 5);
        lb.update(set.clone());
        let ctx = PickContext::new();
        // As in Envoy: the local level takes all traffic, so the retry host predicate finds
        // nothing else there and the local endpoint serves the retry.
        assert_eq!(picked(&mut lb, &ctx, &[addr(1)]), addr(1), "{policy:?}");
        // retryRemoteLocalities (previous_priorities) moves it to the remote level.
        let remote = ctx.excluding_priorities(0b1);
        assert_eq!(picked(&mut lb, &remote, &[addr(1)]), addr(2), "{policy:?}");
    }
}

#[test]
fn an_empty_list_is_a_plain_pick_and_the_default_method_repicks() {
    // Two balancers with the same seed make the same picks without exclusions.
    let mut a = build(Policy::Random, PriorityConfig::default(), 9);
    let mut b = build(Policy::Random, PriorityConfig::default(), 9);
    a.update(endpoints(5));
    b.update(endpoints(5));
    for _ in 0..20 {
        assert_eq!(
            a.pick(&PickContext::new()),
            b.pick_avoiding(&PickContext::new(), &[])
        );
    }
    assert_eq!(HOST_SELECTION_ATTEMPTS, 5);

    // A balancer relying on the trait's default method: picks again up to the limit.
    struct Cycle {
        endpoints: Arc<[Endpoint]>,
        next: usize,
        picks: usize,
    }
    impl Balancer for Cycle {
        fn update(&mut self, endpoints: Arc<[Endpoint]>) {
            self.endpoints = endpoints;
        }
        fn endpoints(&self) -> &Arc<[Endpoint]> {
            &self.endpoints
        }
        fn pick(&mut self, _: &PickContext) -> Option<usize> {
            self.picks += 1;
            let i = self.next % self.endpoints.len();
            self.next += 1;
            Some(i)
        }
        fn set_ejected(&mut self, _: SocketAddr, _: bool) -> bool {
            false
        }
    }
    let mut cycle = Cycle {
        endpoints: endpoints(3),
        next: 0,
        picks: 0,
    };
    assert_eq!(
        cycle.pick_avoiding(&PickContext::new(), &[addr(1), addr(2)]),
        Some(2)
    );
    assert_eq!(cycle.picks, 3);
    // Nothing untried: it gives up after HOST_SELECTION_ATTEMPTS picks.
    cycle.picks = 0;
    let all: Vec<SocketAddr> = (1..=3).map(addr).collect();
    assert!(cycle.pick_avoiding(&PickContext::new(), &all).is_some());
    assert_eq!(cycle.picks, HOST_SELECTION_ATTEMPTS);
}
