use std::{net::SocketAddr, sync::Arc, time::Duration};

use super::HashKey;
use crate::model::Endpoint;

/// How many picks one retry may spend looking for an endpoint not tried yet before it settles
/// for one that was: Envoy's `host_selection_retry_max_attempts` as Istio sets it (5). See
/// [`Balancer::pick_avoiding`].
pub const HOST_SELECTION_ATTEMPTS: usize = 5;

/// What the request layer knows about one pick.
///
/// The consistent-hash key, and on a retry the priority levels to avoid
/// ([`PreviousPriorities`](super::PreviousPriorities)). More fields can be added without
/// breaking callers because it is built through methods.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PickContext {
    hash: Option<HashKey>,
    excluded_priorities: u32,
}

impl PickContext {
    /// A context with no hash key: consistent-hash balancers then pick pseudo-randomly.
    pub const fn new() -> Self {
        Self {
            hash: None,
            excluded_priorities: 0,
        }
    }

    /// A context carrying a consistent-hash key.
    pub const fn with_hash(hash: HashKey) -> Self {
        Self {
            hash: Some(hash),
            excluded_priorities: 0,
        }
    }

    /// The same context avoiding the priority levels in `mask` (bit `i`: level `i`) while
    /// other levels have healthy endpoints, as Envoy's `previous_priorities` retry priority.
    #[must_use]
    pub const fn excluding_priorities(mut self, mask: u32) -> Self {
        self.excluded_priorities = mask;
        self
    }

    /// The consistent-hash key, if any.
    pub const fn hash(&self) -> Option<HashKey> {
        self.hash
    }

    /// The priority levels to avoid (bit `i`: level `i`); 0 on a first attempt.
    pub const fn excluded_priorities(&self) -> u32 {
        self.excluded_priorities
    }
}

/// Chooses an endpoint of one service for each request (or connection).
///
/// A balancer owns the service's current endpoint set, given with [`update`](Self::update), and
/// answers [`pick`](Self::pick) with an index into it. It is sans-I/O: `mesh-client` keeps one per
/// service (behind a lock), feeds it discovery snapshots, outlier ejections and request
/// start/finish events, and does the dialing itself. A typical request:
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use mesh_core::balance::{Balancer, LoadBalancer, PickContext, PriorityConfig, RoundRobin};
/// use mesh_core::model::Endpoint;
///
/// let mut lb = LoadBalancer::new(RoundRobin::new(), PriorityConfig::default());
/// lb.update(Arc::from(vec![
///     Endpoint::new("10.0.0.1:80".parse().unwrap()),
///     Endpoint::new("10.0.0.2:80".parse().unwrap()),
/// ]));
/// let endpoints = lb.endpoints().clone(); // cheap: keeps the set this pick indexes into
/// let i = lb.pick(&PickContext::new()).expect("two healthy endpoints");
/// let addr = endpoints[i].address;
/// lb.on_start(addr);
/// // ... send the request ...
/// lb.on_complete(addr, Duration::from_millis(12));
/// ```
///
/// Endpoints that are [`Unhealthy`](crate::model::Health::Unhealthy) or ejected are never picked
/// unless the panic threshold applies; [`Draining`](crate::model::Health::Draining) endpoints are
/// never picked. The trait is object safe, so `Box<dyn Balancer + Send>` holds any policy (see
/// [`Policy::build`](super::Policy::build)).
pub trait Balancer {
    /// Replaces the endpoint set. Per-endpoint state (EWMA latency, in-flight counts, smooth
    /// weights, ejections) is kept for endpoints whose address is still present.
    fn update(&mut self, endpoints: Arc<[Endpoint]>);

    /// The current endpoint set; [`pick`](Self::pick) returns indices into it.
    fn endpoints(&self) -> &Arc<[Endpoint]>;

    /// Chooses an endpoint, or `None` if none may be used (no endpoints, or none healthy and
    /// panic mode disabled).
    fn pick(&mut self, ctx: &PickContext) -> Option<usize>;

    /// Marks an endpoint ejected (or not) by outlier detection. Returns whether the address is in
    /// the current set; ejections of unknown addresses are ignored.
    fn set_ejected(&mut self, address: SocketAddr, ejected: bool) -> bool;

    /// A request to `address` started. Latency-aware balancers count it as in flight.
    fn on_start(&mut self, address: SocketAddr) {
        let _ = address;
    }

    /// A request to `address` finished after `latency`. Calls for addresses no longer in the set
    /// are ignored, so a request may outlive an update.
    fn on_complete(&mut self, address: SocketAddr, latency: Duration) {
        let _ = (address, latency);
    }

    /// The priority level of endpoint `index` as of the last pick (0 is preferred), for
    /// [`PreviousPriorities`](super::PreviousPriorities); `None` if unknown or never picked.
    fn priority_of(&self, index: usize) -> Option<usize> {
        let _ = index;
        None
    }

    /// [`pick`](Self::pick) for a retry: avoids the endpoints at the addresses in `tried` (the
    /// ones earlier attempts of the request went to) while the pick has others to choose
    /// from, as Envoy's `previous_hosts` retry host predicate, which Istio sets on every retry
    /// policy.
    ///
    /// Like Envoy, the balancer picks again, up to [`HOST_SELECTION_ATTEMPTS`] times in all,
    /// until it lands on an endpoint not tried; [`LoadBalancer`](super::LoadBalancer) then
    /// walks the candidates of its last pick to the next one not tried (so consistent-hash
    /// keys, which pick the same endpoint every time, move on as Envoy's ring walk does), and
    /// only when every candidate was tried returns the endpoint picked. The locality level is
    /// chosen as for any pick: retries leave the level only with `retryRemoteLocalities`
    /// ([`PreviousPriorities`](super::PreviousPriorities)). An empty `tried` is a plain pick.
    fn pick_avoiding(&mut self, ctx: &PickContext, tried: &[SocketAddr]) -> Option<usize> {
        let mut index = self.pick(ctx)?;
        for _ in 1..HOST_SELECTION_ATTEMPTS {
            let address = self.endpoints().get(index).map(|e| e.address);
            if !address.is_some_and(|a| tried.contains(&a)) {
                break;
            }
            index = self.pick(ctx)?;
        }
        Some(index)
    }

    /// [`pick`](Self::pick), returning the endpoint itself.
    fn pick_endpoint(&mut self, ctx: &PickContext) -> Option<&Endpoint> {
        let index = self.pick(ctx)?;
        self.endpoints().get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_carries_the_hash() {
        assert_eq!(PickContext::new().hash(), None);
        let key = HashKey::from_hash(5);
        assert_eq!(PickContext::with_hash(key).hash(), Some(key));
        assert_eq!(PickContext::default(), PickContext::new());
    }
}
