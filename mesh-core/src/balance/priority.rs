//! Locality-aware priority levels, failover and panic mode, computed as Envoy does.
//!
//! Endpoints are grouped by how closely their locality matches the caller's
//! ([`LocalityMatch`]): level 0 shares the subzone, 1 the zone, 2 the region, 3 nothing. Each level
//! gets a share of the traffic:
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
//! Only `Healthy`, non-ejected endpoints count as healthy; `Draining` endpoints are left out
//! entirely. A pick chooses its level by the consistent-hash key when there is one (so a key sticks
//! to a level) and otherwise by a smooth weighted round robin over the level shares, which hits
//! the shares exactly without needing randomness.

use super::{BalanceConfigError, Candidates, HashKey};
use crate::{
    model::{Endpoint, Health, Locality, LocalityMatch},
    rng::mix64,
};

/// Number of locality levels.
pub const LEVELS: usize = LocalityMatch::LEVELS;

/// How a [`LoadBalancer`](super::LoadBalancer) prefers local endpoints and when it panics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriorityConfig {
    /// The caller's own locality. If unknown (empty region), all endpoints share one level.
    pub local: Locality,
    /// Envoy's overprovisioning factor in percent (default 140).
    pub overprovisioning_percent: u32,
    /// Envoy's healthy panic threshold in percent (default 50; 0 disables panic mode). Istio's
    /// `outlierDetection.minHealthPercent` maps here.
    pub panic_threshold_percent: u32,
}

impl Default for PriorityConfig {
    fn default() -> Self {
        Self {
            local: Locality::default(),
            overprovisioning_percent: 140,
            panic_threshold_percent: 50,
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

/// How traffic is currently split across locality levels (indexed by
/// [`LocalityMatch::priority`]), for tests and the admin endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PriorityLoad {
    /// Percentage of picks each level receives; sums to 100.
    pub percent: [u32; LEVELS],
    /// Whether each level is in panic mode (balancing across all its endpoints).
    pub panic: [bool; LEVELS],
}

#[derive(Clone, Debug, Default)]
struct Level {
    /// Non-draining endpoints at this level.
    all: Vec<usize>,
    /// Healthy, non-ejected endpoints at this level.
    healthy: Vec<usize>,
}

/// The levels and their shares for one endpoint set and ejection state.
#[derive(Clone, Debug)]
pub(crate) struct Priorities {
    levels: [Level; LEVELS],
    load: PriorityLoad,
    /// Smooth weighted round robin state for choosing a level without a hash key.
    current: [i64; LEVELS],
    /// The level with all the load, if one has (the common case): no level choice to make.
    sole: Option<usize>,
    /// Stamp for the candidate sets handed out (see [`Candidates::generation`]).
    generation: u64,
}

impl Priorities {
    pub(crate) fn new(endpoints: &[Endpoint], ejected: &[bool], config: &PriorityConfig) -> Self {
        let mut levels: [Level; LEVELS] = Default::default();
        for (i, endpoint) in endpoints.iter().enumerate() {
            if endpoint.health == Health::Draining {
                continue;
            }
            let priority = if config.local.is_unknown() {
                0
            } else {
                config.local.matches(&endpoint.locality).priority()
            };
            let Some(level) = levels.get_mut(priority) else {
                continue;
            };
            level.all.push(i);
            if endpoint.health == Health::Healthy && !ejected.get(i).copied().unwrap_or(false) {
                level.healthy.push(i);
            }
        }
        let load = compute_load(&levels, config);
        let sole = load.percent.iter().position(|&p| p == 100);
        Self {
            levels,
            load,
            current: [0; LEVELS],
            sole,
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

    /// The candidate set for the next pick.
    #[inline]
    pub(crate) fn choose(&mut self, hash: Option<HashKey>) -> Option<Candidates<'_>> {
        // With one level at 100% both choices below always return it (the round robin's state
        // for that level adds and subtracts 100, the others stay at 0), so skip them.
        let level = match (self.sole, hash) {
            (Some(level), _) => level,
            (None, Some(key)) => self.level_for_hash(key),
            (None, None) => self.next_level(),
        };
        let panic = self.load.panic.get(level).copied().unwrap_or(false);
        let group = self.levels.get(level)?;
        let indices = if panic { &group.all } else { &group.healthy };
        let slot = level * 2 + usize::from(panic);
        (!indices.is_empty()).then(|| Candidates::with_generation(slot, indices, self.generation))
    }

    fn level_for_hash(&self, key: HashKey) -> usize {
        let mut point = mix64(key.as_u64()) % 100;
        for (level, &share) in self.load.percent.iter().enumerate() {
            if point < u64::from(share) {
                return level;
            }
            point -= u64::from(share);
        }
        0
    }

    fn next_level(&mut self) -> usize {
        let mut best = 0;
        let mut best_value = i64::MIN;
        let shares = self.load.percent.iter();
        for (level, (current, &share)) in self.current.iter_mut().zip(shares).enumerate() {
            *current = current.saturating_add(i64::from(share));
            // Strictly greater: a level with no share never wins (the others sum to more).
            if *current > best_value {
                best = level;
                best_value = *current;
            }
        }
        if let Some(current) = self.current.get_mut(best) {
            *current = current.saturating_sub(100);
        }
        best
    }
}

fn compute_load(levels: &[Level; LEVELS], config: &PriorityConfig) -> PriorityLoad {
    let factor = u64::from(config.overprovisioning_percent);
    let threshold = u64::from(config.panic_threshold_percent.min(100));
    // A level with any healthy endpoint counts at least 1%: Envoy's integer division rounds a
    // few healthy endpoints among many (1 of 141 at 140%) down to 0%, which can send every pick
    // to a level with no healthy endpoint at all while this one has some.
    let health = levels.each_ref().map(|l| {
        let healthy = factor.saturating_mul(l.healthy.len() as u64);
        let health = healthy
            .checked_div(l.all.len() as u64)
            .unwrap_or(0)
            .min(100);
        if l.healthy.is_empty() {
            health
        } else {
            health.max(1)
        }
    });
    let normalized = health.iter().sum::<u64>().min(100);
    let mut load = PriorityLoad::default();

    if normalized == 0 && threshold == 0 {
        // Nothing healthy and panic disabled: the shares must still sum to 100; the pick will find
        // no healthy endpoint at level 0 and fail.
        load.percent[0] = 100;
        return load;
    }
    let mut remaining = 100u64;
    for (level, &h) in health.iter().enumerate() {
        // `normalized == 0` leaves every share at 0 for the panic split below.
        let share = (h * 100)
            .checked_div(normalized)
            .unwrap_or(0)
            .min(remaining);
        load.percent[level] = share as u32;
        remaining -= share;
    }
    if let Some(first) = health.iter().position(|&h| h > 0) {
        load.percent[first] += remaining as u32;
    }
    if normalized < 100 {
        for (level, group) in levels.iter().enumerate() {
            let total = group.all.len() as u64;
            load.panic[level] = if total == 0 {
                threshold > 0
            } else {
                (group.healthy.len() as u64) * 100 < threshold * total
            };
        }
        if load.panic.iter().all(|&p| p) {
            load.percent = split_by_count(levels);
        }
    }
    load
}

/// Total panic: every level gets a share proportional to its endpoint count.
fn split_by_count(levels: &[Level; LEVELS]) -> [u32; LEVELS] {
    let mut percent = [0u32; LEVELS];
    let total: u64 = levels.iter().map(|l| l.all.len() as u64).sum();
    if total == 0 {
        percent[0] = 100;
        return percent;
    }
    let mut remaining = 100u64;
    for (level, group) in levels.iter().enumerate() {
        let share = 100 * group.all.len() as u64 / total;
        percent[level] = share as u32;
        remaining -= share;
    }
    if let Some(first) = levels.iter().position(|l| !l.all.is_empty()) {
        percent[first] += remaining as u32;
    }
    percent
}

#[cfg(test)]
#[path = "priority_tests.rs"]
mod tests;
