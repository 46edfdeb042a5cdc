//! Properties of the local limiter over arbitrary request timings (ManualClock):
//!
//! - over any window `[t_i, t_j]`, a bucket admits at most `max_tokens + rate * (t_j - t_i)`
//!   requests (checked exactly, in integers);
//! - with several rules, the tighter bound holds too;
//! - with more keys than `max_keys`, memory stays bounded and each key still gets at most its
//!   own bucket's bound plus the overflow bucket's.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use mesh_core::clock::{Clock, ManualClock, Timestamp};
use mesh_policy::{
    authz::{AuthzRequest, HttpAttributes},
    ratelimit::{LocalRateLimiter, RateLimitConfig},
};
use proptest::prelude::*;

#[derive(Clone, Copy, Debug)]
struct Shape {
    max_tokens: u32,
    tokens_per_fill: u32,
    fill_nanos: u64,
}

impl Shape {
    fn yaml(&self) -> String {
        format!(
            "{{max_tokens: {}, tokens_per_fill: {}, fill_interval: {}ns}}",
            self.max_tokens, self.tokens_per_fill, self.fill_nanos
        )
    }

    /// Whether `count` admissions in a window of `nanos` respect the bound of `buckets`
    /// independent buckets of this shape:
    /// `count <= buckets * (max_tokens + tokens_per_fill * nanos / fill_nanos)`, in integers.
    fn allows(&self, count: u64, nanos: u64, buckets: u64) -> bool {
        u128::from(count) * u128::from(self.fill_nanos)
            <= u128::from(buckets)
                * (u128::from(self.max_tokens) * u128::from(self.fill_nanos)
                    + u128::from(nanos) * u128::from(self.tokens_per_fill))
    }
}

fn shape() -> impl Strategy<Value = Shape> {
    (1u32..8, 1u32..5, 1_000_000u64..50_000_000).prop_map(
        |(max_tokens, tokens_per_fill, fill_nanos)| Shape {
            max_tokens,
            tokens_per_fill,
            fill_nanos,
        },
    )
}

/// Steps: advance the clock by some nanoseconds (often zero, sometimes odd amounts), then make
/// a few requests, each with a key from a small alphabet.
fn steps() -> impl Strategy<Value = Vec<(u64, Vec<u8>)>> {
    let advance = prop_oneof![Just(0u64), 0u64..5_000_000, 0u64..200_000_000];
    prop::collection::vec((advance, prop::collection::vec(0u8..6, 0..6)), 1..120)
}

fn request(key: u8) -> AuthzRequest {
    let dst: SocketAddr = ([10, 0, 0, 2], 80).into();
    AuthzRequest::tcp([10, 0, 0, 1].into(), dst)
        .with_http(HttpAttributes::new("GET", "/", "svc").with_header("x-key", key.to_string()))
}

/// Runs the steps; returns the admission times per key.
fn run(limiter: &LocalRateLimiter, steps: &[(u64, Vec<u8>)]) -> HashMap<u8, Vec<Timestamp>> {
    let clock = ManualClock::starting_at(Timestamp::from_nanos(1_000_000_000));
    let mut admitted: HashMap<u8, Vec<Timestamp>> = HashMap::new();
    for (advance, keys) in steps {
        clock.advance(Duration::from_nanos(*advance));
        for key in keys {
            if limiter.decide(&request(*key), clock.now()).is_allowed() {
                admitted.entry(*key).or_default().push(clock.now());
            }
        }
    }
    admitted
}

/// Every window between two admissions respects the bound of `buckets` buckets.
fn check_windows(times: &[Timestamp], shape: &Shape, buckets: u64) -> Result<(), TestCaseError> {
    for i in 0..times.len() {
        for j in i..times.len() {
            let count = (j - i + 1) as u64;
            let nanos = times[j].as_nanos() - times[i].as_nanos();
            let ok = shape.allows(count, nanos, buckets);
            prop_assert!(
                ok,
                "{count} admitted in {nanos}ns from {shape:?} x{buckets}"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn admissions_never_exceed_burst_plus_rate_times_elapsed(shape in shape(), steps in steps()) {
        let yaml = format!("rules: [{{name: all, limit: {}}}]", shape.yaml());
        let limiter = LocalRateLimiter::new(RateLimitConfig::from_yaml(&yaml).unwrap());
        let admitted = run(&limiter, &steps);
        let mut all: Vec<Timestamp> = admitted.into_values().flatten().collect();
        all.sort();
        check_windows(&all, &shape, 1)?;
        // And the limiter is not stingier than a bucket: the first burst is fully admitted.
        let first_requests: usize = steps.iter().take_while(|(a, _)| *a == 0).map(|(_, k)| k.len()).sum();
        prop_assert!(all.len() >= first_requests.min(shape.max_tokens as usize));
    }

    #[test]
    fn several_rules_respect_the_tighter_bound(a in shape(), b in shape(), steps in steps()) {
        let yaml = format!("rules: [{{name: a, limit: {}}}, {{name: b, limit: {}}}]", a.yaml(), b.yaml());
        let limiter = LocalRateLimiter::new(RateLimitConfig::from_yaml(&yaml).unwrap());
        let mut all: Vec<Timestamp> = run(&limiter, &steps).into_values().flatten().collect();
        all.sort();
        check_windows(&all, &a, 1)?;
        check_windows(&all, &b, 1)?;
    }

    #[test]
    fn per_key_bounds_hold_with_bounded_memory(shape in shape(), max_keys in 1usize..8, steps in steps()) {
        let yaml = format!(
            "rules: [{{name: k, key: [{{header: x-key}}], max_keys: {max_keys}, limit: {}}}]",
            shape.yaml()
        );
        let limiter = LocalRateLimiter::new(RateLimitConfig::from_yaml(&yaml).unwrap());
        let admitted = run(&limiter, &steps);
        prop_assert!(limiter.keys_in_use("k").unwrap() <= max_keys);
        // Six possible keys: with room for all, each key is exactly one bucket; with less,
        // a key may also draw from the shared overflow bucket.
        let buckets = if max_keys >= 6 { 1 } else { 2 };
        for times in admitted.values() {
            check_windows(times, &shape, buckets)?;
        }
    }
}
