//! Hashing that every process agrees on, for consistent-hash keys and ring placement.
//!
//! `std`'s hashers are randomly keyed or may change between Rust releases; consistent hashing
//! needs two clients of one service, built by different compilers, to send a key to the same
//! endpoint. So the mesh uses its own: 64-bit FNV-1a over the bytes, finished with the SplitMix64
//! mixer so that similar inputs (`10.0.0.1:80_1`, `10.0.0.1:80_2`) land far apart.

use std::net::IpAddr;

use crate::{SpiffeId, rng::mix64};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// A stable 64-bit hash of `bytes` (FNV-1a with a SplitMix64 finish).
///
/// The value is part of the mesh's behaviour: changing it moves every consistent-hash key, so it
/// must stay fixed across versions.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    mix64(h)
}

/// Combines a hash with a small integer (a replica number, a seed) into a new stable hash.
pub(crate) fn hash_pair(hash: u64, n: u64) -> u64 {
    mix64(hash ^ mix64(n.wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// What a consistent-hash balancer hashes to choose an endpoint: the same key, the same endpoint.
///
/// Istio's `consistentHash` takes the key from a header, a cookie, a query parameter or the
/// source IP; the request layer extracts those bytes and builds a key here. Keys from different
/// sources that happen to have equal bytes are equal keys, as in Envoy.
///
/// ```
/// use mesh_core::balance::HashKey;
/// let a = HashKey::from_bytes(b"user-42");
/// assert_eq!(a, HashKey::from_bytes(b"user-42"));
/// assert_ne!(a, HashKey::from_bytes(b"user-43"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HashKey(u64);

impl HashKey {
    /// A key that is already a well-spread 64-bit hash.
    pub const fn from_hash(hash: u64) -> Self {
        Self(hash)
    }

    /// A key from raw bytes: a header value, a cookie value, a query parameter.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(stable_hash(bytes))
    }

    /// A key from the caller's IP address (Istio's `useSourceIp`).
    pub fn from_source_ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::from_bytes(&v4.octets()),
            IpAddr::V6(v6) => Self::from_bytes(&v6.octets()),
        }
    }

    /// A key from the caller's SPIFFE ID, for affinity by workload identity.
    pub fn from_identity(id: &SpiffeId) -> Self {
        Self::from_bytes(id.to_string().as_bytes())
    }

    /// The 64-bit hash.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

/// The key a consistent-hash balancer looks up: the request's hash key, or, for requests that
/// carry none, a spread-out sequence (so keyless traffic still covers every endpoint).
pub(super) fn pick_key(ctx: &super::PickContext, counter: &mut u64) -> u64 {
    ctx.hash().map_or_else(
        || {
            *counter = counter.wrapping_add(1);
            mix64(*counter)
        },
        |k| k.as_u64(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_values_are_pinned() {
        // These values are behaviour: if they change, every consistent-hash key moves.
        assert_eq!(stable_hash(b""), mix64(FNV_OFFSET));
        assert_eq!(stable_hash(b"a"), mix64(0xaf63_dc4c_8601_ec8c));
        assert_ne!(stable_hash(b"ab"), stable_hash(b"ba"));
    }

    #[test]
    fn keys_from_sources() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(
            HashKey::from_source_ip(ip),
            HashKey::from_bytes(&[10, 1, 2, 3])
        );
        let v6: IpAddr = "::1".parse().unwrap();
        assert_ne!(HashKey::from_source_ip(v6), HashKey::from_source_ip(ip));
        let id: SpiffeId = "spiffe://td/ns/a/sa/b".parse().unwrap();
        assert_eq!(
            HashKey::from_identity(&id),
            HashKey::from_bytes(b"spiffe://td/ns/a/sa/b")
        );
        assert_eq!(HashKey::from_hash(7).as_u64(), 7);
        assert_ne!(hash_pair(1, 0), hash_pair(1, 1));
    }
}
