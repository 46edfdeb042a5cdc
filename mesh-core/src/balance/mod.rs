//! Load balancing: which endpoint of a service gets the next request.
//!
//! Every balancer is sans-I/O state: `mesh-client` feeds it endpoint sets, outlier ejections and
//! request start/finish events, and asks it for picks. Two layers make up a balancer:
//!
//! - [`LoadBalancer`] (the one [`Balancer`] implementation) groups endpoints into locality
//!   priority levels relative to the caller ([`PriorityConfig`]), fails over gradually as a level
//!   loses healthy endpoints (Envoy's overprovisioning factor, 1.4), and enters panic mode
//!   (balancing across unhealthy endpoints too) when too few are healthy (Envoy's threshold, 50%).
//!   The arithmetic lives in [`priority`].
//! - An [`Algorithm`] chooses within the level's candidates: [`RoundRobin`], [`WeightedFair`]
//!   (weighted round robin by WF²Q scheduling), [`SmoothWeighted`] (nginx), [`WeightedRandom`],
//!   [`PeakEwma`] (power of two choices over peak-EWMA latency, as in Linkerd and Finagle), and
//!   the consistent hashes [`RingHash`] (Ketama) and [`Maglev`], which take a [`HashKey`] from
//!   the [`PickContext`]. Every algorithm a [`Policy`] builds picks in O(1) or O(log n): work
//!   that depends on the whole candidate set (rings, tables, cumulative weights, schedules) is
//!   done once per set, not per pick.
//!
//! [`Policy`] builds any of them from a `DestinationRule`-shaped choice. Time and randomness are
//! injected ([`Clock`](crate::clock::Clock), [`Rng`](crate::rng::Rng)), so tests are exact.

mod addr_index;
mod algorithm;
mod balancer;
mod error;
mod guided;
mod hash;
mod load_balancer;
mod locality_rules;
mod maglev;
mod peak_ewma;
mod policy;
pub mod priority;
mod priority_load;
mod random;
mod retry_priority;
mod ring_hash;
mod round_robin;
mod slot_cache;
mod smooth_weighted;
mod weight_aware;
mod weighted_fair;

pub(crate) use addr_index::AddrIndex;
/// A set of endpoint addresses (keys from service discovery, so the fast hasher is safe).
pub(crate) type AddrSet = crate::fast_hash::FastSet<std::net::SocketAddr>;
pub use algorithm::{Algorithm, Candidates, SLOTS};
pub use balancer::{Balancer, HOST_SELECTION_ATTEMPTS, PickContext};
pub use error::BalanceConfigError;
pub use hash::{HashKey, stable_hash};
pub use load_balancer::LoadBalancer;
pub use locality_rules::{
    Distribute, LocalityPattern, LocalityPatternError, LocalityRules, MAX_GROUPS, MAX_LEVELS,
    PriorityLabel, REGION_LABEL, RegionFailover, SUBZONE_LABEL, ZONE_LABEL,
};
pub use maglev::{Maglev, MaglevConfig};
pub use peak_ewma::{PeakEwma, PeakEwmaConfig};
pub use policy::Policy;
pub use priority::PriorityConfig;
pub use priority_load::PriorityLoad;
pub use random::WeightedRandom;
pub use retry_priority::PreviousPriorities;
pub use ring_hash::{RingHash, RingHashConfig};
pub use round_robin::RoundRobin;
pub use smooth_weighted::SmoothWeighted;
pub use weight_aware::WeightAware;
pub use weighted_fair::WeightedFair;
