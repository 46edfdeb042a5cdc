//! Address sets compiled for lookup: CIDR tables keyed by prefix length, and sorted ports.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use super::hash::ValueSet;

/// IP blocks as one hash set of network addresses per prefix length.
///
/// A lookup masks the address once per distinct prefix length present (longest first) and
/// probes the set, so its cost follows the number of distinct lengths (a handful in practice),
/// not the number of blocks.
#[derive(Clone, Debug, Default)]
pub(crate) struct CidrSet {
    v4: Vec<(u8, ValueSet<u32>)>,
    v6: Vec<(u8, ValueSet<u128>)>,
}

impl CidrSet {
    pub(crate) fn new(blocks: &[IpNet]) -> Self {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for block in blocks {
            match block {
                IpNet::V4(net) => {
                    let len = net.prefix_len();
                    v4.push((len, u32::from(net.addr()) & mask4(len)));
                }
                IpNet::V6(net) => {
                    let len = net.prefix_len();
                    v6.push((len, u128::from(net.addr()) & mask6(len)));
                }
            }
        }
        Self {
            v4: by_length(v4),
            v6: by_length(v6),
        }
    }

    /// Whether `ip` lies in any block. IPv4-mapped IPv6 addresses are expected to have been
    /// converted to IPv4 by the caller (the request view does it once).
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(ip) => {
                let ip = u32::from(ip);
                self.v4
                    .iter()
                    .any(|(len, set)| set.contains(&(ip & mask4(*len))))
            }
            IpAddr::V6(ip) => {
                let ip = u128::from(ip);
                self.v6
                    .iter()
                    .any(|(len, set)| set.contains(&(ip & mask6(*len))))
            }
        }
    }
}

/// The networks grouped by prefix length, longest first.
fn by_length<T: std::hash::Hash + Eq + Copy>(mut nets: Vec<(u8, T)>) -> Vec<(u8, ValueSet<T>)> {
    nets.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
    let mut table = Vec::new();
    let mut rest = nets.as_slice();
    while let Some(&(len, _)) = rest.first() {
        let same = rest.iter().take_while(|(l, _)| *l == len).count();
        let (group, tail) = rest.split_at(same);
        table.push((len, ValueSet::new(group.iter().map(|(_, addr)| *addr))));
        rest = tail;
    }
    table
}

fn mask4(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

fn mask6(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

/// Ports as a sorted list, searched by bisection.
#[derive(Clone, Debug, Default)]
pub(crate) struct PortSet(Box<[u16]>);

impl PortSet {
    pub(crate) fn new(ports: &[u16]) -> Self {
        let mut ports = ports.to_vec();
        ports.sort_unstable();
        ports.dedup();
        Self(ports.into_boxed_slice())
    }

    pub(crate) fn contains(&self, port: u16) -> bool {
        self.0.binary_search(&port).is_ok()
    }
}

/// The bucket width of the cross-rule index: a request probes one `/16` (IPv4) or `/48`
/// (IPv6) bucket, which holds every rule with a block overlapping it.
const V4_BUCKET: u8 = 16;
const V6_BUCKET: u8 = 48;
/// Blocks wider than a bucket are filed under each bucket they cover, up to 2^8 of them;
/// wider ones (a `/0`, say) are not worth indexing.
const MAX_SPREAD_BITS: u8 = 8;

/// The index buckets a block covers, or `None` if it is too wide to file.
pub(crate) fn buckets(block: &IpNet) -> Option<Vec<Bucket>> {
    match block {
        IpNet::V4(net) => {
            let base = u32::from(net.addr()) & mask4(V4_BUCKET.min(net.prefix_len()));
            let spread = V4_BUCKET.saturating_sub(net.prefix_len());
            (spread <= MAX_SPREAD_BITS).then(|| {
                (0..1u32 << spread)
                    .map(|i| Bucket::V4(base | (i << (32 - u32::from(V4_BUCKET)))))
                    .collect()
            })
        }
        IpNet::V6(net) => {
            let base = u128::from(net.addr()) & mask6(V6_BUCKET.min(net.prefix_len()));
            let spread = V6_BUCKET.saturating_sub(net.prefix_len());
            (spread <= MAX_SPREAD_BITS).then(|| {
                (0..1u128 << spread)
                    .map(|i| Bucket::V6(base | (i << (128 - u32::from(V6_BUCKET)))))
                    .collect()
            })
        }
    }
}

/// Blocks at least this narrow are also filed in a finer index: one `/24` (IPv4) or `/64`
/// (IPv6) bucket each, so many narrow blocks inside one `/16` (per-node pod ranges of a
/// cluster, say) do not all land in the same coarse bucket.
const V4_FINE: u8 = 24;
const V6_FINE: u8 = 64;

/// The fine bucket of a block at least `/24` (`/64`) long, or `None` for wider blocks.
pub(crate) fn fine_bucket(block: &IpNet) -> Option<Bucket> {
    match block {
        IpNet::V4(net) => (net.prefix_len() >= V4_FINE)
            .then(|| Bucket::V4(u32::from(net.addr()) & mask4(V4_FINE))),
        IpNet::V6(net) => (net.prefix_len() >= V6_FINE)
            .then(|| Bucket::V6(u128::from(net.addr()) & mask6(V6_FINE))),
    }
}

/// The fine bucket an address falls in.
pub(crate) fn fine_bucket_of(ip: IpAddr) -> Bucket {
    match ip {
        IpAddr::V4(ip) => Bucket::V4(u32::from(ip) & mask4(V4_FINE)),
        IpAddr::V6(ip) => Bucket::V6(u128::from(ip) & mask6(V6_FINE)),
    }
}

/// The bucket an address falls in.
pub(crate) fn bucket_of(ip: IpAddr) -> Bucket {
    match ip {
        IpAddr::V4(ip) => Bucket::V4(u32::from(ip) & mask4(V4_BUCKET)),
        IpAddr::V6(ip) => Bucket::V6(u128::from(ip) & mask6(V6_BUCKET)),
    }
}

/// A `/16` or `/48` network, as an index key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Bucket {
    V4(u32),
    V6(u128),
}

/// Maps IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, from dual-stack sockets) to IPv4, so
/// `10.0.0.0/8` matches them as Envoy does.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(IpAddr::V6(v6), |v4: Ipv4Addr| IpAddr::V4(v4)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::{CidrSet, PortSet, canonical};

    fn set(blocks: &[&str]) -> CidrSet {
        let blocks: Vec<_> = blocks.iter().map(|b| b.parse().unwrap()).collect();
        CidrSet::new(&blocks)
    }

    #[test]
    fn longest_and_shortest_prefixes() {
        let s = set(&[
            "10.0.0.0/8",
            "192.168.1.7/32",
            "172.16.5.9/12",
            "2001:db8::/32",
        ]);
        assert!(s.contains("10.200.1.1".parse().unwrap()));
        assert!(s.contains("192.168.1.7".parse().unwrap()));
        assert!(!s.contains("192.168.1.8".parse().unwrap()));
        // Host bits in the block are ignored, as Envoy masks them.
        assert!(s.contains("172.31.0.1".parse().unwrap()));
        assert!(s.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!s.contains("2001:db9::1".parse().unwrap()));
        assert!(!s.contains("11.0.0.1".parse().unwrap()));
    }

    #[test]
    fn zero_length_prefix_matches_its_family_only() {
        let s = set(&["0.0.0.0/0"]);
        assert!(s.contains("8.8.8.8".parse().unwrap()));
        assert!(!s.contains("::1".parse().unwrap()));
        assert!(set(&["::/0"]).contains("::1".parse().unwrap()));
    }

    #[test]
    fn mapped_addresses_become_ipv4() {
        let ip = canonical("::ffff:10.1.2.3".parse().unwrap());
        assert_eq!(ip, "10.1.2.3".parse::<std::net::IpAddr>().unwrap());
        assert!(set(&["10.0.0.0/8"]).contains(ip));
    }

    #[test]
    fn buckets_cover_blocks_and_contain_their_addresses() {
        use super::{Bucket, bucket_of, buckets};
        let net = |s: &str| s.parse::<ipnet::IpNet>().unwrap();
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert_eq!(
            buckets(&net("10.1.2.0/24")).unwrap(),
            [bucket_of(ip("10.1.200.1"))]
        );
        let wide = buckets(&net("10.0.0.0/8")).unwrap();
        assert_eq!(wide.len(), 256);
        assert!(wide.contains(&bucket_of(ip("10.255.0.1"))));
        assert!(!wide.contains(&bucket_of(ip("11.0.0.1"))));
        assert!(buckets(&net("10.0.0.0/7")).is_none());
        assert!(buckets(&net("0.0.0.0/0")).is_none());
        assert_eq!(buckets(&net("2001:db8::/40")).unwrap().len(), 256);
        assert_eq!(
            buckets(&net("2001:db8:1::/64")).unwrap(),
            [bucket_of(ip("2001:db8:1::9"))]
        );
        assert!(matches!(bucket_of(ip("::1")), Bucket::V6(_)));
    }

    #[test]
    fn fine_buckets_for_narrow_blocks() {
        use super::{fine_bucket, fine_bucket_of};
        let net = |s: &str| s.parse::<ipnet::IpNet>().unwrap();
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert_eq!(
            fine_bucket(&net("10.1.2.0/24")),
            Some(fine_bucket_of(ip("10.1.2.200")))
        );
        assert_eq!(
            fine_bucket(&net("10.1.2.7/32")),
            Some(fine_bucket_of(ip("10.1.2.7")))
        );
        assert_ne!(
            fine_bucket(&net("10.1.2.0/24")),
            Some(fine_bucket_of(ip("10.1.3.1")))
        );
        assert_eq!(fine_bucket(&net("10.1.0.0/23")), None);
        assert_eq!(
            fine_bucket(&net("2001:db8:0:1::/64")),
            Some(fine_bucket_of(ip("2001:db8:0:1::9")))
        );
        assert_eq!(fine_bucket(&net("2001:db8::/48")), None);
    }

    #[test]
    fn ports() {
        let p = PortSet::new(&[443, 80, 80, 8080]);
        assert!(p.contains(80) && p.contains(8080));
        assert!(p.contains(443));
        assert!(!p.contains(81));
    }
}
