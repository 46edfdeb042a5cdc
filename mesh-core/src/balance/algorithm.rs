use std::time::Duration;

use super::PickContext;
use crate::model::Endpoint;

/// Number of distinct candidate sets: one healthy and one panic set per priority level (and
/// one per `distribute` locality group, which all live in one level).
pub const SLOTS: usize = super::MAX_LEVELS * 2;

/// The endpoints one pick may choose from, as indices into the endpoint set.
///
/// [`LoadBalancer`](super::LoadBalancer) decides which locality level serves a pick and whether
/// that level is in panic; the result is one of [`SLOTS`] candidate sets, each with a stable
/// [`slot`](Self::slot) number. Algorithms keep per-slot state (a round-robin cursor, a hash
/// ring) so that alternating between levels does not disturb either.
///
/// A set may carry a [`generation`](Self::generation): a stamp that changes whenever the
/// balancer recomputes its sets, so an algorithm can tell that a cached structure for the slot
/// is still current without comparing every index (which would cost O(n) per pick).
#[derive(Clone, Copy, Debug)]
pub struct Candidates<'a> {
    slot: usize,
    indices: &'a [usize],
    generation: u64,
}

impl<'a> Candidates<'a> {
    /// A candidate set without a generation; `slot` must be below [`SLOTS`] (larger values are
    /// treated as the last).
    pub fn new(slot: usize, indices: &'a [usize]) -> Self {
        Self::with_generation(slot, indices, 0)
    }

    /// A candidate set stamped with `generation`. The stamp is a promise: two sets with the
    /// same slot and the same non-zero generation, handed to the same algorithm between two
    /// of its [`update`](Algorithm::update)s, have the same indices. Zero means "unknown".
    pub fn with_generation(slot: usize, indices: &'a [usize], generation: u64) -> Self {
        Self {
            slot: slot.min(SLOTS - 1),
            indices,
            generation,
        }
    }

    /// The set's generation stamp, or 0 if it has none (see
    /// [`with_generation`](Self::with_generation)).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Which candidate set this is, in `0..SLOTS`.
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// Indices into the endpoint set, in ascending order.
    pub fn indices(&self) -> &'a [usize] {
        self.indices
    }

    /// Number of candidates.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// True if there is nothing to choose from.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// A balancing algorithm: chooses among candidates that health and locality already filtered.
///
/// Implementations hold per-endpoint state in vectors aligned with the endpoint set and realign
/// them in [`update`](Self::update). They are wrapped by [`LoadBalancer`](super::LoadBalancer),
/// which implements [`Balancer`](super::Balancer); implement this trait to add a policy.
pub trait Algorithm {
    /// The endpoint set changed to `endpoints`. `previous[i]` is the old index of `endpoints[i]`
    /// (matched by address) or `None` if it is new; state for matched endpoints must be kept.
    fn update(&mut self, endpoints: &[Endpoint], previous: &[Option<usize>]);

    /// Chooses one of `candidates`, returning its index in `endpoints`. Must return an element
    /// of `candidates.indices()` or `None`.
    fn pick(
        &mut self,
        endpoints: &[Endpoint],
        candidates: &Candidates<'_>,
        ctx: &PickContext,
    ) -> Option<usize>;

    /// A request to `endpoints[index]` started.
    fn on_start(&mut self, index: usize) {
        let _ = index;
    }

    /// A request to `endpoints[index]` finished after `latency`.
    fn on_complete(&mut self, index: usize, latency: Duration) {
        let _ = (index, latency);
    }

    /// Whether [`on_start`](Self::on_start) and [`on_complete`](Self::on_complete) do anything.
    /// Algorithms that ignore request events return `false`, which spares the
    /// [`LoadBalancer`](super::LoadBalancer) resolving each event's address to an index. The
    /// answer must not change over the algorithm's life: the balancer reads it once.
    fn tracks_requests(&self) -> bool {
        true
    }
}

/// Realigns per-endpoint state after an update: matched endpoints keep theirs, new ones get
/// `fresh()`.
pub(crate) fn carry_over<S: Clone>(
    old: &[S],
    previous: &[Option<usize>],
    mut fresh: impl FnMut() -> S,
) -> Vec<S> {
    previous
        .iter()
        .map(|p| {
            p.and_then(|i| old.get(i).cloned())
                .unwrap_or_else(&mut fresh)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carry_over_keeps_matched_state() {
        let old = vec!["a", "b", "c"];
        let new = carry_over(&old, &[Some(2), None, Some(0), Some(9)], || "new");
        assert_eq!(new, vec!["c", "new", "a", "new"]);
    }

    #[test]
    fn candidates_clamp_slot() {
        let c = Candidates::new(100, &[1, 2]);
        assert_eq!(c.slot(), SLOTS - 1);
        assert_eq!(c.len(), 2);
        assert!(!c.is_empty());
        assert_eq!(c.indices(), &[1, 2]);
        assert_eq!(c.generation(), 0);
        assert_eq!(Candidates::with_generation(1, &[], 7).generation(), 7);
    }
}
