//! Hash maps and sets with a fast, fixed hasher, for keys the control plane or the
//! application chooses (endpoint addresses, service host names), never a remote peer.
//!
//! `std`'s default SipHash resists hash flooding, which matters only when an attacker chooses
//! the keys *inserted*; it costs tens of nanoseconds per key, several times per request when a
//! request looks up its service, balancer, pool and metric series. The keys of the maps that
//! use [`FastMap`] come from service discovery and configuration (the control plane) or from
//! the application's own requests, so a multiply-fold hasher does the job in a few nanoseconds.
//! Do not use it for maps whose keys a remote peer controls.

use std::{
    collections::{HashMap, HashSet},
    hash::{BuildHasherDefault, Hasher},
};

/// A hash map with [`FastHasher`]: `FastMap::default()` to create one.
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// A hash set with [`FastHasher`]: `FastSet::default()` to create one.
pub type FastSet<K> = HashSet<K, BuildHasherDefault<FastHasher>>;

/// Odd constants from the digits of pi; any well-mixed odd values would do.
const SEED: u64 = 0x243f_6a88_85a3_08d3;
const MULTIPLIER: u64 = 0x1319_8a2e_0370_7345 | 1;

/// Folds each written word into the state with a 64x64->128-bit multiply, whose high and low
/// halves xored together spread every input bit over the whole output (the low bits index
/// hashbrown's buckets, the high bits fill its control bytes).
#[derive(Clone, Copy, Debug)]
pub struct FastHasher {
    state: u64,
}

impl Default for FastHasher {
    fn default() -> Self {
        Self { state: SEED }
    }
}

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        let product = u128::from(self.state ^ word) * u128::from(MULTIPLIER);
        // Both halves on purpose: the fold is what mixes.
        #[allow(clippy::cast_possible_truncation)]
        let low = product as u64;
        self.state = low ^ (product >> 64) as u64;
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Whole words are read in place (no copy); the tail is padded with zeros. The length of
        // each word goes in too, so `[0]` and `[0, 0]` differ.
        let mut words = bytes.chunks_exact(8);
        for chunk in &mut words {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word) ^ (8u64 << 59));
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            let mut word = [0u8; 8];
            for (slot, byte) in word.iter_mut().zip(tail) {
                *slot = *byte;
            }
            self.add(u64::from_le_bytes(word) ^ ((tail.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_u128(&mut self, i: u128) {
        #[allow(clippy::cast_possible_truncation)]
        self.add(i as u64);
        self.add((i >> 64) as u64);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.state
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashSet as StdSet, hash::BuildHasher, net::SocketAddr};

    use super::*;

    fn hash(addr: SocketAddr) -> u64 {
        BuildHasherDefault::<FastHasher>::default().hash_one(addr)
    }

    #[test]
    fn maps_find_what_was_inserted() {
        let mut map: FastMap<SocketAddr, usize> = FastMap::default();
        let addrs: Vec<SocketAddr> = (0..2000u32)
            .map(|i| SocketAddr::from(([10, (i >> 8) as u8, i as u8, 1], 8080)))
            .chain([
                "[fe80::1%2]:443".parse().unwrap(),
                "[::1]:80".parse().unwrap(),
            ])
            .collect();
        for (i, &a) in addrs.iter().enumerate() {
            map.insert(a, i);
        }
        for (i, a) in addrs.iter().enumerate() {
            assert_eq!(map.get(a), Some(&i));
        }
        assert_eq!(map.get(&"10.255.255.255:1".parse().unwrap()), None);
        let set: FastSet<SocketAddr> = addrs.iter().copied().collect();
        assert_eq!(set.len(), addrs.len());
    }

    #[test]
    fn strings_hash_apart() {
        let build = BuildHasherDefault::<FastHasher>::default();
        let hosts = [
            "a.svc",
            "b.svc",
            "a.svc.",
            "reviews.default.svc.cluster.local",
            "",
        ];
        let hashes: StdSet<u64> = hosts.iter().map(|h| build.hash_one(h)).collect();
        assert_eq!(hashes.len(), hosts.len());
        let mut map: FastMap<String, usize> = FastMap::default();
        for (i, h) in hosts.iter().enumerate() {
            map.insert((*h).to_owned(), i);
        }
        assert_eq!(map.get("a.svc."), Some(&2));
        assert_eq!(map.get("c.svc"), None);
    }

    #[test]
    fn nearby_addresses_spread_over_buckets() {
        // Sequential IPs and ports must not share low bits (bucket index) or top bits (tags).
        let mut low = StdSet::new();
        let mut top = StdSet::new();
        for i in 0..1024u32 {
            let h = hash(SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 80)));
            low.insert(h & 1023);
            top.insert(h >> 57);
        }
        assert!(low.len() > 550, "{} distinct low values", low.len());
        assert_eq!(top.len(), 128);
        assert_ne!(
            hash("10.0.0.1:80".parse().unwrap()),
            hash("10.0.0.1:81".parse().unwrap())
        );
        let mut h = FastHasher::default();
        h.write(&[0]);
        let mut g = FastHasher::default();
        g.write(&[0, 0]);
        assert_ne!(h.finish(), g.finish());
    }
}
