//! Envoy's `previous_priorities` retry priority, which Istio enables with a VirtualService's
//! `retries.retryRemoteLocalities: true`: later attempts of a request avoid the priority levels
//! earlier attempts went to, while other levels have healthy endpoints.

/// Per-request state of `previous_priorities`: which levels the attempts so far went to, and
/// which levels the next pick should avoid.
///
/// Envoy recomputes the exclusions every `update_frequency` attempts (Istio uses 2): the first
/// `update_frequency` attempts use the normal priority load; attempt `k * update_frequency`
/// (counting from 0) and the ones up to the next multiple avoid every level tried before it.
/// When the avoided levels are all that has health, the balancer uses the normal load instead
/// of failing.
///
/// ```
/// use mesh_core::balance::{PickContext, PreviousPriorities};
///
/// let mut retry = PreviousPriorities::istio();
/// // Attempt 0 and 1 (the first retry) use the normal load.
/// assert_eq!(retry.excluded(), 0);
/// retry.attempted(0);
/// assert_eq!(retry.excluded(), 0);
/// retry.attempted(0);
/// // Attempt 2 avoids level 0.
/// assert_eq!(retry.excluded(), 0b1);
/// let ctx = PickContext::new().excluding_priorities(retry.excluded());
/// assert_eq!(ctx.excluded_priorities(), 0b1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreviousPriorities {
    update_frequency: u32,
    attempts: u32,
    /// Levels attempted so far (bit `i`: level `i`).
    attempted: u32,
    /// Levels the next pick avoids.
    excluded: u32,
}

impl PreviousPriorities {
    /// The state for a new request, recomputing exclusions every `update_frequency` attempts
    /// (at least 1).
    pub const fn new(update_frequency: u32) -> Self {
        Self {
            update_frequency: if update_frequency == 0 {
                1
            } else {
                update_frequency
            },
            attempts: 0,
            attempted: 0,
            excluded: 0,
        }
    }

    /// What istiod configures for `retryRemoteLocalities: true` (update frequency 2).
    pub const fn istio() -> Self {
        Self::new(2)
    }

    /// Records that an attempt went to an endpoint at priority `level`.
    pub fn attempted(&mut self, level: usize) {
        if let Some(bit) = 1u32.checked_shl(level as u32) {
            self.attempted |= bit;
        }
        self.attempts = self.attempts.saturating_add(1);
        if self.attempts % self.update_frequency == 0 {
            self.excluded = self.attempted;
        }
    }

    /// The levels the next pick should avoid, for
    /// [`PickContext::excluding_priorities`](super::PickContext::excluding_priorities).
    pub const fn excluded(&self) -> u32 {
        self.excluded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusions_follow_the_update_frequency() {
        let mut p = PreviousPriorities::new(1);
        p.attempted(0);
        assert_eq!(p.excluded(), 0b1);
        p.attempted(3);
        assert_eq!(p.excluded(), 0b1001);

        let mut p = PreviousPriorities::istio();
        p.attempted(1);
        assert_eq!(p.excluded(), 0);
        p.attempted(2);
        assert_eq!(p.excluded(), 0b110);
        // Attempt 3 keeps what attempt 2 used; attempt 4 adds level 0.
        p.attempted(0);
        assert_eq!(p.excluded(), 0b110);
        p.attempted(4);
        assert_eq!(p.excluded(), 0b10111);
        // Levels beyond the mask width are ignored rather than wrapping.
        p.attempted(40);
        assert_eq!(PreviousPriorities::new(0), PreviousPriorities::new(1));
    }
}
