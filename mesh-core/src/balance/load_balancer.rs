use std::{net::SocketAddr, sync::Arc, time::Duration};

use super::{
    AddrIndex, AddrSet, Algorithm, Balancer, PickContext, PriorityConfig, PriorityLoad,
    priority::Priorities,
};
use crate::model::Endpoint;

/// A [`Balancer`] made of locality-aware priority levels with panic mode, around an
/// [`Algorithm`] that chooses within a level.
///
/// This is the one `Balancer` implementation: every policy is `LoadBalancer<SomeAlgorithm>`.
/// It keeps the endpoint set, an address index for the request hooks, and the outlier ejections;
/// level membership and shares are recomputed lazily after an update or an ejection change, so a
/// pick costs only the level choice plus the algorithm. Each recomputation stamps the candidate
/// sets with a new [generation](super::Candidates::generation), which lets algorithms keep
/// per-set structures (rings, samplers, schedules) without re-checking the set on every pick.
/// The request hooks cost one hash lookup of the address, and nothing at all for algorithms
/// that do not [track requests](Algorithm::tracks_requests).
///
/// ```
/// use std::sync::Arc;
/// use mesh_core::balance::{Balancer, LoadBalancer, PickContext, PriorityConfig, SmoothWeighted};
/// use mesh_core::model::{Endpoint, Locality};
///
/// let here = Locality::new("eu-west1", "eu-west1-a", "");
/// let mut lb = LoadBalancer::new(SmoothWeighted::new(), PriorityConfig::local_to(here.clone()));
/// lb.update(Arc::from(vec![
///     Endpoint::new("10.0.0.1:80".parse().unwrap()).with_locality(here),
///     Endpoint::new("10.1.0.1:80".parse().unwrap())
///         .with_locality(Locality::new("eu-west1", "eu-west1-b", "")),
/// ]));
/// // The local zone is healthy, so it takes all traffic...
/// assert_eq!(lb.pick(&PickContext::new()), Some(0));
/// // ...until outlier detection ejects it.
/// lb.set_ejected("10.0.0.1:80".parse().unwrap(), true);
/// assert_eq!(lb.pick(&PickContext::new()), Some(1));
/// ```
#[derive(Debug)]
pub struct LoadBalancer<A> {
    algorithm: A,
    config: PriorityConfig,
    endpoints: Arc<[Endpoint]>,
    /// First index of each address in `endpoints`.
    index_of: AddrIndex,
    ejected: AddrSet,
    /// `None` when the endpoint set or ejections changed since the last pick.
    priorities: Option<Priorities>,
    /// The generation stamp of the last priorities computed.
    generation: u64,
    /// Cached [`Algorithm::tracks_requests`].
    tracks_requests: bool,
    /// The last index picked: `on_start` usually names it, and then needs no lookup.
    last_pick: usize,
    /// Whether every address in `endpoints` is distinct (so an index found by address is the
    /// one `index_of` gives).
    distinct: bool,
}

impl<A: Algorithm> LoadBalancer<A> {
    /// A balancer with no endpoints yet.
    ///
    /// The config is used as given (percentages are clamped where they must be); call
    /// [`PriorityConfig::validate`] first to report bad values to an operator.
    pub fn new(algorithm: A, config: PriorityConfig) -> Self {
        let tracks_requests = algorithm.tracks_requests();
        Self {
            algorithm,
            config,
            endpoints: Arc::from(Vec::new()),
            index_of: AddrIndex::default(),
            ejected: AddrSet::default(),
            priorities: None,
            generation: 0,
            tracks_requests,
            last_pick: usize::MAX,
            distinct: true,
        }
    }

    /// The wrapped algorithm, to inspect its state.
    pub fn algorithm(&self) -> &A {
        &self.algorithm
    }

    /// The priority configuration.
    pub fn config(&self) -> &PriorityConfig {
        &self.config
    }

    /// How traffic is split across locality levels right now.
    pub fn priority_load(&mut self) -> PriorityLoad {
        self.priorities().load()
    }

    /// Whether `address` is currently marked ejected.
    pub fn is_ejected(&self, address: SocketAddr) -> bool {
        self.ejected.contains(&address)
    }

    /// The first index of `address` in the endpoint set.
    #[inline]
    fn index(&self, address: SocketAddr) -> Option<usize> {
        let endpoints = &self.endpoints;
        self.index_of
            .get(address, |i| endpoints.get(i).map(|e| e.address))
    }

    fn priorities(&mut self) -> &mut Priorities {
        let Self {
            priorities,
            endpoints,
            ejected,
            config,
            generation,
            ..
        } = self;
        priorities.get_or_insert_with(|| {
            let mask: Vec<bool> = endpoints
                .iter()
                .map(|e| !ejected.is_empty() && ejected.contains(&e.address))
                .collect();
            *generation = generation.wrapping_add(1).max(1);
            Priorities::new(endpoints, &mask, config).stamped(*generation)
        })
    }
}

impl<A: Algorithm> Balancer for LoadBalancer<A> {
    fn update(&mut self, endpoints: Arc<[Endpoint]>) {
        if Arc::ptr_eq(&self.endpoints, &endpoints) {
            // Re-sent unchanged: keep caches (hash rings, Maglev tables) warm.
            return;
        }
        let previous: Vec<Option<usize>> =
            endpoints.iter().map(|e| self.index(e.address)).collect();
        self.algorithm.update(&endpoints, &previous);
        let address_at = |i: usize| endpoints.get(i).map(|e| e.address);
        let index_of = AddrIndex::new(endpoints.len(), address_at);
        self.distinct = index_of.len() == endpoints.len();
        self.last_pick = usize::MAX;
        // The outlier detector forgets removed endpoints too; keep the two in step.
        self.ejected
            .retain(|&a| index_of.get(a, address_at).is_some());
        self.index_of = index_of;
        self.endpoints = endpoints;
        self.priorities = None;
    }

    fn endpoints(&self) -> &Arc<[Endpoint]> {
        &self.endpoints
    }

    #[inline]
    fn pick(&mut self, ctx: &PickContext) -> Option<usize> {
        if self.priorities.is_none() {
            self.priorities();
        }
        let candidates = self
            .priorities
            .as_mut()?
            .choose(ctx.hash(), ctx.excluded_priorities())?;
        let picked = self.algorithm.pick(&self.endpoints, &candidates, ctx)?;
        self.last_pick = picked;
        Some(picked)
    }

    fn pick_avoiding(&mut self, ctx: &PickContext, tried: &[SocketAddr]) -> Option<usize> {
        if tried.is_empty() {
            return self.pick(ctx);
        }
        if self.priorities.is_none() {
            self.priorities();
        }
        let Self {
            algorithm,
            endpoints,
            priorities,
            ..
        } = self;
        let priorities = priorities.as_mut()?;
        let was_tried = |i: usize| endpoints.get(i).is_some_and(|e| tried.contains(&e.address));
        // A hash key picks the same endpoint every time: go straight to the walk.
        let attempts = if ctx.hash().is_some() {
            1
        } else {
            super::HOST_SELECTION_ATTEMPTS
        };
        let mut picked = None;
        for attempt in 1..=attempts {
            let candidates = priorities.choose(ctx.hash(), ctx.excluded_priorities())?;
            let index = algorithm.pick(endpoints, &candidates, ctx)?;
            if !was_tried(index) {
                picked = Some(index);
                break;
            }
            if attempt == attempts {
                // Every pick was a previous host: the next candidate after it that was not
                // tried, or that one when all were.
                let indices = candidates.indices();
                let at = indices.iter().position(|&i| i == index).unwrap_or(0);
                let (before, after) = indices.split_at(at);
                let untried = after.iter().chain(before).copied().find(|&i| !was_tried(i));
                picked = Some(untried.unwrap_or(index));
            }
        }
        let picked = picked?;
        self.last_pick = picked;
        Some(picked)
    }

    fn priority_of(&self, index: usize) -> Option<usize> {
        self.priorities.as_ref()?.level_of(index)
    }

    fn set_ejected(&mut self, address: SocketAddr, ejected: bool) -> bool {
        if self.index(address).is_none() {
            return false;
        }
        let changed = if ejected {
            self.ejected.insert(address)
        } else {
            self.ejected.remove(&address)
        };
        if changed {
            self.priorities = None;
        }
        true
    }

    fn on_start(&mut self, address: SocketAddr) {
        if !self.tracks_requests {
            return;
        }
        let last = self.last_pick;
        let hinted = self.distinct
            && self
                .endpoints
                .get(last)
                .is_some_and(|e| e.address == address);
        if hinted {
            self.algorithm.on_start(last);
        } else if let Some(i) = self.index(address) {
            self.algorithm.on_start(i);
        }
    }

    fn on_complete(&mut self, address: SocketAddr, latency: Duration) {
        if !self.tracks_requests {
            return;
        }
        if let Some(i) = self.index(address) {
            self.algorithm.on_complete(i, latency);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        balance::{Candidates, RoundRobin},
        model::Health,
    };

    fn eps(n: u8) -> Arc<[Endpoint]> {
        (1..=n)
            .map(|i| Endpoint::new(format!("10.0.0.{i}:80").parse().unwrap()))
            .collect()
    }

    fn addr(i: u8) -> SocketAddr {
        format!("10.0.0.{i}:80").parse().unwrap()
    }

    /// Records hook calls and update mappings.
    #[derive(Default)]
    struct Probe {
        previous: Vec<Option<usize>>,
        started: Vec<usize>,
        completed: Vec<(usize, Duration)>,
    }

    impl Algorithm for Probe {
        fn update(&mut self, _: &[Endpoint], previous: &[Option<usize>]) {
            self.previous = previous.to_vec();
        }
        fn pick(&mut self, _: &[Endpoint], c: &Candidates<'_>, _: &PickContext) -> Option<usize> {
            c.indices().first().copied()
        }
        fn on_start(&mut self, index: usize) {
            self.started.push(index);
        }
        fn on_complete(&mut self, index: usize, latency: Duration) {
            self.completed.push((index, latency));
        }
    }

    #[test]
    fn update_maps_previous_indices_by_address() {
        let mut lb = LoadBalancer::new(Probe::default(), PriorityConfig::default());
        lb.update(eps(3));
        assert_eq!(lb.algorithm().previous, vec![None, None, None]);
        let reordered: Arc<[Endpoint]> = vec![
            Endpoint::new(addr(3)),
            Endpoint::new(addr(9)),
            Endpoint::new(addr(1)),
        ]
        .into();
        lb.update(reordered.clone());
        assert_eq!(lb.algorithm().previous, vec![Some(2), None, Some(0)]);
        // The same Arc again is not an update at all.
        lb.update(reordered);
        assert_eq!(lb.algorithm().previous, vec![Some(2), None, Some(0)]);
    }

    #[test]
    fn hooks_after_a_pick_and_with_duplicate_addresses() {
        let mut lb = LoadBalancer::new(Probe::default(), PriorityConfig::default());
        lb.update(eps(3));
        assert_eq!(lb.pick(&PickContext::new()), Some(0));
        lb.on_start(addr(1));
        lb.on_start(addr(3));
        // The same address twice: events go to its first index, as without a pick.
        let twice: Arc<[Endpoint]> = vec![
            Endpoint::new(addr(5)).with_health(Health::Unhealthy),
            Endpoint::new(addr(6)).with_health(Health::Draining),
            Endpoint::new(addr(5)),
        ]
        .into();
        lb.update(twice);
        assert_eq!(lb.pick(&PickContext::new()), Some(2));
        lb.on_start(addr(5));
        assert_eq!(lb.algorithm().started, vec![0, 2, 0]);
    }

    #[test]
    fn hooks_resolve_addresses_and_ignore_unknown_ones() {
        let mut lb = LoadBalancer::new(Probe::default(), PriorityConfig::default());
        lb.update(eps(2));
        lb.on_start(addr(2));
        lb.on_start(addr(7));
        lb.on_complete(addr(2), Duration::from_millis(3));
        lb.on_complete(addr(7), Duration::from_millis(3));
        assert_eq!(lb.algorithm().started, vec![1]);
        assert_eq!(
            lb.algorithm().completed,
            vec![(1, Duration::from_millis(3))]
        );
    }

    #[test]
    fn ejection_excludes_and_reinstates() {
        let mut lb = LoadBalancer::new(RoundRobin::new(), PriorityConfig::default());
        lb.update(eps(4));
        assert!(lb.set_ejected(addr(1), true));
        assert!(lb.is_ejected(addr(1)));
        assert!(!lb.set_ejected(addr(99), true), "unknown address");
        let picks: Vec<_> = (0..6).map(|_| lb.pick(&PickContext::new())).collect();
        assert!(
            picks.iter().all(|p| p.is_some() && *p != Some(0)),
            "{picks:?}"
        );
        assert!(lb.set_ejected(addr(1), false));
        let picks: Vec<_> = (0..8)
            .filter_map(|_| lb.pick(&PickContext::new()))
            .collect();
        assert!(picks.contains(&0));
    }

    #[test]
    fn ejections_survive_updates_only_for_remaining_endpoints() {
        let mut lb = LoadBalancer::new(RoundRobin::new(), PriorityConfig::default());
        lb.update(eps(3));
        lb.set_ejected(addr(1), true);
        lb.set_ejected(addr(3), true);
        lb.update(eps(2));
        assert!(lb.is_ejected(addr(1)));
        assert!(!lb.is_ejected(addr(3)));
        // Two endpoints, one ejected: 50% healthy is not below the 50% threshold.
        assert!(!lb.priority_load().panic[0]);
        for _ in 0..4 {
            assert_eq!(lb.pick(&PickContext::new()), Some(1));
        }
    }

    #[test]
    fn panic_mode_uses_unhealthy_endpoints() {
        let mut lb = LoadBalancer::new(RoundRobin::new(), PriorityConfig::default());
        let set: Arc<[Endpoint]> = (1..=4)
            .map(|i| {
                let health = if i == 1 {
                    Health::Healthy
                } else {
                    Health::Unhealthy
                };
                Endpoint::new(addr(i)).with_health(health)
            })
            .collect();
        lb.update(set);
        assert!(lb.priority_load().panic[0]);
        let mut seen: Vec<_> = (0..4)
            .filter_map(|_| lb.pick(&PickContext::new()))
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 2, 3]);
    }

    #[test]
    fn empty_set_picks_nothing() {
        let mut lb = LoadBalancer::new(RoundRobin::new(), PriorityConfig::default());
        assert_eq!(lb.pick(&PickContext::new()), None);
        assert!(lb.pick_endpoint(&PickContext::new()).is_none());
        lb.update(eps(1));
        assert_eq!(
            lb.pick_endpoint(&PickContext::new()).map(|e| e.address),
            Some(addr(1))
        );
        assert_eq!(lb.config(), &PriorityConfig::default());
    }
}
