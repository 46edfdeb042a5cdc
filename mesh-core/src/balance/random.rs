use super::{Algorithm, Candidates, PickContext};
use crate::{model::Endpoint, rng::Rng};

/// Weighted random choice (Istio's `RANDOM`): each candidate with probability
/// `weight / total weight`.
///
/// Stateless apart from the injected [`Rng`]; no coordination between replicas is needed for
/// an even spread, which is why Envoy recommends it for large fleets of callers.
#[derive(Clone, Debug)]
pub struct WeightedRandom<R> {
    rng: R,
}

impl<R: Rng> WeightedRandom<R> {
    /// Random choice driven by `rng`.
    pub fn new(rng: R) -> Self {
        Self { rng }
    }
}

impl<R: Rng> Algorithm for WeightedRandom<R> {
    fn update(&mut self, _endpoints: &[Endpoint], _previous: &[Option<usize>]) {}

    fn pick(
        &mut self,
        endpoints: &[Endpoint],
        candidates: &Candidates<'_>,
        _ctx: &PickContext,
    ) -> Option<usize> {
        let weight = |i: usize| {
            endpoints
                .get(i)
                .map_or(1, |e| u64::from(e.effective_weight()))
        };
        let total: u64 = candidates.indices().iter().map(|&i| weight(i)).sum();
        let mut point = self.rng.below(total);
        for &i in candidates.indices() {
            let w = weight(i);
            if point < w {
                return Some(i);
            }
            point -= w;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

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
