use super::{Algorithm, Candidates, PickContext, algorithm::carry_over};
use crate::model::Endpoint;

/// Smooth weighted round robin, as nginx does it: exact weight ratios, interleaved.
///
/// Each pick adds every candidate's weight to its running score, chooses the highest score and
/// subtracts the total weight from it. Over any `W` consecutive picks from a fixed set (`W` the
/// total weight) each endpoint is chosen exactly `weight` times, and heavy endpoints are spread
/// out (`a a b a` for weights 3:1 becomes `a a b a`, never `a a a b`). Scores are per endpoint
/// and survive updates for endpoints that remain.
///
/// Every pick touches every candidate's score, so it costs O(n): fine for small sets or when
/// the exact nginx sequence matters; [`WeightedFair`](super::WeightedFair) gives the same
/// guarantees in O(log n) and is what [`Policy::RoundRobin`](super::Policy::RoundRobin) uses.
#[derive(Clone, Debug, Default)]
pub struct SmoothWeighted {
    current: Vec<i64>,
}

impl SmoothWeighted {
    /// A balancer with no state yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The running score of `endpoints[index]`, for tests and debugging.
    pub fn score(&self, index: usize) -> Option<i64> {
        self.current.get(index).copied()
    }
}

impl Algorithm for SmoothWeighted {
    fn update(&mut self, _endpoints: &[Endpoint], previous: &[Option<usize>]) {
        self.current = carry_over(&self.current, previous, || 0);
    }

    fn pick(
        &mut self,
        endpoints: &[Endpoint],
        candidates: &Candidates<'_>,
        _ctx: &PickContext,
    ) -> Option<usize> {
        if self.current.len() < endpoints.len() {
            self.current.resize(endpoints.len(), 0);
        }
        let mut total: i64 = 0;
        let mut best: Option<(usize, i64)> = None;
        for &i in candidates.indices() {
            let weight = i64::from(endpoints.get(i)?.effective_weight());
            total = total.saturating_add(weight);
            let score = self.current.get_mut(i)?;
            *score = score.saturating_add(weight);
            if best.is_none_or(|(_, s)| *score > s) {
                best = Some((i, *score));
            }
        }
        let (chosen, _) = best?;
        let score = self.current.get_mut(chosen)?;
        *score = score.saturating_sub(total);
        Some(chosen)
    }

    fn tracks_requests(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(weights: &[u32]) -> Vec<Endpoint> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                Endpoint::new(format!("10.0.0.{}:80", i + 1).parse().unwrap()).with_weight(w)
            })
            .collect()
    }

    #[test]
    fn nginx_sequence_for_5_1_1() {
        let eps = endpoints(&[5, 1, 1]);
        let mut wrr = SmoothWeighted::new();
        wrr.update(&eps, &[None, None, None]);
        let all = [0, 1, 2];
        let picks: Vec<_> = (0..7)
            .filter_map(|_| wrr.pick(&eps, &Candidates::new(0, &all), &PickContext::new()))
            .collect();
        // The sequence from nginx's commit introducing the algorithm.
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
        assert!(
            (0..3).all(|i| wrr.score(i) == Some(0)),
            "scores return to 0"
        );
    }

    #[test]
    fn zero_weight_counts_as_one_and_state_survives_updates() {
        let eps = endpoints(&[0, 1]);
        let mut wrr = SmoothWeighted::new();
        wrr.update(&eps, &[None, None]);
        let all = [0, 1];
        let c = Candidates::new(0, &all);
        assert_eq!(wrr.pick(&eps, &c, &PickContext::new()), Some(0));
        let score_of_second = wrr.score(1);
        // Reverse the set: the second endpoint's score moves with it.
        let reversed: Vec<_> = eps.iter().rev().cloned().collect();
        wrr.update(&reversed, &[Some(1), Some(0)]);
        assert_eq!(wrr.score(0), score_of_second);
        assert_eq!(wrr.pick(&reversed, &c, &PickContext::new()), Some(0));
    }

    #[test]
    fn empty_candidates() {
        let mut wrr = SmoothWeighted::new();
        assert_eq!(
            wrr.pick(&[], &Candidates::new(0, &[]), &PickContext::new()),
            None
        );
    }
}
