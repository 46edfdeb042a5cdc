//! Address to position lookups for state kept in a vector, in one memory access.
//!
//! A load balancer resolves the address in each request event to the endpoint's index, and the
//! outlier detector resolves each outcome's address to its host state. The index is an
//! open-addressing table of (packed address, position) pairs: an IPv4 address and port pack
//! exactly into one word, so a lookup compares words without touching the endpoints; IPv6
//! addresses pack lossily and are confirmed against the caller's own copy. The hash is one
//! multiplication of the packed word (Fibonacci hashing), and collisions probe linearly in a
//! table kept at most two-thirds full.
//!
//! The keys come from service discovery, not from request data, so an attacker cannot pick
//! colliding addresses; a collision only costs an extra probe.

use std::net::SocketAddr;

/// Empty slot marker.
const EMPTY: u32 = u32::MAX;

/// 2^64 divided by the golden ratio, odd: multiplying by it spreads keys over the top bits.
const FIBONACCI: u64 = 0x9e37_79b9_7f4a_7c15;

/// Packed IPv6 addresses have this bit set; packed IPv4 addresses use only the low 48 bits.
const V6_TAG: u64 = 1 << 63;

#[derive(Clone, Copy, Debug)]
struct Slot {
    key: u64,
    /// Position, or [`EMPTY`].
    position: u32,
}

const VACANT: Slot = Slot {
    key: 0,
    position: EMPTY,
};

/// Position lookup by address, for positions whose addresses the caller keeps.
#[derive(Clone, Debug, Default)]
pub(crate) struct AddrIndex {
    /// The length is a power of two (or zero).
    slots: Vec<Slot>,
    /// A hash's slot is its top bits: `hash >> shift`.
    shift: u32,
    /// Number of distinct addresses indexed.
    distinct: usize,
}

impl AddrIndex {
    /// Indexes positions `0..len`, where position `i` holds the address `address_at(i)`. An
    /// address at several positions resolves to the first. Positions from `u32::MAX` on are
    /// not indexed (no endpoint set is that large).
    pub(crate) fn new(len: usize, address_at: impl Fn(usize) -> Option<SocketAddr>) -> Self {
        let len = len.min(EMPTY as usize);
        let bits = (len + len / 2).max(8).next_power_of_two().trailing_zeros();
        let mut index = Self {
            slots: vec![VACANT; 1 << bits],
            shift: u64::BITS - bits,
            distinct: 0,
        };
        for position in 0..len {
            if let Some(address) = address_at(position) {
                if index.find(address, &address_at).is_none() {
                    index.insert(address, position);
                }
            }
        }
        index
    }

    fn insert(&mut self, address: SocketAddr, position: usize) {
        let key = pack(address);
        let mask = self.slots.len() - 1;
        let mut slot = self.home(key);
        while let Some(entry) = self.slots.get_mut(slot) {
            if entry.position == EMPTY {
                *entry = Slot {
                    key,
                    position: position as u32,
                };
                self.distinct += 1;
                return;
            }
            slot = (slot + 1) & mask;
        }
    }

    /// Number of distinct addresses indexed.
    pub(crate) fn len(&self) -> usize {
        self.distinct
    }

    /// The first slot to probe for a packed key.
    #[inline]
    fn home(&self, key: u64) -> usize {
        // `shift` is between 32 and 61: the table has 8 to 2^32 slots.
        key.wrapping_mul(FIBONACCI)
            .checked_shr(self.shift)
            .unwrap_or(0) as usize
    }

    /// The position holding `address`. `address_at` is consulted only for IPv6 addresses and
    /// must agree with the one the index was built with on the positions indexed.
    #[inline]
    pub(crate) fn get(
        &self,
        address: SocketAddr,
        address_at: impl Fn(usize) -> Option<SocketAddr>,
    ) -> Option<usize> {
        self.find(address, &address_at)
    }

    #[inline]
    fn find(
        &self,
        address: SocketAddr,
        address_at: &impl Fn(usize) -> Option<SocketAddr>,
    ) -> Option<usize> {
        let mask = self.slots.len().checked_sub(1)?;
        let key = pack(address);
        let mut slot = self.home(key);
        // The table is never full, so an empty slot ends every probe sequence.
        loop {
            let entry = *self.slots.get(slot)?;
            if entry.position == EMPTY {
                return None;
            }
            let position = entry.position as usize;
            // IPv4 keys are the address itself; IPv6 keys only narrow it down.
            if entry.key == key && (key & V6_TAG == 0 || address_at(position) == Some(address)) {
                return Some(position);
            }
            slot = (slot + 1) & mask;
        }
    }
}

/// The address folded into one word: exact (injective) for IPv4, a mix for IPv6.
#[inline]
fn pack(address: SocketAddr) -> u64 {
    match address {
        SocketAddr::V4(v4) => (u64::from(v4.ip().to_bits()) << 16) | u64::from(v4.port()),
        SocketAddr::V6(v6) => {
            let ip = v6.ip().to_bits();
            let halves = (ip as u64) ^ ((ip >> 64) as u64).rotate_left(32);
            let extra = (u64::from(v6.flowinfo()) << 32) | u64::from(v6.scope_id());
            (halves ^ extra.rotate_left(16) ^ u64::from(v6.port())).wrapping_mul(FIBONACCI) | V6_TAG
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn v4(i: u32, port: u16) -> SocketAddr {
        SocketAddr::from((i.to_be_bytes(), port))
    }

    #[test]
    fn finds_every_position_and_nothing_else() {
        let addrs: Vec<SocketAddr> = (0..3000u32)
            .map(|i| v4(0x0a00_0000 + i, 8080))
            .chain([
                "[fe80::1%2]:443".parse().unwrap(),
                "[fe80::1%3]:443".parse().unwrap(),
                "[::ffff:10.0.0.1]:8080".parse().unwrap(),
            ])
            .collect();
        let at = |i: usize| addrs.get(i).copied();
        let index = AddrIndex::new(addrs.len(), at);
        for (i, &a) in addrs.iter().enumerate() {
            assert_eq!(index.get(a, at), Some(i), "{a}");
        }
        for a in [
            v4(0x0a00_0000, 8081),
            v4(0x0b00_0000, 8080),
            "[::1]:1".parse().unwrap(),
        ] {
            assert_eq!(index.get(a, at), None, "{a}");
        }
        let empty = AddrIndex::default();
        assert_eq!(empty.get(addrs[0], at), None);
        let none = AddrIndex::new(0, at);
        assert_eq!(none.get(addrs[0], at), None);
    }

    #[test]
    fn ipv6_keys_that_collide_are_told_apart() {
        // The packing folds the flow label onto the port's bits: port 81 with flow label
        // 2^16 packs like port 80 without one.
        let a: SocketAddr = "[fe80::1]:80".parse().unwrap();
        let b = SocketAddr::V6(std::net::SocketAddrV6::new(
            "fe80::1".parse().unwrap(),
            81,
            1 << 16,
            0,
        ));
        assert_eq!(pack(a), pack(b));
        let addrs = [a, b];
        let at = |i: usize| addrs.get(i).copied();
        let index = AddrIndex::new(addrs.len(), at);
        assert_eq!(index.get(a, at), Some(0));
        assert_eq!(index.get(b, at), Some(1));
        assert_eq!(index.len(), 2);
        let only_a = AddrIndex::new(1, at);
        assert_eq!(only_a.get(b, at), None);
    }

    #[test]
    fn repeats_resolve_to_the_first_position() {
        let addrs = [v4(1, 1), v4(2, 2), v4(1, 1), v4(2, 2), v4(3, 3)];
        let at = |i: usize| addrs.get(i).copied();
        let index = AddrIndex::new(addrs.len(), at);
        assert_eq!(index.get(v4(1, 1), at), Some(0));
        assert_eq!(index.get(v4(2, 2), at), Some(1));
        assert_eq!(index.get(v4(3, 3), at), Some(4));
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn sequential_addresses_spread() {
        // 1024 neighbouring endpoints in a 2048-slot table: few probe past their home slot.
        let addrs: Vec<SocketAddr> = (0..1024u32).map(|i| v4(0x0a00_0000 + i, 80)).collect();
        let index = AddrIndex::new(addrs.len(), |i| addrs.get(i).copied());
        let displaced = addrs
            .iter()
            .enumerate()
            .filter(|&(i, &a)| index.slots[index.home(pack(a))].position as usize != i)
            .count();
        assert!(displaced < 400, "{displaced} of 1024 displaced");
        // IPv4 lookups never read the caller's addresses.
        assert_eq!(index.get(addrs[7], |_| None), Some(7));
    }

    proptest! {
        /// Agrees with a linear search for the first position of each address.
        #[test]
        fn matches_linear_search(
            raw in prop::collection::vec((0u32..64, 0u16..4, any::<bool>()), 0..200),
            probes in prop::collection::vec((0u32..64, 0u16..4, any::<bool>()), 1..40),
        ) {
            let make = |(ip, port, six): (u32, u16, bool)| {
                if six {
                    SocketAddr::from(([0xfe80, 0, 0, 0, 0, 0, 0, ip as u16], port))
                } else {
                    v4(ip, port)
                }
            };
            let addrs: Vec<SocketAddr> = raw.into_iter().map(make).collect();
            let at = |i: usize| addrs.get(i).copied();
            let index = AddrIndex::new(addrs.len(), at);
            for a in probes.into_iter().map(make).chain(addrs.iter().copied()) {
                prop_assert_eq!(index.get(a, at), addrs.iter().position(|&b| b == a));
            }
        }
    }
}
