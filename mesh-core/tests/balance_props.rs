//! Property tests for the balancers, over the public API only.

use std::{net::SocketAddr, sync::Arc};

use mesh_core::{
    balance::{
        Balancer, HashKey, LoadBalancer, MaglevConfig, PickContext, Policy, PriorityConfig,
        RingHashConfig, SmoothWeighted,
    },
    clock::ManualClock,
    model::{Endpoint, Health, Locality},
};
use proptest::prelude::*;

fn addr(i: usize) -> SocketAddr {
    format!("10.{}.{}.{}:8080", i / 65_536, (i / 256) % 256, i % 256)
        .parse()
        .unwrap()
}

fn weighted(weights: &[u32]) -> Arc<[Endpoint]> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Endpoint::new(addr(i)).with_weight(w))
        .collect()
}

fn build(policy: Policy, priority: PriorityConfig, seed: u64) -> Box<dyn Balancer + Send> {
    policy
        .build(priority, Arc::new(ManualClock::new()), seed)
        .unwrap()
}

fn any_policy() -> impl Strategy<Value = Policy> {
    prop_oneof![
        Just(Policy::RoundRobin),
        Just(Policy::LeastRequest),
        Just(Policy::Random),
        Just(Policy::RingHash(RingHashConfig::default())),
        Just(Policy::Maglev(MaglevConfig { table_size: 1009 })),
    ]
}

proptest! {
    /// Smooth WRR hits each weight exactly every full period and never strays more than 2
    /// picks from the ideal share in between.
    #[test]
    fn smooth_wrr_tracks_weights(weights in prop::collection::vec(1u32..=50, 1..12), picks in 1usize..600) {
        let total: u32 = weights.iter().sum();
        let mut lb = LoadBalancer::new(SmoothWeighted::new(), PriorityConfig::default());
        lb.update(weighted(&weights));
        let mut counts = vec![0u32; weights.len()];
        for k in 1..=picks {
            let i = lb.pick(&PickContext::new()).unwrap();
            counts[i] += 1;
            for (i, &w) in weights.iter().enumerate() {
                let ideal = k as f64 * f64::from(w) / f64::from(total);
                prop_assert!((f64::from(counts[i]) - ideal).abs() <= 2.0,
                    "endpoint {i}: {} picks after {k}, ideal {ideal:.2}", counts[i]);
            }
            if k % total as usize == 0 {
                let periods = (k / total as usize) as u32;
                let exact: Vec<u32> = weights.iter().map(|w| w * periods).collect();
                prop_assert_eq!(&counts, &exact);
            }
        }
    }

    /// Unhealthy or ejected endpoints are picked only when their locality level is in panic,
    /// which requires total health below 100% and the level's healthy share below the threshold;
    /// draining endpoints are never picked.
    #[test]
    fn unavailable_endpoints_only_in_panic(
        policy in any_policy(),
        specs in prop::collection::vec((0usize..4, 0u8..4, any::<bool>(), 1u32..5), 1..24),
        local in 0usize..4,
        hashed in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let localities = [
            Locality::new("r1", "z1", ""),
            Locality::new("r1", "z2", ""),
            Locality::new("r2", "z1", ""),
            Locality::default(),
        ];
        let health = |h: u8| match h {
            0 | 1 => Health::Healthy,
            2 => Health::Unhealthy,
            _ => Health::Draining,
        };
        let endpoints: Arc<[Endpoint]> = specs
            .iter()
            .enumerate()
            .map(|(i, &(loc, h, _, w))| {
                Endpoint::new(addr(i))
                    .with_locality(localities[loc].clone())
                    .with_health(health(h))
                    .with_weight(w)
            })
            .collect();
        let priority = PriorityConfig::local_to(localities[local].clone());
        let mut lb = build(policy, priority.clone(), seed);
        lb.update(endpoints.clone());
        for (i, &(_, _, ejected, _)) in specs.iter().enumerate() {
            if ejected {
                prop_assert!(lb.set_ejected(addr(i), true));
            }
        }

        // The panic rule, computed independently of the balancer.
        let level = |e: &Endpoint| if priority.local.is_unknown() { 0 } else { priority.local.matches(&e.locality).priority() };
        let available = |i: usize| endpoints[i].health == Health::Healthy && !specs[i].2;
        let mut total = [0u64; 4];
        let mut healthy = [0u64; 4];
        for (i, e) in endpoints.iter().enumerate() {
            if e.health != Health::Draining {
                total[level(e)] += 1;
                healthy[level(e)] += u64::from(available(i));
            }
        }
        let total_health: u64 = (0..4)
            .map(|l| (140 * healthy[l]).checked_div(total[l]).unwrap_or(0).min(100))
            .sum();
        let may_panic = |l: usize| total_health < 100 && healthy[l] * 100 < 50 * total[l];

        for k in 0..64u64 {
            let ctx = if hashed { PickContext::with_hash(HashKey::from_hash(k.wrapping_mul(0x9e37_79b9))) } else { PickContext::new() };
            match lb.pick(&ctx) {
                Some(i) => {
                    let e = &endpoints[i];
                    prop_assert_ne!(e.health, Health::Draining);
                    if !available(i) {
                        prop_assert!(may_panic(level(e)), "picked unavailable {i} outside panic");
                    }
                }
                None => {
                    // Only when nothing at all may be used.
                    prop_assert!(endpoints.iter().all(|e| e.health == Health::Draining));
                }
            }
        }
    }
}

proptest! {
    // Each case builds three tables of 65537 entries; fewer cases keep the suite quick.
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Consistent hashes agree across clients (whatever order they list endpoints in) and
    /// removing one endpoint moves its own keys plus at most about as many again.
    #[test]
    fn consistent_hashes_are_stable(
        maglev in any::<bool>(),
        weights in prop::collection::vec(1u32..8, 2..24),
        removed_pick in any::<prop::sample::Index>(),
        shift in any::<prop::sample::Index>(),
    ) {
        let policy = if maglev {
            Policy::Maglev(MaglevConfig::default())
        } else {
            Policy::RingHash(RingHashConfig::default())
        };
        let all = weighted(&weights);
        let mut rotated: Vec<Endpoint> = all.to_vec();
        rotated.rotate_left(shift.index(all.len()));
        let removed = removed_pick.index(all.len());
        let rest: Arc<[Endpoint]> = all
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != removed)
            .map(|(_, e)| e.clone())
            .collect();

        let mut a = build(policy, PriorityConfig::default(), 1);
        a.update(all.clone());
        let mut b = build(policy, PriorityConfig::default(), 2);
        b.update(rotated.into());
        let mut c = build(policy, PriorityConfig::default(), 3);
        c.update(rest.clone());

        let keys = 4000u32;
        let mut moved = 0u32;
        for k in 0..keys {
            let ctx = PickContext::with_hash(HashKey::from_bytes(&k.to_le_bytes()));
            let first = a.pick_endpoint(&ctx).unwrap().address;
            prop_assert_eq!(a.pick_endpoint(&ctx).unwrap().address, first, "same key, same endpoint");
            prop_assert_eq!(b.pick_endpoint(&ctx).unwrap().address, first, "order-independent");
            let after = c.pick_endpoint(&ctx).unwrap().address;
            moved += u32::from(after != first);
        }
        let total: u32 = weights.iter().sum();
        let share = f64::from(weights[removed]) / f64::from(total);
        let moved = f64::from(moved) / f64::from(keys);
        prop_assert!(moved <= 2.0 * share + 0.05, "moved {moved:.3} of keys, removed share {share:.3}");
        prop_assert!(moved >= share - 0.05, "the removed endpoint's keys had to move");
    }
}
