//! A fast hasher for the compiled sets and indexes.
//!
//! std's SipHash resists hash flooding, which matters when an attacker chooses the keys
//! *inserted*. Here every key comes from policy documents, written by operators; requests only
//! look keys up, and a lookup cannot lengthen a chain. So the cheaper multiply-rotate hash
//! (the FxHash family, as in rustc) is safe, and it takes most of the cost out of a decision.

use std::{
    collections::{HashMap, HashSet},
    hash::{BuildHasherDefault, Hasher},
};

/// A hash map keyed by policy values.
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
/// A hash set of policy values.
pub(crate) type FastSet<K> = HashSet<K, BuildHasherDefault<FastHasher>>;

/// A 64-bit key for `text`: what the principal and namespace indexes are keyed by, so that a
/// request's value is hashed once per decision rather than once per index probed.
pub(crate) fn text_key(text: &str) -> u64 {
    let mut hasher = FastHasher::default();
    hasher.write(text.as_bytes());
    hasher.finish()
}

/// Up to this many values a [`ValueSet`] compares them one by one: for the one to four values
/// most policy fields list, a few length-checked comparisons beat hashing the request's value.
const LINEAR_MAX: usize = 8;

/// A set of policy values (principals, methods, network addresses) for membership tests.
///
/// Few values are kept in a list scanned in order; more go to a [`FastSet`], so a field with
/// thousands of principals still costs one hash probe.
#[derive(Clone, Debug)]
pub(crate) enum ValueSet<T> {
    /// At most [`LINEAR_MAX`] distinct values.
    Few(Box<[T]>),
    /// More.
    Many(FastSet<T>),
}

impl<T> Default for ValueSet<T> {
    fn default() -> Self {
        Self::Few(Box::default())
    }
}

impl<T: std::hash::Hash + Eq> ValueSet<T> {
    /// The set of `values` (duplicates kept once).
    pub(crate) fn new(values: impl IntoIterator<Item = T>) -> Self {
        let mut few: Vec<T> = Vec::new();
        let mut values = values.into_iter();
        for value in values.by_ref() {
            if few.contains(&value) {
                continue;
            }
            few.push(value);
            if few.len() > LINEAR_MAX {
                let mut many: FastSet<T> = few.into_iter().collect();
                many.extend(values);
                return Self::Many(many);
            }
        }
        Self::Few(few.into_boxed_slice())
    }

    /// Whether `value` is in the set.
    pub(crate) fn contains<Q>(&self, value: &Q) -> bool
    where
        T: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        match self {
            Self::Few(few) => few.iter().any(|v| v.borrow() == value),
            Self::Many(many) => many.contains(value),
        }
    }
}

/// Multiply-rotate hashing, eight bytes at a time, with a final mix so the high bits (which
/// the table uses for its control bytes) depend on every input bit.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FastHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_u128(&mut self, n: u128) {
        // Truncations on purpose: the two halves.
        self.add(n as u64);
        self.add((n >> 64) as u64);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        // splitmix64's finaliser.
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::{FastMap, FastSet, LINEAR_MAX, ValueSet};

    #[test]
    fn value_sets_agree_below_and_above_the_linear_limit() {
        for n in [0, 1, LINEAR_MAX, LINEAR_MAX + 1, 100] {
            let values: Vec<Box<str>> = (0..n).map(|i| format!("v{i}").into()).collect();
            // Every value twice: duplicates do not count towards the limit.
            let set = ValueSet::new(values.iter().chain(&values).cloned());
            assert_eq!(matches!(set, ValueSet::Many(_)), n > LINEAR_MAX, "{n}");
            for i in 0..n {
                assert!(set.contains(format!("v{i}").as_str()), "{n}: v{i}");
            }
            assert!(!set.contains("v") && !set.contains(format!("v{n}").as_str()));
        }
    }

    #[test]
    fn maps_and_sets_work_with_strings_and_integers() {
        let mut set: FastSet<Box<str>> = FastSet::default();
        for s in [
            "",
            "a",
            "abcdefgh",
            "abcdefghi",
            "cluster.local/ns/shop/sa/web",
        ] {
            set.insert(s.into());
        }
        assert!(set.contains("abcdefghi") && set.contains("") && !set.contains("abcdefg"));
        let mut map: FastMap<u32, usize> = FastMap::default();
        for i in 0..10_000u32 {
            map.insert(i << 8, i as usize);
        }
        assert_eq!(map.get(&(42 << 8)), Some(&42));
        assert_eq!(map.len(), 10_000);
    }
}
