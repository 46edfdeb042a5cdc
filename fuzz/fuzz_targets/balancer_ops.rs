//! Drives a load balancer (`mesh_core::balance::LoadBalancer` around each algorithm) through an
//! arbitrary sequence of operations and checks it against a model of the endpoint set after
//! every step.
//!
//! Input layout (read with `arbitrary::Unstructured`): the algorithm, the priority config (the
//! caller's locality, panic threshold, overprovisioning factor), then operations until the input
//! runs out: add / remove / change the health, weight or locality of an endpoint, eject or
//! return an address, pick (with or without a hash key), start and complete requests, advance
//! the manual clock. Addresses come from a pool of 12, so duplicates and re-adds happen.
//!
//! Invariants:
//! - a pick returns an index of the current endpoint set, never a draining endpoint, and an
//!   unhealthy or ejected endpoint only when the endpoint's locality level is in panic mode;
//! - when some endpoint is healthy and not ejected, a pick succeeds;
//! - `set_ejected` succeeds exactly for present addresses, and ejections survive updates only
//!   for addresses that remain (`is_ejected` agrees with the model);
//! - the priority shares sum to 100;
//! - consistent hashes give the same endpoint for the same key when nothing changed between.

#![no_main]

use std::{collections::BTreeSet, net::SocketAddr, sync::Arc, time::Duration};

use libfuzzer_sys::{
    arbitrary::{Result, Unstructured},
    fuzz_target,
};
use mesh_core::{
    balance::{
        Algorithm, Balancer, HashKey, LoadBalancer, Maglev, MaglevConfig, PeakEwma, PeakEwmaConfig,
        PickContext, PriorityConfig, RingHash, RingHashConfig, RoundRobin, SmoothWeighted,
        WeightAware, WeightedFair, WeightedRandom,
    },
    clock::ManualClock,
    model::{Endpoint, Health, Locality},
    rng::SplitMix64,
};

const POOL: u8 = 12;
const MAX_ENDPOINTS: usize = 24;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u);
});

fn locality(i: u8) -> Locality {
    match i % 5 {
        0 => Locality::default(),
        1 => Locality::new("r1", "z1", "s1"),
        2 => Locality::new("r1", "z1", "s2"),
        3 => Locality::new("r1", "z2", ""),
        _ => Locality::new("r2", "z1", "s1"),
    }
}

fn address(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i % POOL], 80))
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let algorithm = u.int_in_range(0..=7u8)?;
    let config = PriorityConfig {
        local: locality(u.arbitrary()?),
        overprovisioning_percent: u.int_in_range(1..=250)?,
        panic_threshold_percent: u.int_in_range(0..=100)?,
        ..PriorityConfig::default()
    };
    let seed: u64 = u.arbitrary()?;
    let clock = Arc::new(ManualClock::new());
    let rng = SplitMix64::new(seed);
    match algorithm {
        0 => drive(
            LoadBalancer::new(RoundRobin::new(), config),
            u,
            &clock,
            false,
        ),
        1 => drive(
            LoadBalancer::new(WeightAware::new(seed), config),
            u,
            &clock,
            false,
        ),
        2 => drive(
            LoadBalancer::new(WeightedFair::new(), config),
            u,
            &clock,
            false,
        ),
        3 => drive(
            LoadBalancer::new(SmoothWeighted::new(), config),
            u,
            &clock,
            false,
        ),
        4 => drive(
            LoadBalancer::new(WeightedRandom::new(rng), config),
            u,
            &clock,
            false,
        ),
        5 => {
            let ewma = PeakEwma::new(PeakEwmaConfig::default(), Arc::clone(&clock), rng)
                .expect("default config is valid");
            drive(LoadBalancer::new(ewma, config), u, &clock, false)
        }
        6 => {
            let ring = RingHash::new(RingHashConfig {
                minimum_ring_size: 16,
                maximum_ring_size: 256,
            })
            .expect("valid ring sizes");
            drive(LoadBalancer::new(ring, config), u, &clock, true)
        }
        _ => {
            let maglev = Maglev::new(MaglevConfig { table_size: 251 }).expect("251 is prime");
            drive(LoadBalancer::new(maglev, config), u, &clock, true)
        }
    }
}

struct Model {
    endpoints: Vec<Endpoint>,
    ejected: BTreeSet<SocketAddr>,
}

impl Model {
    fn present(&self, addr: SocketAddr) -> bool {
        self.endpoints.iter().any(|e| e.address == addr)
    }
}

fn health(i: u8) -> Health {
    match i % 4 {
        0 | 1 => Health::Healthy,
        2 => Health::Unhealthy,
        _ => Health::Draining,
    }
}

fn drive<A: Algorithm>(
    mut lb: LoadBalancer<A>,
    u: &mut Unstructured<'_>,
    clock: &ManualClock,
    hashed: bool,
) -> Result<()> {
    let mut model = Model {
        endpoints: Vec::new(),
        ejected: BTreeSet::new(),
    };
    // The last hash pick, valid until the next change: (key, index).
    let mut last_hash: Option<(u64, usize)> = None;
    while !u.is_empty() {
        let op = u.int_in_range(0..=10u8)?;
        let mut changed = true;
        match op {
            0 | 1 => {
                if model.endpoints.len() < MAX_ENDPOINTS {
                    let endpoint = Endpoint::new(address(u.arbitrary()?))
                        .with_weight(u.int_in_range(0..=6)?)
                        .with_locality(locality(u.arbitrary()?))
                        .with_health(health(u.arbitrary()?));
                    model.endpoints.push(endpoint);
                }
                update(&mut lb, &mut model);
            }
            2 => {
                if !model.endpoints.is_empty() {
                    let i = u.choose_index(model.endpoints.len())?;
                    model.endpoints.remove(i);
                }
                update(&mut lb, &mut model);
            }
            3 => {
                if !model.endpoints.is_empty() {
                    let i = u.choose_index(model.endpoints.len())?;
                    let endpoint = &mut model.endpoints[i];
                    endpoint.health = health(u.arbitrary()?);
                    endpoint.weight = u.int_in_range(0..=6)?;
                    endpoint.locality = locality(u.arbitrary()?);
                }
                update(&mut lb, &mut model);
            }
            4 => {
                let addr = address(u.arbitrary()?);
                let eject: bool = u.arbitrary()?;
                let known = lb.set_ejected(addr, eject);
                assert_eq!(
                    known,
                    model.present(addr),
                    "set_ejected({addr}) on presence"
                );
                if known {
                    if eject {
                        model.ejected.insert(addr);
                    } else {
                        model.ejected.remove(&addr);
                    }
                }
            }
            5..=7 => {
                changed = false;
                let key: Option<u64> = if hashed && u.arbitrary()? {
                    Some(u.int_in_range(0..=7)?)
                } else {
                    None
                };
                let ctx = key.map_or_else(PickContext::new, |k| {
                    PickContext::with_hash(HashKey::from_hash(k))
                });
                let picked = lb.pick(&ctx);
                check_pick(&mut lb, &model, picked);
                if let (Some(key), Some(i)) = (key, picked) {
                    if let Some((last_key, last_i)) = last_hash
                        && last_key == key
                    {
                        assert_eq!(i, last_i, "same hash key, same set: same endpoint");
                    }
                    last_hash = Some((key, i));
                }
                if let Some(i) = picked
                    && u.arbitrary()?
                {
                    let addr = model.endpoints[i].address;
                    lb.on_start(addr);
                    if u.arbitrary()? {
                        let micros = u.int_in_range(0..=5_000_000u64)?;
                        lb.on_complete(addr, Duration::from_micros(micros));
                    }
                }
            }
            8 => {
                // Events for any address, picked or not, present or not, must be harmless.
                changed = false;
                let addr = address(u.arbitrary()?);
                if u.arbitrary()? {
                    lb.on_start(addr);
                } else {
                    let micros = u.int_in_range(0..=u64::from(u32::MAX))?;
                    lb.on_complete(addr, Duration::from_micros(micros));
                }
            }
            9 => {
                changed = false;
                let millis = u.int_in_range(0..=120_000u64)?;
                clock.advance(Duration::from_millis(millis));
            }
            _ => {
                // Re-sending the same set is not a change.
                changed = false;
                let same = Arc::clone(lb.endpoints());
                lb.update(same);
            }
        }
        if changed {
            last_hash = None;
        }
        for i in 0..POOL {
            let addr = address(i);
            assert_eq!(lb.is_ejected(addr), model.ejected.contains(&addr), "{addr}");
        }
        let load = lb.priority_load();
        assert_eq!(load.percent.iter().sum::<u32>(), 100, "{load:?}");
    }
    Ok(())
}

fn update<A: Algorithm>(lb: &mut LoadBalancer<A>, model: &mut Model) {
    lb.update(Arc::from(model.endpoints.clone()));
    let endpoints = &model.endpoints;
    model
        .ejected
        .retain(|a| endpoints.iter().any(|e| e.address == *a));
}

fn check_pick<A: Algorithm>(lb: &mut LoadBalancer<A>, model: &Model, picked: Option<usize>) {
    let usable = |e: &Endpoint| e.health == Health::Healthy && !model.ejected.contains(&e.address);
    let Some(i) = picked else {
        assert!(
            !model.endpoints.iter().any(usable),
            "no pick although a healthy, non-ejected endpoint exists: {:?} ejected {:?}",
            model.endpoints,
            model.ejected
        );
        return;
    };
    assert_eq!(lb.endpoints().len(), model.endpoints.len());
    let endpoint = model
        .endpoints
        .get(i)
        .unwrap_or_else(|| panic!("pick {i} out of {} endpoints", model.endpoints.len()));
    assert_ne!(
        endpoint.health,
        Health::Draining,
        "picked a draining endpoint"
    );
    if !usable(endpoint) {
        let local = lb.config().local.clone();
        let level = if local.is_unknown() {
            0
        } else {
            local.matches(&endpoint.locality).priority()
        };
        let load = lb.priority_load();
        assert!(
            load.panic[level],
            "picked unhealthy/ejected {endpoint:?} at level {level} outside panic: {load:?}"
        );
    }
}
