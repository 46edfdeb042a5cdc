use super::{Algorithm, Candidates, PickContext, RoundRobin, SmoothWeighted};
use crate::model::Endpoint;

/// Round robin that switches to smooth weighted round robin while weights differ.
///
/// This is what [`Policy::RoundRobin`](super::Policy::RoundRobin) builds: plain round robin
/// costs O(1) per pick, the weighted one O(candidates), and most services have equal weights.
#[derive(Clone, Debug, Default)]
pub struct WeightAware {
    plain: RoundRobin,
    weighted: SmoothWeighted,
    uniform: bool,
}

impl WeightAware {
    /// Starts plain round robin at `offset`.
    pub fn new(offset: u64) -> Self {
        Self {
            plain: RoundRobin::starting_at(offset as usize),
            weighted: SmoothWeighted::new(),
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
}
