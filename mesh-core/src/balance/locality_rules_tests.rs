use std::{collections::BTreeMap, sync::Arc};

use super::*;
use crate::{
    balance::{Balancer, HashKey, LoadBalancer, PickContext, PriorityConfig, RoundRobin},
    model::Health,
};

fn pattern(s: &str) -> LocalityPattern {
    s.parse().unwrap()
}

fn loc(s: &str) -> Locality {
    s.parse().unwrap()
}

/// Endpoint `10.0.<n/256>.<n%256>:80` at `locality` with `labels`.
fn ep(n: u16, locality: &str, labels: &[(&str, &str)]) -> Endpoint {
    let [hi, lo] = n.to_be_bytes();
    let mut e =
        Endpoint::new(format!("10.0.{hi}.{lo}:80").parse().unwrap()).with_locality(loc(locality));
    for (k, v) in labels {
        e = e.with_label(*k, *v);
    }
    e
}

fn balancer(config: PriorityConfig, eps: Vec<Endpoint>) -> LoadBalancer<RoundRobin> {
    let mut lb = LoadBalancer::new(RoundRobin::new(), config);
    lb.update(Arc::from(eps));
    lb
}

/// How many of `n` picks went to each locality (as written).
fn tally(lb: &mut LoadBalancer<RoundRobin>, n: usize) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let e = lb.pick_endpoint(&PickContext::new()).expect("a pick");
        *out.entry(e.locality.to_string()).or_default() += 1;
    }
    out
}

fn eject_locality(lb: &mut LoadBalancer<RoundRobin>, locality: &str) {
    let addrs: Vec<_> = lb
        .endpoints()
        .iter()
        .filter(|e| e.locality == loc(locality))
        .map(|e| e.address)
        .collect();
    for a in addrs {
        lb.set_ejected(a, true);
    }
}

#[test]
fn patterns_parse_match_and_overlap_as_istio() {
    assert!(pattern("*").matches(&Locality::default()));
    assert!(pattern("us-west").matches(&loc("us-west/z1/s1")));
    assert!(pattern("us-west/*").matches(&loc("us-west/z2")));
    assert!(pattern("us-west/z1/s1").matches(&loc("us-west/z1/s1")));
    assert!(!pattern("us-west/z1/s1").matches(&loc("us-west/z1")));
    assert!(!pattern("us-west").matches(&Locality::default()));
    assert!(pattern("us-west").overlaps(&pattern("us-west/z1")));
    assert!(pattern("*").overlaps(&pattern("eu/z1")));
    assert!(!pattern("us-west/z1").overlaps(&pattern("us-west/z2/*")));
    assert_eq!(pattern("us-west/*").to_string(), "us-west");
    assert_eq!(pattern("*").to_string(), "*");
    for bad in ["", "a//b", "a/", "a*/b", "a/*/c", "*/*", "a/b/c/d", "us-*"] {
        let e = bad.parse::<LocalityPattern>().unwrap_err();
        assert!(e.to_string().contains(bad), "{bad}: {e}");
    }
    assert_eq!(
        PriorityLabel::parse("topology.istio.io/network=n2"),
        PriorityLabel {
            key: "topology.istio.io/network".into(),
            value: Some("n2".into())
        }
    );
}

fn three_regions() -> Vec<Endpoint> {
    vec![
        ep(1, "us-east/a", &[]),
        ep(2, "us-east/a", &[]),
        ep(3, "us-west/a", &[]),
        ep(4, "us-west/b", &[]),
        ep(5, "eu/a", &[]),
        ep(6, "eu/b", &[]),
    ]
}

#[test]
fn failover_puts_the_target_region_before_other_regions() {
    let rules = LocalityRules {
        failover: vec![RegionFailover {
            from: "us-east".into(),
            to: "eu".into(),
        }],
        ..LocalityRules::default()
    };
    let config = PriorityConfig::local_to(loc("us-east/a")).with_rules(rules);
    let mut lb = balancer(config.clone(), three_regions());
    assert_eq!(lb.priority_load().levels, 5);
    assert_eq!(
        tally(&mut lb, 10),
        BTreeMap::from([("us-east/a".into(), 10)])
    );
    // The local region is ejected: everything goes to eu (level 3), nothing to us-west (4).
    eject_locality(&mut lb, "us-east/a");
    assert_eq!(lb.priority_load().shares(), [0, 0, 0, 100, 0]);
    assert_eq!(
        tally(&mut lb, 10),
        BTreeMap::from([("eu/a".into(), 5), ("eu/b".into(), 5)])
    );
    // eu dies too: us-west is next.
    eject_locality(&mut lb, "eu/a");
    eject_locality(&mut lb, "eu/b");
    assert_eq!(
        tally(&mut lb, 4).keys().collect::<Vec<_>>(),
        ["us-west/a", "us-west/b"]
    );

    // Without the rule both remote regions share level 3.
    let mut lb = balancer(PriorityConfig::local_to(loc("us-east/a")), three_regions());
    eject_locality(&mut lb, "us-east/a");
    assert_eq!(tally(&mut lb, 8).len(), 4);
    // A rule for another region does not apply to this caller.
    let mut lb = balancer(
        PriorityConfig::local_to(loc("us-west/a")).with_rules(config.rules.clone()),
        three_regions(),
    );
    eject_locality(&mut lb, "us-west/a");
    eject_locality(&mut lb, "us-west/b");
    assert_eq!(tally(&mut lb, 8).len(), 3, "us-east and eu share level 3");
}

fn labelled() -> Vec<Endpoint> {
    let net = "topology.istio.io/network";
    vec![
        ep(1, "r/a", &[(net, "n1"), ("version", "v1")]),
        ep(2, "r/a", &[(net, "n1"), ("version", "v2")]),
        ep(3, "r/b", &[(net, "n2"), ("version", "v1")]),
        ep(4, "r/b", &[("version", "v1")]),
    ]
}

fn by_labels(labels: &[&str], failover: bool) -> PriorityConfig {
    let rules = LocalityRules {
        failover_priority: labels.iter().map(|l| PriorityLabel::parse(l)).collect(),
        failover: if failover {
            vec![RegionFailover {
                from: "r".into(),
                to: "s".into(),
            }]
        } else {
            Vec::new()
        },
        labels: BTreeMap::from([
            ("topology.istio.io/network".into(), "n1".into()),
            ("version".into(), "v1".into()),
        ]),
        ..LocalityRules::default()
    };
    PriorityConfig::local_to(loc("r/b")).with_rules(rules)
}

#[test]
fn failover_priority_levels_count_matching_labels_in_order() {
    let config = by_labels(&["topology.istio.io/network", "version"], false);
    let planned = plan(&config.rules, &config.local, &labelled());
    // Both match: 0; network only: 1; network differs (n2, or missing): 2.
    assert_eq!(planned.level_of, [Some(0), Some(1), Some(2), Some(2)]);
    assert_eq!(planned.levels, 3);
    let mut lb = balancer(config, labelled());
    assert_eq!(lb.pick(&PickContext::new()), Some(0));
    lb.set_ejected(labelled()[0].address, true);
    assert_eq!(lb.pick(&PickContext::new()), Some(1));
    lb.set_ejected(labelled()[1].address, true);
    let picks: Vec<_> = (0..4)
        .filter_map(|_| lb.pick(&PickContext::new()))
        .collect();
    assert_eq!(picks, [2, 3, 2, 3]);

    // `label=value` compares with the value instead of the caller's own.
    let config = by_labels(&["topology.istio.io/network=n2"], false);
    let planned = plan(&config.rules, &config.local, &labelled());
    assert_eq!(planned.level_of, [Some(1), Some(1), Some(0), Some(1)]);
    // The zone topology label comes from the locality: r/b is the caller's zone.
    let config = by_labels(&["topology.kubernetes.io/zone"], false);
    let planned = plan(&config.rules, &config.local, &labelled());
    assert_eq!(planned.level_of, [Some(1), Some(1), Some(0), Some(0)]);
}

#[test]
fn failover_priority_with_failover_subdivides_by_locality_and_renumbers() {
    let config = by_labels(&["version"], true);
    let mut eps = labelled();
    eps.push(ep(5, "s/a", &[("version", "v1")]));
    eps.push(ep(6, "t/a", &[("version", "v1")]));
    eps.push(ep(7, "t/a", &[("version", "v9")]));
    let planned = plan(&config.rules, &config.local, &eps);
    // Raw istiod priorities: v1 -> 0*5 + locality, v2 -> 1*5 + locality; caller is r/b.
    //   ep1 r/a v1: 2, ep2 r/a v2: 7, ep3 r/b: 0, ep4 r/b: 0, ep5 s (failover target): 3,
    //   ep6 t: 4, ep7 t v9: 9 -> renumbered 0,2,3,4,7,9 = 0..5.
    assert_eq!(
        planned.level_of,
        [
            Some(1),
            Some(4),
            Some(0),
            Some(0),
            Some(2),
            Some(3),
            Some(5)
        ]
    );
    assert_eq!(planned.levels, 6);
}

#[test]
fn levels_beyond_the_limit_share_the_last() {
    let keys: Vec<String> = (0..20).map(|i| format!("l{i}")).collect();
    let rules = LocalityRules {
        failover_priority: keys.iter().map(|k| PriorityLabel::parse(k)).collect(),
        labels: keys.iter().map(|k| (k.clone(), "x".to_owned())).collect(),
        ..LocalityRules::default()
    };
    // Endpoint i matches the first i labels: raw level 20 - i.
    let eps: Vec<Endpoint> = (0..=20u16)
        .map(|i| {
            let labels: Vec<(&str, &str)> = keys
                .iter()
                .take(usize::from(i))
                .map(|k| (k.as_str(), "x"))
                .collect();
            ep(i, "r/a", &labels)
        })
        .collect();
    let planned = plan(&rules, &Locality::default(), &eps);
    assert_eq!(planned.levels, MAX_LEVELS);
    assert_eq!(planned.level_of[20], Some(0));
    assert_eq!(planned.level_of[0], Some(MAX_LEVELS as u8 - 1));
    assert_eq!(planned.level_of[5], Some(MAX_LEVELS as u8 - 1));
    let mut lb = balancer(PriorityConfig::default().with_rules(rules), eps);
    assert_eq!(lb.pick(&PickContext::new()), Some(20));
}

fn distribute(to: &[(&str, u32)]) -> PriorityConfig {
    let rules = LocalityRules {
        distribute: vec![
            Distribute {
                from: pattern("eu/*"),
                to: vec![(pattern("eu/a"), 100)],
            },
            Distribute {
                from: pattern("us-west/a"),
                to: to.iter().map(|(p, w)| (pattern(p), *w)).collect(),
            },
        ],
        ..LocalityRules::default()
    };
    PriorityConfig::local_to(loc("us-west/a")).with_rules(rules)
}

fn west() -> Vec<Endpoint> {
    let mut eps = Vec::new();
    for (i, l) in ["us-west/a", "us-west/b", "us-west/c", "us-east/a"]
        .iter()
        .enumerate()
    {
        for j in 0..4u16 {
            eps.push(ep(i as u16 * 10 + j, l, &[]));
        }
    }
    eps
}

#[test]
fn distribute_splits_by_weight_and_starves_the_rest() {
    let mut lb = balancer(distribute(&[("us-west/a", 80), ("us-west/b", 20)]), west());
    let t = tally(&mut lb, 10_000);
    assert_eq!(
        t,
        BTreeMap::from([("us-west/a".into(), 8_000), ("us-west/b".into(), 2_000)])
    );
    assert_eq!(lb.priority_load().levels, 1);
    // One pattern over two localities: istiod shares its weight by endpoint count (ceil).
    let mut lb = balancer(
        distribute(&[("us-west/b", 50), ("us-east", 25), ("us-west/c", 25)]),
        west(),
    );
    let t = tally(&mut lb, 1_000);
    assert_eq!(t["us-west/b"], 500);
    assert_eq!(t["us-east/a"], 250);
    assert!(!t.contains_key("us-west/a"));
    // Consistent-hash keys stick to a group and split by weight too.
    let mut lb = balancer(distribute(&[("us-west/a", 70), ("us-west/b", 30)]), west());
    let mut a = 0;
    for k in 0..10_000u64 {
        let ctx = PickContext::with_hash(HashKey::from_hash(k));
        let first = lb.pick_endpoint(&ctx).unwrap().locality.clone();
        assert_eq!(lb.pick_endpoint(&ctx).unwrap().locality, first);
        a += usize::from(first == loc("us-west/a"));
    }
    assert!((6_700..7_300).contains(&a), "{a}");
}

#[test]
fn distribute_weights_follow_locality_health() {
    let mut lb = balancer(distribute(&[("us-west/a", 50), ("us-west/b", 50)]), west());
    // 2 of 4 healthy in a: availability 1.4 * 50% = 70%, so a gets 50*70 : 50*100 = 41%.
    let eps = lb.endpoints().clone();
    lb.set_ejected(eps[0].address, true);
    lb.set_ejected(eps[1].address, true);
    let t = tally(&mut lb, 1_700);
    assert_eq!(t["us-west/a"], 700);
    assert_eq!(t["us-west/b"], 1_000);
    // a dies: everything to b; b dies too: nothing healthy, the level panics (50% threshold)
    // and all eight endpoints of a and b serve, never the others.
    eject_locality(&mut lb, "us-west/a");
    assert_eq!(
        tally(&mut lb, 10),
        BTreeMap::from([("us-west/b".into(), 10)])
    );
    eject_locality(&mut lb, "us-west/b");
    let t = tally(&mut lb, 16);
    assert_eq!(
        t,
        BTreeMap::from([("us-west/a".into(), 8), ("us-west/b".into(), 8)])
    );
}

#[test]
fn distribute_without_a_rule_for_the_caller_applies_nothing() {
    let mut config = distribute(&[("us-west/a", 100)]);
    config.local = loc("us-east/a");
    let mut lb = balancer(config, west());
    assert_eq!(lb.priority_load().levels, 1);
    assert_eq!(tally(&mut lb, 16).len(), 4, "no locality preference at all");
    let draining = ep(99, "us-west/a", &[]).with_health(Health::Draining);
    let mut lb = balancer(distribute(&[("us-west/a", 100)]), vec![draining]);
    assert_eq!(lb.pick(&PickContext::new()), None);
}

#[test]
fn retries_avoid_excluded_levels_while_others_have_health() {
    let mut lb = balancer(PriorityConfig::local_to(loc("us-east/a")), three_regions());
    let avoid_local = PickContext::new().excluding_priorities(0b1);
    let e = lb.pick_endpoint(&avoid_local).unwrap().locality.clone();
    assert_eq!(
        e.region, "us-west",
        "level 0 avoided; zone and region levels are empty"
    );
    let picked = lb.pick(&avoid_local).unwrap();
    assert_eq!(lb.priority_of(picked), Some(3));
    assert_eq!(lb.priority_of(0), Some(0));
    // Avoiding every level with health falls back to the normal load.
    let avoid_all = PickContext::new().excluding_priorities(0b1001);
    assert_eq!(
        lb.pick_endpoint(&avoid_all).unwrap().locality.region,
        "us-east"
    );
    // The same with a hash key: the key's level choice moves off the avoided level.
    let keyed = PickContext::with_hash(HashKey::from_hash(3)).excluding_priorities(0b1);
    assert_ne!(lb.pick_endpoint(&keyed).unwrap().locality.region, "us-east");
}
