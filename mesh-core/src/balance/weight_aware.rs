use super::{Algorithm, Candidates, PickContext, RoundRobin, WeightedFair};
use crate::model::Endpoint;

/// Round robin that switches to weighted fair scheduling while weights differ.
///
/// This is what [`Policy::RoundRobin`](super::Policy::RoundRobin) builds: plain round robin
/// while all weights are equal (most services), [`WeightedFair`] otherwise. Both cost O(1) to
/// O(log n) per pick; the weighted one honours weights exactly over each period of `W` picks
/// (the total weight) and interleaves heavy endpoints with light ones.
#[derive(Clone, Debug, Default)]
pub struct WeightAware {
    plain: RoundRobin,
    weighted: WeightedFair,
    uniform: bool,
}

impl WeightAware {
    /// Starts plain round robin at `offset`.
    pub fn new(offset: u64) -> Self {
        Self {
            plain: RoundRobin::starting_at(offset as usize),
            weighted: WeightedFair::new(),
            uniform: true,
        }
    }
}

impl Algorithm for WeightAware {
    fn update(&mut self, endpoints: &[Endpoint], previous: &[Option<usize>]) {
        let first = endpoints.first().map(Endpoint::effective_weight);
        self.uniform = endpoints
            .iter()
            .all(|e| Some(e.effective_weight()) == first);
        self.plain.update(endpoints, previous);
        self.weighted.update(endpoints, previous);
    }

    fn pick(
        &mut self,
        endpoints: &[Endpoint],
        candidates: &Candidates<'_>,
        ctx: &PickContext,
    ) -> Option<usize> {
        if self.uniform {
            self.plain.pick(endpoints, candidates, ctx)
        } else {
            self.weighted.pick(endpoints, candidates, ctx)
        }
    }

    fn tracks_requests(&self) -> bool {
        false
    }
}
