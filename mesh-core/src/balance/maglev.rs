use super::hash::pick_key;
use super::{
    Algorithm, BalanceConfigError, Candidates, PickContext, hash::hash_pair,
    ring_hash::address_hash, slot_cache::SlotCache,
};
use crate::model::Endpoint;

/// Envoy's upper bound on the Maglev table size.
const MAX_TABLE_SIZE: u64 = 5_000_011;

/// Settings for [`Maglev`] (Istio's `consistentHash.maglev`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaglevConfig {
    /// Lookup table size; must be prime, and much larger than the number of endpoints for an
    /// even spread (default 65537, Envoy's default).
    pub table_size: u64,
}

impl Default for MaglevConfig {
    fn default() -> Self {
        Self { table_size: 65_537 }
    }
}

impl MaglevConfig {
    /// Checks that the table size is a prime no larger than 5000011.
    pub fn validate(&self) -> Result<(), BalanceConfigError> {
        if self.table_size > MAX_TABLE_SIZE || !is_prime(self.table_size) {
            return Err(BalanceConfigError::MaglevTableSize {
                size: self.table_size,
                limit: MAX_TABLE_SIZE,
            });
        }
        Ok(())
    }
}

fn is_prime(n: u64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

#[derive(Clone, Debug, Default)]
struct Table {
    /// The candidate set's endpoint indices in fill order (by address).
    owners: Vec<usize>,
    /// Each entry is a position in `owners`.
    entries: Vec<u32>,
}

/// Maglev consistent hashing (Google's Maglev paper, as in Envoy): O(1) lookups in a fixed-size
/// table, an even spread, and little disruption when endpoints come and go.
///
/// Every endpoint derives a permutation of the table slots from the hash of its `ip:port`
/// (`offset`, `skip`); endpoints take turns, in address order, claiming their next unclaimed
/// preferred slot until the table is full, so every client builds the same table. Heavier endpoints take turns more often (Envoy's weighted variant), so
/// each owns a share of slots proportional to its weight. A key goes to the owner of slot
/// `hash % table_size`. Tables are built lazily per candidate set and cached until that set
/// changes, so a pick is one table lookup whatever the number of endpoints. Without a hash key a
/// pick is pseudo-random.
#[derive(Clone, Debug)]
pub struct Maglev {
    table_size: u64,
    tables: SlotCache<Table>,
    counter: u64,
}

impl Maglev {
    /// A Maglev balancer.
    pub fn new(config: MaglevConfig) -> Result<Self, BalanceConfigError> {
        config.validate()?;
        Ok(Self {
            table_size: config.table_size,
            tables: SlotCache::default(),
            counter: 0,
        })
    }
}

impl Table {
    fn build(m: u64, endpoints: &[Endpoint], members: &[usize]) -> Self {
        // Endpoints take turns in address order, so clients that list them differently build the
        // same table. Positions are stored as u32; more candidates than that could not all own a
        // slot anyway (the table is smaller).
        let mut owners = members.to_vec();
        owners.sort_by_key(|&i| endpoints.get(i).map(|e| e.address));
        owners.truncate(u32::MAX as usize);
        let mut permutation: Vec<(u64, u64)> = Vec::with_capacity(owners.len());
        let mut weights: Vec<u64> = Vec::with_capacity(owners.len());
        for &index in &owners {
            let (base, weight) = endpoints.get(index).map_or((0, 1), |e| {
                (address_hash(e.address), u64::from(e.effective_weight()))
            });
            let offset = hash_pair(base, 1) % m;
            let skip = hash_pair(base, 2) % (m - 1) + 1;
            permutation.push((offset, skip));
            weights.push(weight);
        }
        let max_weight = weights.iter().copied().max().unwrap_or(1);
        let mut entries = vec![u32::MAX; usize::try_from(m).unwrap_or(0)];
        let mut next = vec![0u64; owners.len()];
        let mut targets = vec![0u128; owners.len()];
        let mut filled = 0u64;
        // The heaviest member claims a slot every round, so `m` rounds always fill the table.
        'rounds: for round in 0..=u128::from(m) {
            for (position, &weight) in weights.iter().enumerate() {
                if round * u128::from(weight) < targets[position] {
                    continue;
                }
                targets[position] += u128::from(max_weight);
                let (offset, skip) = permutation[position];
                // Each permutation visits every slot once (m is prime), so a free one is found.
                while next[position] < m {
                    let slot = (offset + next[position] * skip) % m;
                    next[position] += 1;
                    let entry = usize::try_from(slot).ok().and_then(|s| entries.get_mut(s));
                    if let Some(entry) = entry.filter(|e| **e == u32::MAX) {
                        *entry = position as u32;
                        filled += 1;
                        break;
                    }
                }
                if filled == m {
                    break 'rounds;
                }
            }
        }
        Self { owners, entries }
    }
}

impl Algorithm for Maglev {
    fn update(&mut self, _endpoints: &[Endpoint], _previous: &[Option<usize>]) {
        self.tables.clear();
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
        let m = self.table_size;
        let key = pick_key(ctx, &mut self.counter);
        let table = self
            .tables
            .get_or_build(candidates, |members| Table::build(m, endpoints, members))?;
        let entry = *table.entries.get(usize::try_from(key % m).ok()?)?;
        table.owners.get(entry as usize).copied()
    }

    fn tracks_requests(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{balance::HashKey, rng::mix64};

    fn endpoints(weights: &[u32]) -> Vec<Endpoint> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                Endpoint::new(format!("10.0.0.{}:80", i + 1).parse().unwrap()).with_weight(w)
            })
            .collect()
    }

    fn owners(maglev: &mut Maglev, eps: &[Endpoint], members: &[usize]) -> Vec<usize> {
        let _ = maglev.pick(eps, &Candidates::new(0, members), &PickContext::new());
        let table = maglev.tables.get(0).unwrap();
        let mut counts = vec![0; eps.len()];
        for &e in &table.entries {
            counts[table.owners[e as usize]] += 1;
        }
        counts
    }

    #[test]
    fn table_is_full_and_even() {
        let eps = endpoints(&[1, 1, 1, 1, 1]);
        let mut maglev = Maglev::new(MaglevConfig::default()).unwrap();
        let counts = owners(&mut maglev, &eps, &[0, 1, 2, 3, 4]);
        assert_eq!(counts.iter().sum::<usize>(), 65_537);
        assert!(
            counts.iter().all(|&c| (13_000..=13_200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn weights_set_slot_shares() {
        let eps = endpoints(&[3, 1]);
        let mut maglev = Maglev::new(MaglevConfig { table_size: 1009 }).unwrap();
        let counts = owners(&mut maglev, &eps, &[0, 1]);
        assert_eq!(counts.iter().sum::<usize>(), 1009);
        assert!((740..=775).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn same_key_same_endpoint() {
        let eps = endpoints(&[1; 8]);
        let all: Vec<usize> = (0..8).collect();
        let mut maglev = Maglev::new(MaglevConfig::default()).unwrap();
        for k in 0..200u64 {
            let ctx = PickContext::with_hash(HashKey::from_hash(mix64(k)));
            let a = maglev.pick(&eps, &Candidates::new(0, &all), &ctx);
            let b = maglev.pick(&eps, &Candidates::new(0, &all), &ctx);
            assert_eq!(a, b);
            assert!(a.is_some());
        }
    }

    #[test]
    fn table_size_must_be_prime() {
        for size in [0, 1, 4, 65_536, 5_000_012, 6_000_011] {
            assert!(
                Maglev::new(MaglevConfig { table_size: size }).is_err(),
                "{size}"
            );
        }
        for size in [2, 3, 1009, 65_537, 5_000_011] {
            assert!(
                Maglev::new(MaglevConfig { table_size: size }).is_ok(),
                "{size}"
            );
        }
        let mut maglev = Maglev::new(MaglevConfig { table_size: 2 }).unwrap();
        let eps = endpoints(&[1, 1, 1]);
        // More members than slots: lookups still land on a member.
        let ctx = PickContext::new();
        assert!(
            maglev
                .pick(&eps, &Candidates::new(0, &[0, 1, 2]), &ctx)
                .is_some()
        );
        assert_eq!(maglev.pick(&eps, &Candidates::new(0, &[]), &ctx), None);
    }
}
