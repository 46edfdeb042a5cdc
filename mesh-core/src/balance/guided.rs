//! Sorted `u64` keys with a guide table, so "the first key at or above `x`" costs O(1) expected.
//!
//! Ring hash looks up a request's hash among the ring's points, and weighted random looks up a
//! random point among cumulative weights. A plain binary search over 10,000 keys takes 14
//! dependent, mostly cache-missing steps; the guide table (Chen and Asau's "guide table"
//! method) first jumps to the bucket of keys sharing `x`'s top bits, leaving a search over the
//! one or two keys usually in it. The answer is exactly the binary search's.

/// At most this many buckets (2^16, 512 KiB of guide) however many keys there are.
const MAX_BUCKET_BITS: u32 = 16;

/// Ascending keys and, per bucket of the key space, the position of its first key.
#[derive(Clone, Debug, Default)]
pub(crate) struct GuidedKeys {
    keys: Vec<u64>,
    /// `guide[b]` is the first position whose key is in bucket `b` or later; one entry more
    /// than there are buckets, the last being `keys.len()`.
    guide: Vec<usize>,
    /// A key's bucket is `key >> shift`.
    shift: u32,
}

impl GuidedKeys {
    /// Indexes `keys`, which must be in ascending order (ties allowed).
    pub(crate) fn new(keys: Vec<u64>) -> Self {
        debug_assert!(keys.is_sorted(), "keys must be sorted");
        let max = keys.last().copied().unwrap_or(0);
        let significant = u64::BITS - max.leading_zeros();
        // About two keys per bucket: fewer buckets than keys keeps the table in cache.
        let wanted = (keys.len() / 2).max(1).next_power_of_two().trailing_zeros();
        let bits = wanted.min(MAX_BUCKET_BITS).min(significant);
        let shift = significant - bits;
        let buckets = 1usize << bits;
        let mut guide = Vec::with_capacity(buckets + 1);
        let mut position = 0;
        for bucket in 0..buckets {
            while keys
                .get(position)
                .is_some_and(|&k| bucket_of(k, shift) < bucket as u64)
            {
                position += 1;
            }
            guide.push(position);
        }
        guide.push(keys.len());
        Self { keys, guide, shift }
    }

    /// The keys, ascending.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> &[u64] {
        &self.keys
    }

    /// Number of keys.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The position of the first key `>= x`, or `len()` if every key is smaller.
    #[inline]
    pub(crate) fn first_at_least(&self, x: u64) -> usize {
        let bucket = usize::try_from(bucket_of(x, self.shift)).unwrap_or(usize::MAX);
        // Keys before `lo` are in earlier buckets (so below `x`), keys from `hi` on are in
        // later ones (so above it): the answer is in `lo..=hi`.
        let Some(&lo) = self.guide.get(bucket) else {
            // Past the last bucket: `x` is above every key.
            return self.keys.len();
        };
        // `bucket` indexes `guide`, so `bucket + 1` cannot overflow.
        let hi = self
            .guide
            .get(bucket + 1)
            .copied()
            .unwrap_or(self.keys.len());
        let within = self.keys.get(lo..hi).unwrap_or_default();
        lo + within.partition_point(|&k| k < x)
    }
}

/// `x >> shift`, where a shift by the full width (one bucket for all keys) gives 0.
#[inline]
fn bucket_of(x: u64, shift: u32) -> u64 {
    x.checked_shr(shift).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn empty_and_single() {
        let empty = GuidedKeys::new(Vec::new());
        assert_eq!(empty.first_at_least(0), 0);
        assert_eq!(empty.first_at_least(u64::MAX), 0);
        let one = GuidedKeys::new(vec![5]);
        assert_eq!(one.first_at_least(0), 0);
        assert_eq!(one.first_at_least(5), 0);
        assert_eq!(one.first_at_least(6), 1);
        let zeros = GuidedKeys::new(vec![0, 0, 0]);
        assert_eq!(zeros.first_at_least(0), 0);
        assert_eq!(zeros.first_at_least(1), 3);
        assert_eq!(zeros.len(), 3);
    }

    #[test]
    fn full_range_keys() {
        let keys = vec![0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX];
        let g = GuidedKeys::new(keys.clone());
        for x in [
            0,
            1,
            2,
            u64::MAX / 2,
            u64::MAX / 2 + 1,
            u64::MAX - 1,
            u64::MAX,
        ] {
            assert_eq!(g.first_at_least(x), keys.partition_point(|&k| k < x), "{x}");
        }
        assert_eq!(g.keys(), &keys[..]);
    }

    proptest! {
        /// The guided search answers exactly what a binary search over the keys does.
        #[test]
        fn matches_binary_search(
            mut keys in prop::collection::vec(any::<u64>(), 0..300),
            small in prop::collection::vec(0u64..1000, 0..300),
            probes in prop::collection::vec(any::<u64>(), 1..50),
        ) {
            keys.sort_unstable();
            let mut small = small;
            small.sort_unstable();
            for keys in [keys, small] {
                let g = GuidedKeys::new(keys.clone());
                let mut xs = probes.clone();
                xs.extend(keys.iter().flat_map(|&k| [k, k.wrapping_add(1), k.wrapping_sub(1)]));
                xs.extend(probes.iter().map(|p| p % 1100));
                for x in xs {
                    prop_assert_eq!(g.first_at_least(x), keys.partition_point(|&k| k < x), "x = {}", x);
                }
            }
        }
    }
}
