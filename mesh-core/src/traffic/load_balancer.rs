//! `loadBalancer`: which algorithm, what consistent hashing hashes, locality preference.

use std::time::Duration;

use super::RequestView;
use crate::balance::{HashKey, LocalityRules, MaglevConfig, Policy, RingHashConfig};

/// How endpoints are chosen (Istio `loadBalancer.simple` or `consistentHash`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Algorithm {
    /// `LEAST_REQUEST` (also `UNSPECIFIED` and the deprecated `LEAST_CONN`): Istio's default.
    #[default]
    LeastRequest,
    /// `ROUND_ROBIN`, weight-aware.
    RoundRobin,
    /// `RANDOM`, weight-aware.
    Random,
    /// `consistentHash`.
    ConsistentHash(ConsistentHash),
}

/// Consistent hashing: what to hash and which table to hash into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsistentHash {
    /// Where the key comes from; `None`: requests carry no key and are spread.
    pub key: Option<HashKeySource>,
    /// Ring hash or Maglev.
    pub table: HashTable,
}

/// Where a consistent-hash key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HashKeySource {
    /// `httpHeaderName`: the value of this header (name in lowercase).
    Header(String),
    /// `httpCookie`: the value of this cookie.
    Cookie(HashCookie),
    /// `useSourceIp: true`: the caller's IP address.
    SourceIp,
    /// `httpQueryParameterName`: the value of this query parameter.
    QueryParameter(String),
}

/// `consistentHash.httpCookie`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashCookie {
    /// The cookie's name.
    pub name: String,
    /// The path set on a generated cookie.
    pub path: Option<String>,
    /// Lifetime of a generated cookie; Envoy generates one when the request has none and a TTL
    /// is set (zero: a session cookie). Generating it is the request layer's business.
    pub ttl: Option<Duration>,
}

impl HashKeySource {
    /// The key for `request`, or `None` when the request does not carry it (the balancer then
    /// spreads the request pseudo-randomly, as Envoy does).
    pub fn hash_key(&self, request: &(impl RequestView + ?Sized)) -> Option<HashKey> {
        match self {
            Self::Header(name) => request
                .header(name)
                .map(|v| HashKey::from_bytes(v.as_bytes())),
            Self::Cookie(cookie) => request
                .cookie(&cookie.name)
                .map(|v| HashKey::from_bytes(v.as_bytes())),
            Self::SourceIp => request.source_ip().map(HashKey::from_source_ip),
            Self::QueryParameter(name) => request
                .query_param(name)
                .map(|v| HashKey::from_bytes(v.as_bytes())),
        }
    }
}

/// The consistent-hash table (Istio `ringHash` or `maglev`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HashTable {
    /// Ketama ring with at least this many points (Istio's default when neither is given).
    RingHash {
        /// `minimumRingSize` (default 1024).
        minimum_ring_size: u64,
    },
    /// Maglev lookup table.
    Maglev {
        /// `tableSize`, a prime (default 65537).
        table_size: u64,
    },
}

impl Default for HashTable {
    fn default() -> Self {
        Self::RingHash {
            minimum_ring_size: RingHashConfig::default().minimum_ring_size,
        }
    }
}

/// Istio `loadBalancer`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadBalancerSettings {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// `localityLbSetting.enabled`; `None` follows the mesh default (enabled).
    pub locality_enabled: Option<bool>,
    /// `localityLbSetting.distribute`, `failover` and `failoverPriority` (validated; the
    /// caller's labels are left empty here and filled in by
    /// [`EffectiveTrafficPolicy::priority_config_for`](super::EffectiveTrafficPolicy::priority_config_for)).
    pub locality_rules: LocalityRules,
}

impl LoadBalancerSettings {
    /// Settings with `algorithm` and the default locality behaviour.
    pub fn new(algorithm: Algorithm) -> Self {
        Self {
            algorithm,
            locality_enabled: None,
            locality_rules: LocalityRules::default(),
        }
    }

    /// The balancer policy to build ([`Policy::build`]).
    pub fn policy(&self) -> Policy {
        match &self.algorithm {
            Algorithm::LeastRequest => Policy::LeastRequest,
            Algorithm::RoundRobin => Policy::RoundRobin,
            Algorithm::Random => Policy::Random,
            Algorithm::ConsistentHash(hash) => match hash.table {
                HashTable::RingHash { minimum_ring_size } => Policy::RingHash(RingHashConfig {
                    minimum_ring_size,
                    maximum_ring_size: RingHashConfig::default()
                        .maximum_ring_size
                        .max(minimum_ring_size),
                }),
                HashTable::Maglev { table_size } => Policy::Maglev(MaglevConfig { table_size }),
            },
        }
    }

    /// The consistent-hash key source, when the algorithm hashes.
    pub fn hash_key_source(&self) -> Option<&HashKeySource> {
        match &self.algorithm {
            Algorithm::ConsistentHash(hash) => hash.key.as_ref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::RequestAttributes;

    #[test]
    fn policies() {
        assert_eq!(
            LoadBalancerSettings::default().policy(),
            Policy::LeastRequest
        );
        let maglev = LoadBalancerSettings::new(Algorithm::ConsistentHash(ConsistentHash {
            key: Some(HashKeySource::SourceIp),
            table: HashTable::Maglev { table_size: 1031 },
        }));
        assert_eq!(
            maglev.policy(),
            Policy::Maglev(MaglevConfig { table_size: 1031 })
        );
        assert_eq!(maglev.hash_key_source(), Some(&HashKeySource::SourceIp));
        let ring = LoadBalancerSettings::new(Algorithm::ConsistentHash(ConsistentHash {
            key: None,
            table: HashTable::default(),
        }));
        assert_eq!(ring.policy(), Policy::RingHash(RingHashConfig::default()));
    }

    #[test]
    fn keys_from_requests() {
        let r = RequestAttributes::new("GET", "/?user=7")
            .with_header("x-user", "alice")
            .with_header("cookie", "s=abc")
            .with_source_ip("10.0.0.1".parse().unwrap());
        let key = |s: HashKeySource| s.hash_key(&r);
        assert_eq!(
            key(HashKeySource::Header("x-user".into())),
            Some(HashKey::from_bytes(b"alice"))
        );
        assert_eq!(key(HashKeySource::Header("x-none".into())), None);
        let cookie = HashCookie {
            name: "s".into(),
            path: None,
            ttl: None,
        };
        assert_eq!(
            key(HashKeySource::Cookie(cookie)),
            Some(HashKey::from_bytes(b"abc"))
        );
        assert_eq!(
            key(HashKeySource::QueryParameter("user".into())),
            Some(HashKey::from_bytes(b"7"))
        );
        assert_eq!(
            key(HashKeySource::SourceIp),
            Some(HashKey::from_source_ip("10.0.0.1".parse().unwrap()))
        );
    }
}
