use super::*;

fn ep(n: u8, locality: &Locality, health: Health) -> Endpoint {
    Endpoint::new(format!("10.0.0.{n}:80").parse().unwrap())
        .with_locality(locality.clone())
        .with_health(health)
}

/// `counts[level] = (healthy, unhealthy)`; level 0 is the caller's subzone, 3 another region.
fn set(counts: [(u8, u8); LEVELS]) -> (Vec<Endpoint>, PriorityConfig) {
    let here = Locality::new("r", "z", "s");
    let localities = [
        here.clone(),
        Locality::new("r", "z", "other"),
        Locality::new("r", "other", ""),
        Locality::new("elsewhere", "z", ""),
    ];
    let mut eps = Vec::new();
    let mut n = 0u8;
    for (level, (healthy, unhealthy)) in counts.iter().enumerate() {
        for i in 0..healthy + unhealthy {
            n += 1;
            let health = if i < *healthy {
                Health::Healthy
            } else {
                Health::Unhealthy
            };
            eps.push(ep(n, &localities[level], health));
        }
    }
    (eps, PriorityConfig::local_to(here))
}

fn load(counts: [(u8, u8); LEVELS]) -> PriorityLoad {
    let (eps, config) = set(counts);
    Priorities::new(&eps, &vec![false; eps.len()], &config).load()
}

#[test]
fn healthy_local_level_takes_everything() {
    let l = load([(3, 0), (3, 0), (3, 0), (3, 0)]);
    assert_eq!(l.shares(), [100, 0, 0, 0]);
    assert_eq!(l.panics(), [false; LEVELS]);
    // 80% healthy * 1.4 = 112% -> still 100.
    assert_eq!(
        load([(8, 2), (5, 0), (0, 0), (0, 0)]).shares(),
        [100, 0, 0, 0]
    );
}

#[test]
fn degraded_level_fails_over_gradually() {
    // 50% healthy * 1.4 = 70% stays local, 30% spills to the zone.
    let l = load([(5, 5), (5, 0), (0, 0), (0, 0)]);
    assert_eq!(l.shares(), [70, 30, 0, 0]);
    assert_eq!(
        l.panics(),
        [false; LEVELS],
        "total health is 100%: no panic"
    );
    // A dead local level sends everything to the next one that has healthy endpoints.
    let l = load([(0, 4), (0, 4), (2, 0), (2, 0)]);
    assert_eq!(l.shares(), [0, 0, 100, 0]);
}

#[test]
fn shares_are_scaled_when_total_health_is_short() {
    // Envoy's example shape: 20% healthy everywhere -> health 28 each -> scaled to 33/33/33.
    let l = load([(1, 4), (1, 4), (1, 4), (0, 0)]);
    assert_eq!(l.shares().iter().sum::<u32>(), 100);
    assert_eq!(l.shares(), [34, 33, 33, 0]);
    // All three populated levels are below 50% healthy and the empty one counts as panicking,
    // so this is total panic and the split is by endpoint count (equal here).
    assert_eq!(l.panics(), [true; LEVELS]);
}

#[test]
fn panic_when_too_few_healthy_in_total() {
    // 40% healthy locally and nothing else: the level panics and uses all 10.
    let (eps, config) = set([(4, 6), (0, 0), (0, 0), (0, 0)]);
    let mut p = Priorities::new(&eps, &vec![false; eps.len()], &config);
    assert_eq!(p.load().shares(), [100, 0, 0, 0]);
    assert!(p.load().panic[0]);
    let c = p.choose(None, 0).unwrap();
    assert_eq!(c.len(), 10);
    assert_eq!(c.slot(), 1);
    // 60% healthy: below 100% total health, but not below the threshold: healthy only.
    let (eps, config) = set([(6, 4), (0, 0), (0, 0), (0, 0)]);
    let mut p = Priorities::new(&eps, &vec![false; eps.len()], &config);
    assert!(!p.load().panic[0]);
    assert_eq!(p.choose(None, 0).unwrap().len(), 6);
}

#[test]
fn partial_panic_keeps_healthy_levels_strict() {
    // Level 0: 1 of 10 healthy (health 14, panics); level 1: 2 of 4 healthy (health 70, not
    // below 50%). Total health 84 < 100 so per-level panic applies to level 0 only.
    let l = load([(1, 9), (2, 2), (0, 0), (0, 0)]);
    assert_eq!(l.panics()[..2], [true, false]);
    assert_eq!(l.shares(), [17, 83, 0, 0]);
}

#[test]
fn total_panic_splits_by_endpoint_count() {
    let l = load([(0, 3), (0, 1), (0, 0), (0, 0)]);
    assert_eq!(l.shares(), [75, 25, 0, 0]);
    assert_eq!(l.panics(), [true; LEVELS]);
}

#[test]
fn panic_disabled_means_no_endpoint() {
    let (eps, mut config) = set([(0, 3), (0, 0), (0, 0), (0, 0)]);
    config.panic_threshold_percent = 0;
    let mut p = Priorities::new(&eps, &vec![false; eps.len()], &config);
    assert_eq!(p.load().shares(), [100, 0, 0, 0]);
    assert!(p.choose(None, 0).is_none());
    // And with no endpoints at all.
    let mut p = Priorities::new(&[], &[], &PriorityConfig::default());
    assert!(p.choose(None, 0).is_none());
    assert_eq!(p.load().shares(), [100, 0, 0, 0]);
}

#[test]
fn ejected_and_draining_endpoints() {
    let (mut eps, config) = set([(4, 0), (0, 0), (0, 0), (0, 0)]);
    // Ejecting one of four leaves 75% healthy (health 100): no spill, no panic.
    let mut ejected = vec![false; eps.len()];
    ejected[0] = true;
    let mut p = Priorities::new(&eps, &ejected, &config);
    let c = p.choose(None, 0).unwrap();
    assert_eq!(c.indices(), &[1, 2, 3]);
    // Draining endpoints leave the denominator: 1 healthy of 1 counted.
    for e in &mut eps[1..] {
        e.health = Health::Draining;
    }
    let mut p = Priorities::new(&eps, &[false; 4], &config);
    assert_eq!(p.choose(None, 0).unwrap().indices(), &[0]);
    assert!(!p.load().panic[0]);
}

#[test]
fn unknown_local_locality_uses_one_level() {
    let (eps, _) = set([(1, 0), (1, 0), (1, 0), (1, 0)]);
    let mut p = Priorities::new(&eps, &[false; 4], &PriorityConfig::default());
    assert_eq!(p.choose(None, 0).unwrap().len(), 4);
}

#[test]
fn level_choice_follows_shares_exactly_and_hashes_stick() {
    let (eps, config) = set([(5, 5), (5, 0), (0, 0), (0, 0)]);
    let mut p = Priorities::new(&eps, &vec![false; eps.len()], &config);
    let mut counts = [0u32; 2];
    for _ in 0..100 {
        let c = p.choose(None, 0).unwrap();
        counts[c.slot() / 2] += 1;
    }
    assert_eq!(counts, [70, 30]);
    let mut by_hash = [0u32; 2];
    for k in 0..10_000u64 {
        let key = HashKey::from_hash(k);
        let first = p.choose(Some(key), 0).unwrap().slot();
        assert_eq!(p.choose(Some(key), 0).unwrap().slot(), first);
        by_hash[first / 2] += 1;
    }
    assert!((6_500..7_500).contains(&by_hash[0]), "{by_hash:?}");
}

#[test]
fn config_validation() {
    assert!(PriorityConfig::default().validate().is_ok());
    let bad = PriorityConfig {
        panic_threshold_percent: 101,
        ..PriorityConfig::default()
    };
    assert!(matches!(
        bad.validate(),
        Err(BalanceConfigError::Percentage { value: 101, .. })
    ));
    let bad = PriorityConfig {
        overprovisioning_percent: 0,
        ..PriorityConfig::default()
    };
    assert!(bad.validate().is_err());
}

#[test]
fn a_level_with_few_healthy_endpoints_still_gets_traffic() {
    // 140% * 1/142 rounds down to 0% health. Found by the balancer_ops fuzz target.
    let (eps, mut config) = set([(0, 1), (1, 141), (0, 0), (0, 0)]);
    config.panic_threshold_percent = 0;
    let mut p = Priorities::new(&eps, &vec![false; eps.len()], &config);
    assert_eq!(p.load().shares(), [0, 100, 0, 0]);
    let candidates = p
        .choose(None, 0)
        .expect("the healthy endpoint is a candidate");
    assert_eq!(candidates.indices(), &[1]);

    // With a small overprovisioning factor the shares summed to 0 and the pick fell to level 0
    // by accident.
    let (eps, mut config) = set([(1, 1), (0, 0), (0, 0), (0, 0)]);
    config.overprovisioning_percent = 1;
    let l = Priorities::new(&eps, &vec![false; eps.len()], &config).load();
    assert_eq!(l.shares(), [100, 0, 0, 0]);
    assert!(!l.panic[0]);
}
