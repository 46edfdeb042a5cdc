//! Locality-aware priority levels, failover and panic mode, computed as Envoy does.
//!
//! By default endpoints are grouped by how closely their locality matches the caller's
//! ([`LocalityMatch`]): level 0 shares the subzone, 1 the zone, 2 the region, 3 nothing. Istio's
//! `localityLbSetting` rules ([`LocalityRules`]) change the grouping: `failover` adds a level for
//! other regions after the failover target, `failoverPriority` ranks by matching labels (up to
//! [`MAX_LEVELS`] levels), and `distribute` puts everything in one level split into weighted
//! locality groups (istiod's rules are described on [`LocalityRules`]). Each level gets a share
//! of the traffic:
//!
//! 1. A level's *health* is `min(100, overprovisioning% * healthy / total)`: with the default
//!    factor of 140%, a level still counts as fully healthy down to ~72% healthy endpoints.
//!    A level with any healthy endpoint has a health of at least 1, where Envoy's integer
//!    division would round it down to 0 and starve the only endpoints that can serve.
//! 2. Levels are filled in order: level 0 takes `health_0`% of the load, the next level takes up to
//!    its health from what is left, and so on. When the healths add up to less than 100 the
//!    shares are scaled up so they still sum to 100 (rounding leftovers go to the first level
//!    with healthy endpoints).
//! 3. Panic: if the levels' healths add up to less than 100, a level whose healthy share is below
//!    the panic threshold (default 50%) balances across *all* its endpoints, healthy or not, so
//!    that a few survivors are not crushed. If every level is in panic, the load is split by
//!    endpoint count instead.
//!
//! Only `Healthy`, non-ejected endpoints count as healthy; `Draining` endpoints (and endpoints
//! outside every `distribute` target) are left out entirely. With `distribute`, a level not in
//! panic first chooses a locality group by its weight times its availability (Envoy's effective
//! locality weight), then an endpoint among the group's healthy ones.
//!
//! A pick chooses its level by the consistent-hash key when there is one (so a key sticks to a
//! level) and otherwise by a smooth weighted round robin over the level shares, which hits the
//! shares exactly without needing randomness. A retry may avoid levels already tried
//! ([`PreviousPriorities`](super::PreviousPriorities)): its shares are recomputed with those
//! levels' health at zero, without allocating.

use super::{
    BalanceConfigError, Candidates, HashKey,
    locality_rules::{self, LocalityRules, MAX_GROUPS, MAX_LEVELS},
    priority_load::{self, Counts, PriorityLoad},
};
use crate::{
    model::{Endpoint, Health, Locality, LocalityMatch},
    rng::mix64,
};

/// Number of locality levels without `failover` or `failoverPriority` rules.
pub const LEVELS: usize = LocalityMatch::LEVELS;

/// How a [`LoadBalancer`](super::LoadBalancer) prefers local endpoints and when it panics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriorityConfig {
    /// The caller's own locality. If unknown (empty region), all endpoints share one level
    /// unless [`rules`](Self::rules) say otherwise.
    pub local: Locality,
    /// Envoy's overprovisioning factor in percent (default 140).
    pub overprovisioning_percent: u32,
    /// Envoy's healthy panic threshold in percent (default 50; 0 disables panic mode). Istio's
    /// `outlierDetection.minHealthPercent` maps here.
    pub panic_threshold_percent: u32,
    /// Istio's `localityLbSetting` rules (`distribute`, `failover`, `failoverPriority`) and the
    /// caller's labels; the default is subzone, zone, region, then the rest.
    pub rules: LocalityRules,
}

impl Default for PriorityConfig {
    fn default() -> Self {
        Self {
            local: Locality::default(),
            overprovisioning_percent: 140,
            panic_threshold_percent: 50,
            rules: LocalityRules::default(),
        }
    }
}

impl PriorityConfig {
    /// The defaults, preferring endpoints near `local`.
    pub fn local_to(local: Locality) -> Self {
        Self {
            local,
            ..Self::default()
        }
    }

    /// The same configuration with locality `rules`.
    #[must_use]
    pub fn with_rules(mut self, rules: LocalityRules) -> Self {
        self.rules = rules;
        self
    }

    /// Checks the percentages: the panic threshold is at most 100, the factor at least 1.
    pub fn validate(&self) -> Result<(), BalanceConfigError> {
        if self.panic_threshold_percent > 100 {
            return Err(BalanceConfigError::Percentage {
                field: "panic threshold",
                value: self.panic_threshold_percent,
                min: 0,
                max: 100,
            });
        }
        if self.overprovisioning_percent == 0 {
            return Err(BalanceConfigError::Percentage {
                field: "overprovisioning factor",
                value: 0,
                min: 1,
                max: u32::MAX,
            });
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default)]
struct Level {
    /// Endpoints at this level that may be picked (not draining).
    all: Vec<usize>,
    /// Healthy, non-ejected endpoints at this level.
    healthy: Vec<usize>,
}

/// `distribute`'s weighted locality groups (all in level 0).
#[derive(Clone, Debug, Default)]
struct Groups {
    /// Healthy, non-ejected endpoints of each group.
    healthy: Vec<Vec<usize>>,
    /// Each group's weight scaled by its availability (Envoy's effective locality weight).
    weights: [u64; MAX_GROUPS],
    total: u64,
    /// Smooth weighted round robin state over the groups.
    current: [i64; MAX_GROUPS],
}

/// The levels and their shares for one endpoint set and ejection state.
#[derive(Clone, Debug)]
pub(crate) struct Priorities {
    levels: Vec<Level>,
    /// Level of each endpoint index (`u8::MAX`: never picked).
    level_of: Vec<u8>,
    load: PriorityLoad,
    /// Each level's health, for retries that avoid some levels.
    health: [u64; MAX_LEVELS],
    /// Smooth weighted round robin state for choosing a level without a hash key.
    current: [i64; MAX_LEVELS],
    /// The level with all the load, if one has (the common case): no level choice to make.
    sole: Option<usize>,
    groups: Option<Groups>,
    /// Draws for retries that avoid levels (their shares change per retry, so the round robin
    /// above does not apply; a mixed counter spreads them instead).
    draws: u64,
    /// Stamp for the candidate sets handed out (see [`Candidates::generation`]).
    generation: u64,
}

impl Priorities {
    pub(crate) fn new(endpoints: &[Endpoint], ejected: &[bool], config: &PriorityConfig) -> Self {
        let plan = if config.local.is_unknown() && config.rules == LocalityRules::default() {
            None
        } else {
            Some(locality_rules::plan(
                &config.rules,
                &config.local,
                endpoints,
            ))
        };
        let count = plan.as_ref().map_or(LEVELS, |p| p.levels);
        let mut levels = vec![Level::default(); count];
        let mut level_of = vec![u8::MAX; endpoints.len()];
        let mut groups = plan.as_ref().and_then(|p| p.groups.as_ref()).map(|(_, w)| {
            let mut g = Groups {
                healthy: vec![Vec::new(); w.len()],
                ..Groups::default()
            };
            g.weights.iter_mut().zip(w).for_each(|(a, b)| *a = *b);
            g
        });
        let mut group_counts = [Counts::default(); MAX_GROUPS];
        for (i, endpoint) in endpoints.iter().enumerate() {
            if endpoint.health == Health::Draining {
                continue;
            }
            let level = match &plan {
                None => 0,
                Some(p) => match p.level_of.get(i).copied().flatten() {
                    Some(level) => usize::from(level),
                    None => continue,
                },
            };
            let Some(group) = levels.get_mut(level) else {
                continue;
            };
            if let Some(slot) = level_of.get_mut(i) {
                *slot = level as u8;
            }
            group.all.push(i);
            let healthy =
                endpoint.health == Health::Healthy && !ejected.get(i).copied().unwrap_or(false);
            if healthy {
                group.healthy.push(i);
            }
            let in_group = plan
                .as_ref()
                .and_then(|p| p.groups.as_ref())
                .and_then(|(of, _)| of.get(i))
                .map(|&g| usize::from(g));
            if let (Some(groups), Some(g)) = (&mut groups, in_group) {
                if let Some(c) = group_counts.get_mut(g) {
                    c.total += 1;
                    c.healthy += u64::from(healthy);
                }
                if healthy && let Some(members) = groups.healthy.get_mut(g) {
                    members.push(i);
                }
            }
        }
        if let Some(groups) = &mut groups {
            let factor = u64::from(config.overprovisioning_percent);
            for (w, c) in groups.weights.iter_mut().zip(group_counts) {
                *w *= priority_load::health(c, factor);
            }
            groups.total = groups.weights.iter().sum();
        }
        let counts: Vec<Counts> = levels
            .iter()
            .map(|l| Counts {
                healthy: l.healthy.len() as u64,
                total: l.all.len() as u64,
            })
            .collect();
        let (load, health) = priority_load::compute(
            &counts,
            config.overprovisioning_percent,
            config.panic_threshold_percent,
        );
        let sole = load.shares().iter().position(|&p| p == 100);
        Self {
            levels,
            level_of,
            load,
            health,
            current: [0; MAX_LEVELS],
            sole,
            groups,
            draws: 0,
            generation: 0,
        }
    }

    /// Stamps the candidate sets this computation hands out with `generation`, which must differ
    /// from the stamps of earlier computations for the same algorithm.
    pub(crate) fn stamped(mut self, generation: u64) -> Self {
        self.generation = generation;
        self
    }

    pub(crate) fn load(&self) -> PriorityLoad {
        self.load
    }

    /// The level endpoint `index` belongs to, if it can be picked at all.
    pub(crate) fn level_of(&self, index: usize) -> Option<usize> {
        self.level_of
            .get(index)
            .filter(|&&l| l != u8::MAX)
            .map(|&l| usize::from(l))
    }

    /// The candidate set for the next pick. `excluded` (bit `i`: level `i`) names levels a
    /// retry should avoid when others have health (Envoy's `previous_priorities`).
    #[inline]
    pub(crate) fn choose(
        &mut self,
        hash: Option<HashKey>,
        excluded: u32,
    ) -> Option<Candidates<'_>> {
        let adjusted = if excluded == 0 {
            None
        } else {
            priority_load::excluding(&self.health, excluded)
        };
        // With one level at 100% both choices below always return it (the round robin's state
        // for that level adds and subtracts 100, the others stay at 0), so skip them.
        let level = match (adjusted, self.sole, hash) {
            (Some(shares), _, _) => {
                let point = match hash {
                    Some(key) => mix64(key.as_u64()),
                    None => {
                        self.draws = self.draws.wrapping_add(1);
                        mix64(self.draws)
                    }
                };
                priority_load::level_at(&shares, point)
            }
            (None, Some(level), _) => level,
            (None, None, Some(key)) => {
                priority_load::level_at(&self.load.percent, mix64(key.as_u64()))
            }
            (None, None, None) => self.next_level(),
        };
        let panic = self.load.panic.get(level).copied().unwrap_or(false);
        if !panic && let Some(groups) = &mut self.groups {
            let group = choose_group(groups, hash)?;
            let indices = groups.healthy.get(group)?;
            return (!indices.is_empty())
                .then(|| Candidates::with_generation(group * 2, indices, self.generation));
        }
        let group = self.levels.get(level)?;
        let indices = if panic { &group.all } else { &group.healthy };
        let slot = level * 2 + usize::from(panic);
        (!indices.is_empty()).then(|| Candidates::with_generation(slot, indices, self.generation))
    }

    fn next_level(&mut self) -> usize {
        let shares = &self.load.percent;
        smooth_choice(&mut self.current, shares.iter().map(|&s| i64::from(s)), 100)
    }
}

/// Smooth weighted round robin: each entry gains its weight, the largest wins and pays the
/// total. A zero-weight entry never wins (the others sum to more).
fn smooth_choice(current: &mut [i64], weights: impl Iterator<Item = i64>, total: i64) -> usize {
    let mut best = 0;
    let mut best_value = i64::MIN;
    for (i, (c, w)) in current.iter_mut().zip(weights).enumerate() {
        *c = c.saturating_add(w);
        // Strictly greater: the first of equals wins.
        if w > 0 && *c > best_value {
            best = i;
            best_value = *c;
        }
    }
    if let Some(c) = current.get_mut(best) {
        *c = c.saturating_sub(total);
    }
    best
}

/// A `distribute` group: by the hash key's point over the weights, else by smooth weighted
/// round robin. `None` when no group has a healthy endpoint.
fn choose_group(groups: &mut Groups, hash: Option<HashKey>) -> Option<usize> {
    if groups.total == 0 {
        return None;
    }
    if let Some(key) = hash {
        // A different mix than the level choice, so the two are independent.
        let mut point = mix64(key.as_u64() ^ 0x9e37_79b9_7f4a_7c15) % groups.total;
        for (g, &w) in groups.weights.iter().enumerate() {
            if point < w {
                return Some(g);
            }
            point -= w;
        }
        return Some(0);
    }
    let total = i64::try_from(groups.total).unwrap_or(i64::MAX);
    let weights = groups
        .weights
        .iter()
        .map(|&w| i64::try_from(w).unwrap_or(i64::MAX));
    Some(smooth_choice(&mut groups.current, weights, total))
}

#[cfg(test)]
#[path = "priority_tests.rs"]
mod tests;
