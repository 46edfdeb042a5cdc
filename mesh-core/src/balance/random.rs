use super::{Algorithm, Candidates, PickContext, guided::GuidedKeys, slot_cache::SlotCache};
use crate::{model::Endpoint, rng::Rng};

/// Weighted random choice (Istio's `RANDOM`): each candidate with probability
/// `weight / total weight`.
///
/// Stateless apart from the injected [`Rng`]; no coordination between replicas is needed for
/// an even spread, which is why Envoy recommends it for large fleets of callers.
///
/// A pick draws one point below the total weight and takes the candidate whose stretch of the
/// cumulative weights holds it. The cumulative weights are computed once per candidate set and
/// searched through a guide table, so a pick costs O(1) expected (a single draw and an index
/// when all weights are equal) rather than a walk over the candidates; the choice for a given
/// draw is the same as the walk's.
#[derive(Clone, Debug)]
pub struct WeightedRandom<R> {
    rng: R,
    samplers: SlotCache<Sampler>,
}

/// How one candidate set maps a point below its total weight to a candidate position.
#[derive(Clone, Debug)]
enum Sampler {
    /// Every candidate has this weight: the position is `point / weight`.
    Uniform { weight: u64, total: u64 },
    /// `ends[i]` is the sum of the weights of candidates `0..=i`: the position is the first
    /// `i` whose end is above the point.
    Cumulative { ends: GuidedKeys, total: u64 },
}

impl Sampler {
    fn build(endpoints: &[Endpoint], members: &[usize]) -> Self {
        let weight = |i: usize| {
            endpoints
                .get(i)
                .map_or(1, |e| u64::from(e.effective_weight()))
        };
        let first = members.first().map_or(1, |&i| weight(i));
        if members.iter().all(|&i| weight(i) == first) {
            return Self::Uniform {
                weight: first,
                total: first.saturating_mul(members.len() as u64),
            };
        }
        let mut total = 0u64;
        let ends = members
            .iter()
            .map(|&i| {
                total = total.saturating_add(weight(i));
                total
            })
            .collect();
        Self::Cumulative {
            ends: GuidedKeys::new(ends),
            total,
        }
    }

    fn total(&self) -> u64 {
        match self {
            Self::Uniform { total, .. } | Self::Cumulative { total, .. } => *total,
        }
    }

    /// The candidate position for `point < total`.
    #[inline]
    fn position(&self, point: u64) -> usize {
        match self {
            // Weight 1 (the default) needs no division.
            Self::Uniform { weight: 1, .. } => usize::try_from(point).unwrap_or(usize::MAX),
            Self::Uniform { weight, .. } => usize::try_from(point / weight).unwrap_or(usize::MAX),
            // The first end `>= point + 1`, i.e. `> point` (`point + 1 <= total` fits).
            Self::Cumulative { ends, .. } => ends.first_at_least(point.saturating_add(1)),
        }
    }
}

impl<R: Rng> WeightedRandom<R> {
    /// Random choice driven by `rng`.
    pub fn new(rng: R) -> Self {
        Self {
            rng,
            samplers: SlotCache::default(),
        }
    }
}

impl<R: Rng> Algorithm for WeightedRandom<R> {
    fn update(&mut self, _endpoints: &[Endpoint], _previous: &[Option<usize>]) {
        // Weights may have changed with the set.
        self.samplers.clear();
    }

    fn pick(
        &mut self,
        endpoints: &[Endpoint],
        candidates: &Candidates<'_>,
        _ctx: &PickContext,
    ) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        let sampler = self
            .samplers
            .get_or_build(candidates, |members| Sampler::build(endpoints, members))?;
        let point = self.rng.below(sampler.total());
        candidates.indices().get(sampler.position(point)).copied()
    }

    fn tracks_requests(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::rng::{Rng, SplitMix64};

    fn endpoints(weights: &[u32]) -> Vec<Endpoint> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Endpoint::new(format!("10.0.0.{i}:80").parse().unwrap()).with_weight(w))
            .collect()
    }

    /// The picker as it was before samplers: walk the candidates' cumulative weights.
    fn walk(rng: &mut SplitMix64, endpoints: &[Endpoint], indices: &[usize]) -> Option<usize> {
        let weight = |i: usize| u64::from(endpoints[i].effective_weight());
        let total: u64 = indices.iter().map(|&i| weight(i)).sum();
        let mut point = rng.below(total);
        for &i in indices {
            if point < weight(i) {
                return Some(i);
            }
            point -= weight(i);
        }
        None
    }

    proptest! {
        /// The same random stream picks the same endpoints as the walk, across slots and
        /// changing candidate sets.
        #[test]
        fn same_picks_as_the_walk(
            weights in prop::collection::vec(0u32..20, 1..40),
            subsets in prop::collection::vec((0usize..3, any::<u64>()), 1..6),
            seed in any::<u64>(),
        ) {
            let eps = endpoints(&weights);
            let mut random = WeightedRandom::new(SplitMix64::new(seed));
            let mut reference = SplitMix64::new(seed);
            for (generation, &(slot, mask)) in subsets.iter().enumerate() {
                let indices: Vec<usize> = (0..eps.len()).filter(|i| mask >> (i % 64) & 1 == 1).collect();
                let c = Candidates::with_generation(slot, &indices, generation as u64 + 1);
                for _ in 0..50 {
                    let expected = walk(&mut reference, &eps, &indices);
                    prop_assert_eq!(random.pick(&eps, &c, &PickContext::new()), expected);
                }
            }
        }
    }

    #[test]
    fn uniform_weights_and_updates() {
        let eps = endpoints(&[3, 3, 3]);
        let all = [0, 1, 2];
        let mut random = WeightedRandom::new(SplitMix64::new(4));
        let mut reference = SplitMix64::new(4);
        for _ in 0..100 {
            let c = Candidates::new(0, &all);
            let expected = walk(&mut reference, &eps, &all);
            assert_eq!(random.pick(&eps, &c, &PickContext::new()), expected);
        }
        // New weights for the same indices take effect after the update.
        let heavy = endpoints(&[1, 1000, 1]);
        random.update(&heavy, &[Some(0), Some(1), Some(2)]);
        let picks: Vec<_> = (0..50)
            .filter_map(|_| random.pick(&heavy, &Candidates::new(0, &all), &PickContext::new()))
            .collect();
        assert!(picks.iter().filter(|&&i| i == 1).count() >= 45, "{picks:?}");
        assert!(!random.tracks_requests());
    }

    #[test]
    fn follows_weights() {
        let eps: Vec<Endpoint> = [1u32, 3]
            .iter()
            .enumerate()
            .map(|(i, &w)| Endpoint::new(format!("10.0.0.{i}:80").parse().unwrap()).with_weight(w))
            .collect();
        let mut random = WeightedRandom::new(SplitMix64::new(11));
        let all = [0, 1];
        let mut counts = [0u32; 2];
        for _ in 0..40_000 {
            let i = random
                .pick(&eps, &Candidates::new(0, &all), &PickContext::new())
                .unwrap();
            counts[i] += 1;
        }
        assert!((9_000..11_000).contains(&counts[0]), "{counts:?}");
        assert_eq!(
            random.pick(&eps, &Candidates::new(0, &[]), &PickContext::new()),
            None
        );
        // Only the candidates are eligible.
        let only = [1];
        assert_eq!(
            random.pick(&eps, &Candidates::new(0, &only), &PickContext::new()),
            Some(1)
        );
    }
}
