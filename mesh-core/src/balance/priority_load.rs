//! Envoy's priority-load arithmetic: level health, shares, panic, and the shares a retry uses
//! when it avoids levels already tried (`previous_priorities`).
//!
//! Everything works on fixed-size arrays so that a retry's recomputation allocates nothing.

use super::locality_rules::MAX_LEVELS;

/// How traffic is currently split across priority levels, for tests and the admin endpoint.
///
/// Levels are numbered from 0 (preferred). Without `failover`/`failoverPriority` there are four,
/// indexed by [`LocalityMatch::priority`](crate::model::LocalityMatch::priority); other rules
/// give other counts ([`levels`](Self::levels)). Entries past the last level are 0/false.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PriorityLoad {
    /// Percentage of picks each level receives; sums to 100.
    pub percent: [u32; MAX_LEVELS],
    /// Whether each level is in panic mode (balancing across all its endpoints).
    pub panic: [bool; MAX_LEVELS],
    /// Number of levels in use.
    pub levels: usize,
}

impl PriorityLoad {
    /// The shares of the levels in use.
    pub fn shares(&self) -> &[u32] {
        self.percent.get(..self.levels).unwrap_or(&self.percent)
    }

    /// The panic flags of the levels in use.
    pub fn panics(&self) -> &[bool] {
        self.panic.get(..self.levels).unwrap_or(&self.panic)
    }
}

/// Healthy and total endpoint counts of one level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) healthy: u64,
    pub(crate) total: u64,
}

/// A level's health: `min(100, factor% * healthy / total)`, at least 1 with any healthy
/// endpoint (Envoy's integer division rounds 1 of 141 at 140% down to 0, which can send every
/// pick to a level with nothing healthy while this one has some).
pub(crate) fn health(counts: Counts, factor: u64) -> u64 {
    let h = factor
        .saturating_mul(counts.healthy)
        .checked_div(counts.total)
        .unwrap_or(0)
        .min(100);
    if counts.healthy > 0 { h.max(1) } else { h }
}

/// Fills levels in order with their health, scaled to 100 when the healths sum to less
/// (Envoy's `distributeLoad`); rounding leftovers go to the first level with any health.
/// Returns false (and leaves `out` zero) when no level has any health.
pub(crate) fn fill(health: &[u64; MAX_LEVELS], out: &mut [u32; MAX_LEVELS]) -> bool {
    let normalized = health.iter().sum::<u64>().min(100);
    *out = [0; MAX_LEVELS];
    if normalized == 0 {
        return false;
    }
    let mut remaining = 100u64;
    for (share, &h) in out.iter_mut().zip(health) {
        let s = (h * 100 / normalized).min(remaining);
        *share = s as u32;
        remaining -= s;
    }
    if let Some(first) = health.iter().position(|&h| h > 0)
        && let Some(share) = out.get_mut(first)
    {
        *share += remaining as u32;
    }
    true
}

/// The shares and panic flags of `levels` (Envoy's priority load with per-level and total
/// panic), plus each level's health for later retry adjustments.
pub(crate) fn compute(
    counts: &[Counts],
    factor: u32,
    threshold: u32,
) -> (PriorityLoad, [u64; MAX_LEVELS]) {
    let factor = u64::from(factor);
    let threshold = u64::from(threshold.min(100));
    let levels = counts.len().clamp(1, MAX_LEVELS);
    let mut healths = [0u64; MAX_LEVELS];
    for (h, c) in healths.iter_mut().zip(counts) {
        *h = health(*c, factor);
    }
    let mut load = PriorityLoad {
        levels,
        ..PriorityLoad::default()
    };
    let normalized = healths.iter().sum::<u64>().min(100);
    if normalized == 0 && threshold == 0 {
        // Nothing healthy and panic disabled: the shares must still sum to 100; the pick will
        // find no healthy endpoint at level 0 and fail.
        load.percent[0] = 100;
        return (load, healths);
    }
    fill(&healths, &mut load.percent);
    if normalized < 100 {
        for (level, panic) in load.panic.iter_mut().enumerate().take(levels) {
            let c = counts.get(level).copied().unwrap_or_default();
            *panic = if c.total == 0 {
                threshold > 0
            } else {
                c.healthy * 100 < threshold * c.total
            };
        }
        if load.panics().iter().all(|&p| p) {
            load.percent = split_by_count(counts);
        }
    }
    (load, healths)
}

/// Total panic: every level gets a share proportional to its endpoint count.
fn split_by_count(counts: &[Counts]) -> [u32; MAX_LEVELS] {
    let mut percent = [0u32; MAX_LEVELS];
    let total: u64 = counts.iter().map(|c| c.total).sum();
    if total == 0 {
        percent[0] = 100;
        return percent;
    }
    let mut remaining = 100u64;
    for (share, c) in percent.iter_mut().zip(counts) {
        let s = 100 * c.total / total;
        *share = s as u32;
        remaining -= s;
    }
    if let Some(first) = counts.iter().position(|c| c.total > 0) {
        percent[first] += remaining as u32;
    }
    percent
}

/// The shares for a retry that avoids the levels in `excluded` (bit `i`: level `i`), as
/// Envoy's `previous_priorities`: excluded levels count as having no health and the rest are
/// filled as usual. `None` when that leaves nothing available (the retry then uses the normal
/// shares, as Envoy falls back to the original load).
pub(crate) fn excluding(health: &[u64; MAX_LEVELS], excluded: u32) -> Option<[u32; MAX_LEVELS]> {
    let mut adjusted = *health;
    for (level, h) in adjusted.iter_mut().enumerate() {
        if excluded & (1 << level) != 0 {
            *h = 0;
        }
    }
    let mut out = [0; MAX_LEVELS];
    fill(&adjusted, &mut out).then_some(out)
}

/// The level a point in `0..100` falls in, by cumulative shares.
pub(crate) fn level_at(shares: &[u32; MAX_LEVELS], point: u64) -> usize {
    let mut point = point % 100;
    for (level, &share) in shares.iter().enumerate() {
        if point < u64::from(share) {
            return level;
        }
        point -= u64::from(share);
    }
    0
}
