//! Hash sets of [`SocketAddr`] with a fast, fixed hasher.
//!
//! `std`'s default SipHash costs tens of nanoseconds per `SocketAddr`; the keys here come from
//! service discovery (the control plane), not from request data an attacker chooses, so
//! flooding resistance is not needed and a multiply-fold hasher does the job in a few. (Lookups
//! on the request path use [`AddrIndex`](super::AddrIndex), which needs no key storage.)

use std::{
    collections::HashSet,
    hash::{BuildHasherDefault, Hasher},
    net::SocketAddr,
};

/// A set of endpoint addresses, hashed with [`AddrHasher`].
pub(crate) type AddrSet = HashSet<SocketAddr, BuildHasherDefault<AddrHasher>>;

/// Odd constants from the digits of pi; any well-mixed odd values would do.
const SEED: u64 = 0x243f_6a88_85a3_08d3;
const MULTIPLIER: u64 = 0x1319_8a2e_0370_7345 | 1;

/// Folds each written word into the state with a 64x64->128-bit multiply, whose high and low
/// halves xored together spread every input bit over the whole output (the low bits index
/// hashbrown's buckets, the high bits fill its control bytes).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AddrHasher {
    state: u64,
}

impl Default for AddrHasher {
    fn default() -> Self {
        Self { state: SEED }
    }
}

impl AddrHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        let product = u128::from(self.state ^ word) * u128::from(MULTIPLIER);
        // Both halves on purpose: the fold is what mixes.
        #[allow(clippy::cast_possible_truncation)]
        let low = product as u64;
        self.state = low ^ (product >> 64) as u64;
    }
}

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            if let Some(prefix) = word.get_mut(..chunk.len()) {
                prefix.copy_from_slice(chunk);
            }
            // The length goes in too, so `[0]` and `[0, 0]` differ.
            self.add(u64::from_le_bytes(word) ^ ((chunk.len() as u64) << 59));
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
    use std::{collections::HashSet as StdSet, hash::BuildHasher};

    use super::*;

    fn hash(addr: SocketAddr) -> u64 {
        BuildHasherDefault::<AddrHasher>::default().hash_one(addr)
    }

    #[test]
    fn maps_find_what_was_inserted() {
        let mut map = std::collections::HashMap::<_, _, BuildHasherDefault<AddrHasher>>::default();
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
        let set: AddrSet = addrs.iter().copied().collect();
        assert_eq!(set.len(), addrs.len());
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
        let mut h = AddrHasher::default();
        h.write(&[0]);
        let mut g = AddrHasher::default();
        g.write(&[0, 0]);
        assert_ne!(h.finish(), g.finish());
    }
}
