use std::net::SocketAddr;

use super::hash::pick_key;
use super::{
    Algorithm, BalanceConfigError, Candidates, PickContext,
    guided::GuidedKeys,
    hash::{hash_pair, stable_hash},
    slot_cache::SlotCache,
};
use crate::model::Endpoint;

/// Envoy's upper bound on the ring size.
const MAX_RING_SIZE_LIMIT: u64 = 8 * 1024 * 1024;

/// Settings for [`RingHash`] (Istio's `consistentHash.ringHash`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingHashConfig {
    /// The ring has at least this many points (default 1024, Envoy's default).
    pub minimum_ring_size: u64,
    /// The ring has at most this many points (default 8M, Envoy's default and limit).
    pub maximum_ring_size: u64,
}

impl Default for RingHashConfig {
    fn default() -> Self {
        Self {
            minimum_ring_size: 1024,
            maximum_ring_size: MAX_RING_SIZE_LIMIT,
        }
    }
}

impl RingHashConfig {
    /// Checks `1 <= minimum <= maximum <= 8M`.
    pub fn validate(&self) -> Result<(), BalanceConfigError> {
        let (min, max) = (self.minimum_ring_size, self.maximum_ring_size);
        if min == 0 || min > max || max > MAX_RING_SIZE_LIMIT {
            return Err(BalanceConfigError::RingSize {
                min,
                max,
                limit: MAX_RING_SIZE_LIMIT,
            });
        }
        Ok(())
    }
}

/// A ring of points sorted by hash, and the endpoint index owning each.
#[derive(Clone, Debug, Default)]
struct Ring {
    hashes: GuidedKeys,
    owners: Vec<usize>,
}

/// Ketama-style consistent hashing: the same key reaches the same endpoint, and removing an
/// endpoint only moves the keys it owned.
///
/// Each endpoint is hashed onto a ring many times (the hash of `"<ip:port>"` combined with the
/// replica number), in proportion to its weight; a key goes to the first point at or after its
/// hash. Each endpoint gets its own share of `minimum_ring_size` (rounded up), computed
/// independently of the others' order, so clients that list endpoints differently still build
/// identical rings. Removing an endpoint moves its own keys plus about as many again (the
/// survivors gain points to keep the ring at its minimum size). Rings are built lazily per candidate
/// set and cached until that set changes. Without a hash key a pick is pseudo-random.
///
/// A lookup costs O(1) expected whatever the ring size: a guide table indexed by the key's top
/// bits leads to the one or two points that can follow it (the same point a binary search over
/// the ring finds).
#[derive(Clone, Debug)]
pub struct RingHash {
    config: RingHashConfig,
    rings: SlotCache<Ring>,
    counter: u64,
}

impl RingHash {
    /// A ring-hash balancer.
    pub fn new(config: RingHashConfig) -> Result<Self, BalanceConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            rings: SlotCache::default(),
            counter: 0,
        })
    }

    /// Number of points on the ring built for candidate set `slot`, if built.
    pub fn ring_size(&self, slot: usize) -> Option<usize> {
        self.rings.get(slot).map(|r| r.owners.len())
    }
}

impl Ring {
    fn build(config: &RingHashConfig, endpoints: &[Endpoint], members: &[usize]) -> Self {
        let weights: Vec<u64> = members
            .iter()
            .map(|&i| {
                endpoints
                    .get(i)
                    .map_or(1, |e| u64::from(e.effective_weight()))
            })
            .collect();
        let counts = point_counts(&weights, config);
        let mut points = Vec::new();
        for (&index, &count) in members.iter().zip(&counts) {
            let Some(endpoint) = endpoints.get(index) else {
                continue;
            };
            let base = address_hash(endpoint.address);
            points.extend((0..count).map(|replica| (hash_pair(base, replica), index)));
        }
        // Ties (equal 64-bit hashes) are broken by address, so every client builds the same ring.
        let address = |i: usize| endpoints.get(i).map(|e| e.address);
        points.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| address(a.1).cmp(&address(b.1))));
        let (hashes, owners) = points.into_iter().unzip();
        Self {
            hashes: GuidedKeys::new(hashes),
            owners,
        }
    }

    /// The owner of the first point at or after `key`, wrapping around to the first point.
    #[inline]
    fn lookup(&self, key: u64) -> Option<usize> {
        let at = self.hashes.first_at_least(key);
        self.owners.get(at).or_else(|| self.owners.first()).copied()
    }
}

/// Points per endpoint: its own share of `minimum_ring_size`, rounded up.
///
/// So the ring has at least `minimum_ring_size` points, the lightest endpoint gets at least its
/// share (Envoy's guarantee), scaling all weights changes nothing, and removing an endpoint grows
/// the others' counts only by its share. (Envoy rounds through the lightest endpoint's count,
/// which reshuffles every endpoint's points when the lightest one leaves.) Above
/// `maximum_ring_size` the counts are scaled down, keeping at least one point each.
fn point_counts(weights: &[u64], config: &RingHashConfig) -> Vec<u64> {
    let total: u128 = weights.iter().map(|&w| u128::from(w)).sum::<u128>().max(1);
    let share = |size: u64, w: u64| u128::from(size) * u128::from(w);
    let counts: Vec<u128> = weights
        .iter()
        .map(|&w| share(config.minimum_ring_size, w).div_ceil(total))
        .collect();
    let counts = if counts.iter().sum::<u128>() <= u128::from(config.maximum_ring_size) {
        counts
    } else {
        weights
            .iter()
            .map(|&w| (share(config.maximum_ring_size, w) / total).max(1))
            .collect()
    };
    counts
        .into_iter()
        .map(|c| u64::try_from(c).unwrap_or(u64::MAX))
        .collect()
}

/// The ring position base for an endpoint: a stable hash of its `ip:port` text.
pub(super) fn address_hash(address: SocketAddr) -> u64 {
    stable_hash(address.to_string().as_bytes())
}

impl Algorithm for RingHash {
    fn update(&mut self, _endpoints: &[Endpoint], _previous: &[Option<usize>]) {
        // Indices changed meaning; rings are rebuilt on the next pick of each set.
        self.rings.clear();
    }

    fn pick(
        &mut self,
        endpoints: &[Endpoint],
        candidates: &Candidates<'_>,
        ctx: &PickContext,
    ) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        let config = &self.config;
        let ring = self.rings.get_or_build(candidates, |members| {
            Ring::build(config, endpoints, members)
        })?;
        ring.lookup(pick_key(ctx, &mut self.counter))
    }

    fn tracks_requests(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{balance::HashKey, rng::mix64};

    fn endpoints(n: usize) -> Vec<Endpoint> {
        (0..n)
            .map(|i| {
                Endpoint::new(
                    format!("10.0.{}.{}:80", i / 250, i % 250 + 1)
                        .parse()
                        .unwrap(),
                )
            })
            .collect()
    }

    fn pick(rh: &mut RingHash, eps: &[Endpoint], members: &[usize], key: u64) -> usize {
        let ctx = PickContext::with_hash(HashKey::from_hash(mix64(key)));
        rh.pick(eps, &Candidates::new(0, members), &ctx).unwrap()
    }

    #[test]
    fn ring_size_respects_minimum_and_weights() {
        let mut eps = endpoints(3);
        eps[0].weight = 2;
        let mut rh = RingHash::new(RingHashConfig::default()).unwrap();
        let _ = pick(&mut rh, &eps, &[0, 1, 2], 1);
        // Shares of 1024 by weight 2:1:1.
        assert_eq!(rh.ring_size(0), Some(1024));
        let mut counts = [0u32; 3];
        for k in 0..20_000 {
            counts[pick(&mut rh, &eps, &[0, 1, 2], k)] += 1;
        }
        assert!((9_000..11_000).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn maximum_caps_the_ring() {
        let config = RingHashConfig {
            minimum_ring_size: 8,
            maximum_ring_size: 8,
        };
        let mut rh = RingHash::new(config).unwrap();
        // ceil(8 / 3) = 3 points each would make 9: scaled down to floor(8 / 3) = 2 each.
        let _ = pick(&mut rh, &endpoints(3), &[0, 1, 2], 0);
        assert_eq!(rh.ring_size(0), Some(6));
        // Scaling all weights changes nothing.
        let heavy: Vec<Endpoint> = endpoints(3)
            .into_iter()
            .map(|e| e.with_weight(1000))
            .collect();
        let _ = pick(&mut rh, &heavy, &[0, 1], 0);
        assert_eq!(rh.ring_size(0), Some(8));
    }

    #[test]
    fn same_key_same_endpoint_and_rebuild_on_change() {
        let eps = endpoints(10);
        let all: Vec<usize> = (0..10).collect();
        let mut rh = RingHash::new(RingHashConfig::default()).unwrap();
        let first: Vec<usize> = (0..100).map(|k| pick(&mut rh, &eps, &all, k)).collect();
        let again: Vec<usize> = (0..100).map(|k| pick(&mut rh, &eps, &all, k)).collect();
        assert_eq!(first, again);
        // Without endpoint 3 its keys move, and few others.
        let without: Vec<usize> = all.iter().copied().filter(|&i| i != 3).collect();
        let mut moved_others = 0;
        for k in 0..100 {
            let now = pick(&mut rh, &eps, &without, k);
            assert_ne!(now, 3);
            if first[k as usize] != 3 && now != first[k as usize] {
                moved_others += 1;
            }
        }
        assert!(moved_others <= 20, "{moved_others}");
    }

    #[test]
    fn keyless_picks_spread_and_config_is_validated() {
        let eps = endpoints(4);
        let mut rh = RingHash::new(RingHashConfig::default()).unwrap();
        let all = [0, 1, 2, 3];
        let mut seen = [false; 4];
        for _ in 0..100 {
            let i = rh
                .pick(&eps, &Candidates::new(0, &all), &PickContext::new())
                .unwrap();
            seen[i] = true;
        }
        assert_eq!(seen, [true; 4]);
        for (min, max) in [(0, 10), (11, 10), (1, MAX_RING_SIZE_LIMIT + 1)] {
            let config = RingHashConfig {
                minimum_ring_size: min,
                maximum_ring_size: max,
            };
            assert!(RingHash::new(config).is_err());
        }
        assert_eq!(
            rh.pick(&eps, &Candidates::new(0, &[]), &PickContext::new()),
            None
        );
    }
}
