use super::{Algorithm, Candidates, PickContext, algorithm::SLOTS};
use crate::model::Endpoint;

/// Plain round robin: each candidate in turn, ignoring weights (Istio's `ROUND_ROBIN` with
/// equal weights; use [`WeightedFair`](super::WeightedFair) when weights differ).
///
/// One cursor per candidate set, so alternating locality levels do not skew either level.
/// Start replicas at different offsets ([`starting_at`](Self::starting_at) with a random value)
/// so that a fleet of clients does not send its first requests to the same endpoint.
#[derive(Clone, Debug, Default)]
pub struct RoundRobin {
    next: [usize; SLOTS],
}

impl RoundRobin {
    /// Round robin starting at the first candidate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Round robin starting at candidate `offset` (modulo the number of candidates).
    pub fn starting_at(offset: usize) -> Self {
        Self {
            next: [offset; SLOTS],
        }
    }
}

impl Algorithm for RoundRobin {
    fn update(&mut self, _endpoints: &[Endpoint], _previous: &[Option<usize>]) {
        // The cursors only need to keep moving; positions in a changed set are equally fair.
    }

    fn pick(
        &mut self,
        _endpoints: &[Endpoint],
        candidates: &Candidates<'_>,
        _ctx: &PickContext,
    ) -> Option<usize> {
        let n = candidates.len();
        if n == 0 {
            return None;
        }
        let cursor = self.next.get_mut(candidates.slot())?;
        // The cursor stays below `n`, so a pick needs no division; it is reduced once when the
        // set shrinks under it (or when a start offset is first used).
        if *cursor >= n {
            *cursor %= n;
        }
        let chosen = candidates.indices().get(*cursor).copied();
        *cursor += 1;
        if *cursor == n {
            *cursor = 0;
        }
        chosen
    }

    fn tracks_requests(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(rr: &mut RoundRobin, slot: usize, indices: &[usize]) -> Option<usize> {
        rr.pick(&[], &Candidates::new(slot, indices), &PickContext::new())
    }

    #[test]
    fn cycles_through_candidates() {
        let mut rr = RoundRobin::new();
        let picks: Vec<_> = (0..6).map(|_| pick(&mut rr, 0, &[2, 5, 7])).collect();
        assert_eq!(picks, [2, 5, 7, 2, 5, 7].map(Some));
        assert_eq!(pick(&mut rr, 0, &[]), None);
    }

    #[test]
    fn slots_have_independent_cursors() {
        let mut rr = RoundRobin::new();
        let mut a = Vec::new();
        for _ in 0..4 {
            a.push(pick(&mut rr, 0, &[0, 1]));
            let _ = pick(&mut rr, 2, &[4, 5, 6]);
        }
        assert_eq!(a, [0, 1, 0, 1].map(Some));
    }

    #[test]
    fn offset_shifts_the_start() {
        let mut rr = RoundRobin::starting_at(4);
        assert_eq!(pick(&mut rr, 0, &[0, 1, 2]), Some(1));
        let mut rr = RoundRobin::starting_at(usize::MAX);
        assert!(pick(&mut rr, 0, &[0, 1, 2]).is_some());
    }

    #[test]
    fn every_candidate_once_per_cycle_as_the_set_changes() {
        let mut rr = RoundRobin::starting_at(5);
        for n in [7usize, 3, 1, 4, 9, 2] {
            let set: Vec<usize> = (0..n).collect();
            let mut seen: Vec<usize> = (0..n).filter_map(|_| pick(&mut rr, 1, &set)).collect();
            seen.sort_unstable();
            assert_eq!(seen, set, "each of {n} candidates once per {n} picks");
        }
    }
}
