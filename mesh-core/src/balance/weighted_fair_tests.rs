use proptest::prelude::*;

use super::*;

fn endpoints(weights: &[u32]) -> Vec<Endpoint> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            Endpoint::new(
                format!("10.0.{}.{}:80", i / 250, i % 250 + 1)
                    .parse()
                    .unwrap(),
            )
            .with_weight(w)
        })
        .collect()
}

fn picks(weights: &[u32], n: usize) -> Vec<usize> {
    let eps = endpoints(weights);
    let all: Vec<usize> = (0..eps.len()).collect();
    let mut wf = WeightedFair::new();
    wf.update(&eps, &vec![None; eps.len()]);
    (0..n)
        .map(|_| {
            wf.pick(&eps, &Candidates::new(0, &all), &PickContext::new())
                .unwrap()
        })
        .collect()
}

/// WF²Q written the obvious way: scan every candidate on every pick.
fn reference(weights: &[u32], n: usize) -> Vec<usize> {
    let w: Vec<u128> = weights.iter().map(|&w| u128::from(w.max(1))).collect();
    let total: u128 = w.iter().sum();
    let mut served = vec![0u128; w.len()];
    (0..n as u128)
        .map(|k| {
            let mut best: Option<usize> = None;
            for i in 0..w.len() {
                if served[i] * total > k * w[i] {
                    continue; // ahead of its share: not eligible
                }
                let earlier = |b: usize| (served[i] + 1) * w[b] < (served[b] + 1) * w[i];
                if best.is_none_or(earlier) {
                    best = Some(i);
                }
            }
            let chosen = best.expect("some candidate is always eligible");
            served[chosen] += 1;
            chosen
        })
        .collect()
}

#[test]
fn small_sequences() {
    assert_eq!(picks(&[3, 1], 8), [0, 1, 0, 0, 0, 1, 0, 0]);
    assert_eq!(picks(&[5, 1, 1], 7), [0, 1, 0, 0, 2, 0, 0]);
    assert_eq!(picks(&[1, 1, 1], 6), [0, 1, 2, 0, 1, 2]);
    // Zero weight counts as one.
    assert_eq!(picks(&[0, 2], 3), [1, 0, 1]);
    assert_eq!(picks(&[7], 3), [0, 0, 0]);
}

#[test]
fn heavy_endpoint_does_not_starve_light_ones() {
    // Plain EDF would pick the heavy endpoint 50 times before any light one.
    let mut weights = vec![50];
    weights.extend([1; 11]);
    let sequence = picks(&weights, 61);
    let first_light = sequence.iter().position(|&i| i != 0).unwrap();
    assert!(first_light <= 1, "{sequence:?}");
    assert_eq!(sequence.iter().filter(|&&i| i == 0).count(), 50);
}

#[test]
fn candidates_and_slots() {
    let eps = endpoints(&[1, 2, 3, 4]);
    let mut wf = WeightedFair::new();
    wf.update(&eps, &[None; 4]);
    let odd = [1, 3];
    let even = [0, 2];
    let mut counts = [0; 4];
    for _ in 0..12 {
        let a = wf.pick(&eps, &Candidates::new(0, &odd), &PickContext::new());
        let b = wf.pick(&eps, &Candidates::new(2, &even), &PickContext::new());
        counts[a.unwrap()] += 1;
        counts[b.unwrap()] += 1;
    }
    // Weights 2:4 and 1:3, two full periods each.
    assert_eq!(counts, [3, 4, 9, 8]);
    assert_eq!(
        wf.pick(&eps, &Candidates::new(0, &[]), &PickContext::new()),
        None
    );
    // An update restarts the schedules: the heaviest goes first again.
    wf.update(&eps, &[Some(0), Some(1), Some(2), Some(3)]);
    let all = [0, 1, 2, 3];
    assert_eq!(
        wf.pick(&eps, &Candidates::new(0, &all), &PickContext::new()),
        Some(3)
    );
    assert!(!wf.tracks_requests());
}

proptest! {
    /// Exact ratios per period, every count within one pick of its ideal share at every step,
    /// and the same sequence as the O(n) reference.
    #[test]
    fn fair_shares_and_matches_reference(
        weights in prop::collection::vec(0u32..=40, 1..16),
        n in 1usize..500,
    ) {
        let sequence = picks(&weights, n);
        prop_assert_eq!(&sequence, &reference(&weights, n));
        let w: Vec<f64> = weights.iter().map(|&w| f64::from(w.max(1))).collect();
        let total: f64 = w.iter().sum();
        let mut counts = vec![0u32; w.len()];
        for (k, &i) in sequence.iter().enumerate() {
            counts[i] += 1;
            let k = (k + 1) as f64;
            for (i, &c) in counts.iter().enumerate() {
                let ideal = k * w[i] / total;
                prop_assert!((f64::from(c) - ideal).abs() <= 1.0 + 1e-9,
                    "endpoint {i}: {c} picks after {k}, ideal {ideal:.3}");
            }
            if k % total == 0.0 {
                let periods = k / total;
                for (i, &c) in counts.iter().enumerate() {
                    prop_assert_eq!(f64::from(c), w[i] * periods);
                }
            }
        }
    }

    /// Scanning the class heads and keeping them in heaps choose alike.
    #[test]
    fn scan_and_heaps_agree(
        weights in prop::collection::vec(1u32..=30, 1..40),
        n in 1usize..400,
    ) {
        let eps = endpoints(&weights);
        let all: Vec<usize> = (0..eps.len()).collect();
        let mut scan = Schedule::with_scan_limit(&eps, &all, usize::MAX);
        let mut heaps = Schedule::with_scan_limit(&eps, &all, 0);
        prop_assert!(!scan.heaps && heaps.heaps);
        for k in 0..n {
            prop_assert_eq!(scan.next(), heaps.next(), "pick {}", k);
        }
    }

    /// Large sets of few distinct weights (the common shape) follow the reference too.
    #[test]
    fn many_endpoints_few_weights(
        classes in prop::collection::vec(1u32..6, 1..4),
        size in 1usize..120,
        n in 1usize..400,
    ) {
        let weights: Vec<u32> = (0..size).map(|i| classes[i % classes.len()]).collect();
        prop_assert_eq!(picks(&weights, n), reference(&weights, n));
    }
}
