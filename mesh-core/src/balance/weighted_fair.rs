use std::{cmp::Ordering, collections::BinaryHeap};

use super::{Algorithm, Candidates, PickContext, slot_cache::SlotCache};
use crate::model::Endpoint;

/// Weighted round robin in O(log w) per pick (`w` the number of distinct weights), scheduled
/// as worst-case fair weighted fair queueing (WF²Q) does it.
///
/// Think of the candidates sharing a clock that advances `1 / W` per pick (`W` the total
/// weight). A candidate of weight `w` that has been picked `n` times is *eligible* once the
/// clock reaches `n / w` (it is not ahead of its share), and *due* at `(n + 1) / w`; each pick
/// takes the eligible candidate due first (ties: the earlier candidate). That gives:
///
/// - exact ratios: over every `W` picks from a fixed set, each candidate is chosen exactly
///   `weight` times;
/// - smoothness: after any `k` picks each candidate's count is within one pick of its ideal
///   `k * weight / W`, so heavy endpoints are spread out (3:1 gives `a b a a`), where plain
///   earliest-deadline-first (Envoy's) can bunch them;
/// - cheap picks whatever the number of endpoints: candidates of equal weight take their turns
///   in a fixed order, so the scheduler tracks one head per distinct weight (scanned when there
///   are at most 8, kept in heaps beyond), not per endpoint.
///
/// [`SmoothWeighted`](super::SmoothWeighted) (nginx) also gives exact ratios with interleaving,
/// but costs O(n) per pick. Schedules are per candidate set (locality level and panic state)
/// and start afresh when the set changes; [`WeightAware`](super::WeightAware) (what
/// [`Policy::RoundRobin`](super::Policy::RoundRobin) builds) uses this for weighted sets.
///
/// ```
/// use std::sync::Arc;
/// use mesh_core::balance::{Balancer, LoadBalancer, PickContext, PriorityConfig, WeightedFair};
/// use mesh_core::model::Endpoint;
///
/// let mut lb = LoadBalancer::new(WeightedFair::new(), PriorityConfig::default());
/// lb.update(Arc::from(vec![
///     Endpoint::new("10.0.0.1:80".parse().unwrap()).with_weight(3),
///     Endpoint::new("10.0.0.2:80".parse().unwrap()),
/// ]));
/// let picks: Vec<_> = (0..8).filter_map(|_| lb.pick(&PickContext::new())).collect();
/// assert_eq!(picks, [0, 1, 0, 0, 0, 1, 0, 0]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct WeightedFair {
    schedules: SlotCache<Schedule>,
}

impl WeightedFair {
    /// A scheduler with no state yet.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Algorithm for WeightedFair {
    fn update(&mut self, _endpoints: &[Endpoint], _previous: &[Option<usize>]) {
        // Indices and weights may have changed: schedules restart on the next pick.
        self.schedules.clear();
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
        let schedule = self
            .schedules
            .get_or_build(candidates, |members| Schedule::new(endpoints, members))?;
        let position = schedule.next()?;
        candidates.indices().get(position).copied()
    }

    fn tracks_requests(&self) -> bool {
        false
    }
}

/// The candidates of one weight. Those before `cursor` have been picked `round + 1` times,
/// the others `round` times; the one at `cursor` (the class's *head*) is the class's next.
#[derive(Clone, Debug)]
struct Class {
    weight: u64,
    /// Candidate positions, ascending.
    members: Vec<usize>,
    cursor: usize,
    round: u64,
}

impl Class {
    fn head(&self) -> usize {
        self.members.get(self.cursor).copied().unwrap_or(usize::MAX)
    }

    /// The head was picked: the next member becomes the head.
    fn advance(&mut self) {
        self.cursor += 1;
        if self.cursor >= self.members.len() {
            self.cursor = 0;
            self.round += 1;
        }
    }
}

/// A class's head in a heap, keyed by the time `picks / weight` (its eligibility time in the
/// waiting heap, `picks` = times picked; its due time in the eligible heap, `picks` = times
/// picked + 1). The heap's top is the earliest time, then the lowest position.
#[derive(Clone, Copy, Debug)]
struct Entry {
    picks: u64,
    weight: u64,
    position: usize,
    class: usize,
}

impl Entry {
    /// Exact comparison of `picks / weight` between entries (products of u64s fit in u128).
    fn time_cmp(&self, other: &Self) -> Ordering {
        let lhs = u128::from(self.picks) * u128::from(other.weight);
        let rhs = u128::from(other.picks) * u128::from(self.weight);
        lhs.cmp(&rhs)
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Reversed, so that `BinaryHeap` (a max-heap) yields the earliest entry first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .time_cmp(self)
            .then_with(|| other.position.cmp(&self.position))
    }
}

/// Up to this many distinct weights, a pick scans the class heads instead of keeping heaps:
/// fewer operations, and the same choice.
const SCAN_LIMIT: usize = 8;

/// One candidate set's WF²Q state.
#[derive(Clone, Debug)]
struct Schedule {
    classes: Vec<Class>,
    /// Whether the heaps below are in use (more than [`SCAN_LIMIT`] classes).
    heaps: bool,
    /// Total weight `W`.
    total: u64,
    /// Picks made so far: the clock reads `picks / W`.
    picks: u64,
    /// Heads that are eligible, keyed by due time.
    eligible: BinaryHeap<Entry>,
    /// Heads that are not yet eligible, keyed by eligibility time.
    waiting: BinaryHeap<Entry>,
}

impl Schedule {
    fn new(endpoints: &[Endpoint], members: &[usize]) -> Self {
        Self::with_scan_limit(endpoints, members, SCAN_LIMIT)
    }

    fn with_scan_limit(endpoints: &[Endpoint], members: &[usize], scan_limit: usize) -> Self {
        let weight = |i: usize| {
            endpoints
                .get(i)
                .map_or(1, |e| u64::from(e.effective_weight()))
        };
        let mut by_weight: Vec<(u64, usize)> = members
            .iter()
            .enumerate()
            .map(|(position, &i)| (weight(i), position))
            .collect();
        by_weight.sort_unstable();
        let mut classes: Vec<Class> = Vec::new();
        for (weight, position) in by_weight {
            match classes.last_mut() {
                Some(class) if class.weight == weight => class.members.push(position),
                _ => classes.push(Class {
                    weight,
                    members: vec![position],
                    cursor: 0,
                    round: 0,
                }),
            }
        }
        let total = classes.iter().fold(0u64, |sum, c| {
            sum.saturating_add(c.weight.saturating_mul(c.members.len() as u64))
        });
        let heaps = classes.len() > scan_limit;
        // Nothing picked yet: every head is eligible (0 / w <= 0 / W) and due at 1 / w.
        let eligible = classes
            .iter()
            .enumerate()
            .filter(|_| heaps)
            .map(|(class, c)| Entry {
                picks: 1,
                weight: c.weight,
                position: c.head(),
                class,
            })
            .collect();
        Self {
            classes,
            heaps,
            total,
            picks: 0,
            eligible,
            waiting: BinaryHeap::new(),
        }
    }

    /// Whether a head picked `picks` times with `weight` is eligible once `after` picks are
    /// made: `picks / weight <= after / total`.
    fn is_eligible(&self, picks: u64, weight: u64, after: u64) -> bool {
        u128::from(picks) * u128::from(self.total) <= u128::from(after) * u128::from(weight)
    }

    /// The candidate position to pick next.
    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.heaps {
            self.next_from_heaps()
        } else {
            self.next_by_scan()
        }
    }

    /// WF²Q by looking at every class head: O(classes).
    fn next_by_scan(&mut self) -> Option<usize> {
        let (picks, total) = (u128::from(self.picks), u128::from(self.total));
        // (class, due numerator, weight, head position) of the best eligible head so far.
        let mut best: Option<(usize, u128, u128, usize)> = None;
        for (index, class) in self.classes.iter().enumerate() {
            let (round, weight) = (u128::from(class.round), u128::from(class.weight));
            if round * total > picks * weight {
                continue; // ahead of its share
            }
            let head = class.head();
            let earlier = best.is_none_or(|(_, due, due_weight, best_head)| {
                // Due times (round + 1) / weight, compared exactly; ties go to the earlier
                // candidate.
                let (mine, theirs) = ((round + 1) * due_weight, due * weight);
                mine < theirs || (mine == theirs && head < best_head)
            });
            if earlier {
                best = Some((index, round + 1, weight, head));
            }
        }
        let (index, ..) = best?;
        let class = self.classes.get_mut(index)?;
        let chosen = class.head();
        class.advance();
        self.picks += 1;
        Some(chosen)
    }

    /// WF²Q with the heads in two heaps: O(log classes).
    fn next_from_heaps(&mut self) -> Option<usize> {
        while let Some(top) = self.waiting.peek() {
            if !self.is_eligible(top.picks, top.weight, self.picks) {
                break;
            }
            let mut entry = self.waiting.pop()?;
            entry.picks += 1;
            self.eligible.push(entry);
        }
        // Some head is always eligible: if every candidate were ahead of its share, the
        // candidates would have been picked more often than there were picks.
        let mut top = self.eligible.peek_mut()?;
        let chosen = top.position;
        let class = self.classes.get_mut(top.class)?;
        class.advance();
        let (picks, weight, position) = (class.round, class.weight, class.head());
        self.picks += 1;
        if u128::from(picks) * u128::from(self.total) <= u128::from(self.picks) * u128::from(weight)
        {
            // The class's new head is eligible already: replace the top in place.
            *top = Entry {
                picks: picks + 1,
                weight,
                position,
                class: top.class,
            };
        } else {
            let class = top.class;
            std::collections::binary_heap::PeekMut::pop(top);
            self.waiting.push(Entry {
                picks,
                weight,
                position,
                class,
            });
        }
        Some(chosen)
    }
}

#[cfg(test)]
#[path = "weighted_fair_tests.rs"]
mod tests;
