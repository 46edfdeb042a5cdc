//! Per-key buckets in bounded memory.
//!
//! A rule keyed by a request attribute (a principal, a header value) gets one bucket per
//! distinct value, and a caller chooses those values. So the table holds at most `max_keys`
//! buckets, in least-recently-used order, and a new key gets a slot only when one can be
//! freed *without changing any decision*:
//!
//! - a free slot, or
//! - the least recently used bucket, if it has refilled completely: a full bucket is exactly
//!   what a new bucket for that key would be, so forgetting it is lossless.
//!
//! Otherwise the request is counted against one shared *overflow* bucket (same shape as the
//! others). A caller rotating keys therefore cannot grow memory, cannot evict a bucket that
//! still remembers recent traffic (resetting someone's limit), and all its fresh keys together
//! get one bucket's worth of requests until old slots refill.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hash, Hasher, RandomState},
};

use mesh_core::clock::Timestamp;

use super::bucket::{BucketParams, TokenBucket};

/// A 128-bit digest of a key's attribute values, so every slot has the same small size
/// whatever the values' length. Made with two independently seeded SipHash instances: a
/// caller cannot aim collisions without knowing the seeds, and accidental ones are
/// negligible (~2^-100 among a million keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct KeyDigest(u128);

/// Computes [`KeyDigest`]s for one limiter.
#[derive(Clone, Debug, Default)]
pub(crate) struct KeyHasher {
    low: RandomState,
    high: RandomState,
}

impl KeyHasher {
    /// The digest of `parts` (each `None` = attribute absent, distinct from an empty value).
    pub(crate) fn digest<'a>(
        &self,
        parts: impl Iterator<Item = Option<&'a str>> + Clone,
    ) -> KeyDigest {
        let hash = |state: &RandomState| {
            let mut hasher = state.build_hasher();
            for part in parts.clone() {
                match part {
                    None => hasher.write_u8(0),
                    Some(value) => {
                        hasher.write_u8(1);
                        value.hash(&mut hasher);
                    }
                }
            }
            hasher.finish()
        };
        KeyDigest((u128::from(hash(&self.high)) << 64) | u128::from(hash(&self.low)))
    }
}

/// Where a request's token came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// The key's own bucket (index into the table).
    Own(usize),
    /// The shared overflow bucket: the table was full of buckets still in use.
    Overflow,
}

const NONE: usize = usize::MAX;

#[derive(Debug)]
struct Node {
    key: KeyDigest,
    bucket: TokenBucket,
    /// Towards the most recently used end.
    newer: usize,
    /// Towards the least recently used end.
    older: usize,
}

/// At most `capacity` buckets by key, plus the overflow bucket.
#[derive(Debug)]
pub(crate) struct KeyedBuckets {
    capacity: usize,
    index: HashMap<KeyDigest, usize>,
    nodes: Vec<Node>,
    /// Most recently used.
    newest: usize,
    /// Least recently used.
    oldest: usize,
    overflow: TokenBucket,
}

impl KeyedBuckets {
    /// An empty table of at most `capacity` (at least 1) keys.
    pub(crate) fn new(capacity: usize, params: &BucketParams, now: Timestamp) -> Self {
        Self {
            capacity: capacity.max(1),
            index: HashMap::new(),
            nodes: Vec::new(),
            newest: NONE,
            oldest: NONE,
            overflow: TokenBucket::full(params, now),
        }
    }

    /// Buckets currently held (not counting the overflow bucket).
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Finds or makes the bucket for `key` at `now`, marking it most recently used.
    pub(crate) fn slot(&mut self, key: KeyDigest, params: &BucketParams, now: Timestamp) -> Slot {
        if let Some(&i) = self.index.get(&key) {
            self.touch(i);
            return Slot::Own(i);
        }
        if self.nodes.len() < self.capacity {
            let i = self.nodes.len();
            self.nodes.push(Node {
                key,
                bucket: TokenBucket::full(params, now),
                newer: NONE,
                older: NONE,
            });
            self.index.insert(key, i);
            self.push_newest(i);
            return Slot::Own(i);
        }
        let victim = self.oldest;
        let Some(node) = self.nodes.get_mut(victim) else {
            return Slot::Overflow;
        };
        node.bucket.refill(params, now);
        if !node.bucket.is_full(params) {
            return Slot::Overflow;
        }
        let old_key = node.key;
        node.key = key;
        node.bucket = TokenBucket::full(params, now);
        self.index.remove(&old_key);
        self.index.insert(key, victim);
        self.touch(victim);
        Slot::Own(victim)
    }

    /// The bucket behind a slot returned by [`slot`](Self::slot).
    pub(crate) fn bucket(&mut self, slot: Slot) -> &mut TokenBucket {
        match slot {
            Slot::Own(i) => match self.nodes.get_mut(i) {
                Some(node) => &mut node.bucket,
                // Slots are used right after `slot()` under the same lock; never reached.
                None => &mut self.overflow,
            },
            Slot::Overflow => &mut self.overflow,
        }
    }

    fn touch(&mut self, i: usize) {
        if self.newest == i {
            return;
        }
        self.unlink(i);
        self.push_newest(i);
    }

    fn unlink(&mut self, i: usize) {
        let (newer, older) = (self.nodes[i].newer, self.nodes[i].older);
        match self.nodes.get_mut(newer) {
            Some(n) => n.older = older,
            None => self.newest = older,
        }
        match self.nodes.get_mut(older) {
            Some(n) => n.newer = newer,
            None => self.oldest = newer,
        }
    }

    fn push_newest(&mut self, i: usize) {
        let previous = self.newest;
        self.nodes[i].newer = NONE;
        self.nodes[i].older = previous;
        match self.nodes.get_mut(previous) {
            Some(n) => n.newer = i,
            None => self.oldest = i,
        }
        self.newest = i;
    }

    /// Keys from most to least recently used (for tests).
    #[cfg(test)]
    fn order(&self) -> Vec<KeyDigest> {
        let mut out = Vec::new();
        let mut i = self.newest;
        while let Some(node) = self.nodes.get(i) {
            out.push(node.key);
            i = node.older;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mesh_core::clock::Timestamp;

    use super::{KeyDigest, KeyHasher, KeyedBuckets, Slot};
    use crate::ratelimit::bucket::BucketParams;

    fn k(n: u128) -> KeyDigest {
        KeyDigest(n)
    }

    #[test]
    fn digests_separate_absent_empty_and_boundaries() {
        let h = KeyHasher::default();
        let d = |parts: &[Option<&str>]| h.digest(parts.iter().copied());
        assert_ne!(d(&[None]), d(&[Some("")]));
        assert_ne!(d(&[Some("ab"), Some("c")]), d(&[Some("a"), Some("bc")]));
        assert_eq!(d(&[Some("x"), None]), d(&[Some("x"), None]));
        assert_ne!(
            KeyHasher::default().digest([Some("x")].into_iter()),
            d(&[Some("x")])
        );
    }

    #[test]
    fn lru_order_and_lossless_eviction_only() {
        let p = BucketParams::new(1, 1, Duration::from_secs(1)).unwrap();
        let t0 = Timestamp::ZERO;
        let mut table = KeyedBuckets::new(2, &p, t0);
        for key in [1, 2] {
            let slot = table.slot(k(key), &p, t0);
            assert!(table.bucket(slot).take(&p));
        }
        assert_eq!(table.order(), [k(2), k(1)]);
        assert_eq!(table.slot(k(1), &p, t0), Slot::Own(0));
        assert_eq!(table.order(), [k(1), k(2)]);
        // Full of buckets that still remember traffic: key 3 overflows, nothing is evicted.
        assert_eq!(table.slot(k(3), &p, t0), Slot::Overflow);
        assert_eq!(table.len(), 2);
        // Once the least recently used bucket (key 2) has refilled, it makes room.
        let later = Timestamp::from_nanos(1_000_000_000);
        assert_eq!(table.slot(k(3), &p, later), Slot::Own(1));
        assert_eq!(table.order(), [k(3), k(1)]);
        // Key 2 comes back with a full bucket, as if it had never been forgotten.
        assert_eq!(
            table.slot(k(2), &p, later),
            Slot::Own(0),
            "key 1 had refilled too"
        );
        assert!(table.bucket(Slot::Own(0)).take(&p));
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn capacity_one_and_overflow_bucket_limits() {
        let p = BucketParams::new(2, 1, Duration::from_secs(1)).unwrap();
        let t0 = Timestamp::ZERO;
        let mut table = KeyedBuckets::new(0, &p, t0);
        let s = table.slot(k(1), &p, t0);
        assert!(table.bucket(s).take(&p));
        let mut admitted = 0;
        for key in 2..100 {
            let s = table.slot(k(key), &p, t0);
            assert_eq!(s, Slot::Overflow);
            admitted += usize::from(table.bucket(s).take(&p));
        }
        assert_eq!(admitted, 2, "rotating keys share one bucket");
        assert_eq!(table.len(), 1);
    }
}
