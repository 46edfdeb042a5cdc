//! Properties of the locality rules (`failover`, `failoverPriority`, `distribute`) over random
//! endpoint sets, health, ejections and retry exclusions: picks are always eligible, unhealthy
//! endpoints only in panic, a retry leaves excluded levels whenever another has health.

use std::{collections::BTreeMap, sync::Arc};

use mesh_core::{
    balance::{
        Balancer, Distribute, HashKey, LoadBalancer, LocalityPattern, LocalityRules, PickContext,
        Policy, PriorityConfig, PriorityLabel, RegionFailover, RoundRobin,
    },
    clock::ManualClock,
    model::{Endpoint, Health, Locality},
};
use proptest::prelude::*;

const LOCALITIES: [&str; 5] = ["r1/a", "r1/b", "r2/a", "r3/a", ""];

fn locality(i: usize) -> Locality {
    LOCALITIES[i].parse().unwrap()
}

fn rules(kind: u8, with_failover: bool) -> LocalityRules {
    let failover = vec![RegionFailover {
        from: "r1".into(),
        to: "r3".into(),
    }];
    match kind {
        0 => LocalityRules::default(),
        1 => LocalityRules {
            failover,
            ..LocalityRules::default()
        },
        2 => LocalityRules {
            failover_priority: vec![PriorityLabel::parse("net"), PriorityLabel::parse("version")],
            failover: if with_failover { failover } else { Vec::new() },
            labels: BTreeMap::from([
                ("net".to_owned(), "n1".to_owned()),
                ("version".to_owned(), "v1".to_owned()),
            ]),
            ..LocalityRules::default()
        },
        _ => LocalityRules {
            distribute: vec![Distribute {
                from: "r1".parse().unwrap(),
                to: vec![
                    ("r1/a".parse().unwrap(), 60),
                    ("r2".parse().unwrap(), 30),
                    ("r3/*".parse().unwrap(), 10),
                ],
            }],
            ..LocalityRules::default()
        },
    }
}

proptest! {
    #[test]
    fn picks_follow_the_rules(
        specs in prop::collection::vec((0usize..5, 0u8..4, any::<bool>(), 0u8..3, 0u8..3), 0..24),
        kind in 0u8..4,
        with_failover in any::<bool>(),
        local in 0usize..5,
        threshold in prop::sample::select(vec![0u32, 50]),
        excluded in 0u32..64,
        hashed in any::<bool>(),
        policy in prop::sample::select(vec![Policy::RoundRobin, Policy::Random, Policy::LeastRequest, Policy::Maglev(Default::default())]),
    ) {
        let health = |h: u8| match h {
            0 | 1 => Health::Healthy,
            2 => Health::Unhealthy,
            _ => Health::Draining,
        };
        let value = |v: u8, name: &str| (v > 0).then(|| format!("{name}{v}"));
        let endpoints: Arc<[Endpoint]> = specs
            .iter()
            .enumerate()
            .map(|(i, &(loc, h, _, net, version))| {
                let mut e = Endpoint::new(format!("10.0.0.{i}:80").parse().unwrap())
                    .with_locality(locality(loc))
                    .with_health(health(h));
                if let Some(n) = value(net, "n") {
                    e = e.with_label("net", n);
                }
                if let Some(v) = value(version, "v") {
                    e = e.with_label("version", v);
                }
                e
            })
            .collect();
        let mut config = PriorityConfig::local_to(locality(local)).with_rules(rules(kind, with_failover));
        config.panic_threshold_percent = threshold;
        let distributing = kind == 3 && local < 2;
        let eligible = |e: &Endpoint| {
            e.health != Health::Draining
                && (!distributing
                    || ["r1/a", "r2", "r3/*"]
                        .iter()
                        .any(|p| p.parse::<LocalityPattern>().unwrap().matches(&e.locality)))
        };
        let available = |i: usize| endpoints[i].health == Health::Healthy && !specs[i].2 && eligible(&endpoints[i]);

        let mut lb = LoadBalancer::new(RoundRobin::new(), config.clone());
        let mut other = policy.build(config, Arc::new(ManualClock::new()), 7).unwrap();
        lb.update(endpoints.clone());
        other.update(endpoints.clone());
        for (i, spec) in specs.iter().enumerate() {
            if spec.2 {
                lb.set_ejected(endpoints[i].address, true);
                other.set_ejected(endpoints[i].address, true);
            }
        }
        let load = lb.priority_load();
        prop_assert_eq!(load.shares().iter().sum::<u32>(), 100, "{:?}", load);
        let any_available = (0..endpoints.len()).any(available);
        for k in 0..32u64 {
            let base = if hashed { PickContext::with_hash(HashKey::from_hash(k * 7919)) } else { PickContext::new() };
            for ctx in [base, base.excluding_priorities(excluded)] {
                let Some(i) = lb.pick(&ctx) else {
                    prop_assert!(!any_available, "no pick although endpoints are available");
                    continue;
                };
                let e = &endpoints[i];
                prop_assert!(eligible(e), "picked ineligible {:?}", e);
                let level = lb.priority_of(i).expect("a picked endpoint has a level");
                if !available(i) {
                    prop_assert!(load.panic[level], "picked unavailable {i} outside panic: {load:?}");
                }
                if ctx.excluded_priorities() & (1 << level) != 0 && any_available {
                    // Only when every level with an available endpoint is excluded.
                    let other_level = (0..endpoints.len())
                        .filter(|&j| available(j))
                        .filter_map(|j| lb.priority_of(j))
                        .any(|l| ctx.excluded_priorities() & (1 << l) == 0);
                    prop_assert!(!other_level, "retry stayed in excluded level {level}");
                }
                match other.pick(&ctx) {
                    Some(j) => prop_assert!(eligible(&endpoints[j])),
                    None => prop_assert!(!any_available),
                }
            }
        }
    }
}
