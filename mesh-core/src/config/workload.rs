//! How this workload runs in the mesh: who it is, where its SVID comes from, what it serves,
//! where it discovers other services, and which policy files apply to it.
//!
//! These sections sit next to `services:` in the same document, so one file (or one string
//! handed over the C ABI) configures a whole workload. Every section is optional: the embedded
//! default is a development CA in a local directory, no inbound listener, the static `services:`
//! list, and no policy. Paths are used as written (relative paths are relative to the process's
//! working directory).
//!
//! ```
//! let yaml = r#"
//! workload:
//!   name: orders
//!   namespace: shop
//!   labels: { app: orders }
//!   locality: { region: us-east1, zone: us-east1-b }
//! identity:
//!   spiffe_id: spiffe://cluster.local/ns/shop/sa/orders
//!   dev_ca: { dir: .mesh/ca, svid_ttl: 24h }
//! inbound:
//!   listen: 0.0.0.0:15008
//!   forward: { 8080: 127.0.0.1:8080 }
//! policies: [policies/authz.yaml]
//! "#;
//! let config = mesh_core::config::MeshConfig::from_yaml(yaml)?;
//! config.validate()?;
//! assert_eq!(config.inbound.unwrap().forward[&8080], "127.0.0.1:8080");
//! # Ok::<(), mesh_core::config::ConfigError>(())
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

/// The workload's own name, namespace and labels: what Istio policy selectors and metrics see.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct WorkloadConfig {
    /// The workload's name (Kubernetes: the pod's owner), for logs and metrics.
    #[serde(default)]
    pub name: Option<String>,
    /// Its namespace; Istio policies in other namespaces (except the root namespace) do not
    /// apply. Default: taken from the SPIFFE ID (`/ns/<namespace>/`) when it has one.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Its labels, matched by policies' `selector.matchLabels` and compared with endpoint
    /// labels by a DestinationRule's `localityLbSetting.failoverPriority`. Without
    /// `locality`, the topology labels `topology.kubernetes.io/region`,
    /// `topology.kubernetes.io/zone` and `topology.istio.io/subzone` give the locality, as
    /// istiod derives it from the node's labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Where the workload runs: `{ region, zone, subzone }` or Istio's `region/zone/subzone`
    /// (see [`LocalityConfig`](super::LocalityConfig)). The balancers of the services it calls
    /// prefer endpoints in its subzone, then zone, then region, failing over as those lose
    /// healthy endpoints, and apply DestinationRules' `localityLbSetting` (`distribute`,
    /// `failover`, `failoverPriority`) relative to it. Default: the topology labels, else
    /// unknown (no locality preference).
    #[serde(default)]
    pub locality: Option<super::LocalityConfig>,
}

/// Where the workload's SVID and trust bundle come from. Exactly one source may be set; with
/// none, a development CA under `.mesh/ca` is used (the embedded default).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct IdentityConfig {
    /// The SPIFFE ID this workload has. Required with `dev_ca` (it is what gets issued); with
    /// `files` it is optional and, when given, must match the certificate.
    #[serde(default)]
    pub spiffe_id: Option<String>,
    /// PEM files written by an agent (SPIRE, Istio's, `meshctl ca issue`), watched for rotation.
    #[serde(default)]
    pub files: Option<IdentityFilesConfig>,
    /// A development CA kept in a directory (created on first use), issuing and renewing this
    /// workload's SVID in-process. For development and tests, not production trust.
    #[serde(default)]
    pub dev_ca: Option<DevCaConfig>,
    /// Trust domains whose peers are accepted. Default: only the workload's own.
    #[serde(default)]
    pub trust_domains: Vec<String>,
}

/// SVID files. Either `dir` (holding `svid.pem`, `svid.key`, `bundle.pem`) or all three paths.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct IdentityFilesConfig {
    /// A directory with the conventional file names.
    #[serde(default)]
    pub dir: Option<String>,
    /// The certificate chain, leaf first.
    #[serde(default)]
    pub cert: Option<String>,
    /// The private key.
    #[serde(default)]
    pub key: Option<String>,
    /// The trust bundle (roots of the workload's trust domain).
    #[serde(default)]
    pub bundle: Option<String>,
    /// How often the files are checked for changes, as an Istio duration. Default `5s`.
    #[serde(default)]
    pub reload_interval: Option<String>,
}

/// The embedded development CA.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DevCaConfig {
    /// Where the CA's certificate and key live (`ca.pem`, `ca.key`); created when absent, so
    /// processes sharing the directory share one trust domain. Default `.mesh/ca`.
    #[serde(default)]
    pub dir: Option<String>,
    /// Lifetime of each issued SVID, as an Istio duration; renewed at half-life. Default `24h`.
    #[serde(default)]
    pub svid_ttl: Option<String>,
}

/// The inbound HBONE listener. Absent: the workload accepts no mesh traffic.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct InboundConfig {
    /// `ip:port` to listen on. Default `0.0.0.0:15008` (the HBONE port).
    #[serde(default)]
    pub listen: Option<String>,
    /// Tunnels to a target port are forwarded to this local `ip:port`, as ztunnel does. Ports
    /// not listed are handed to the application (an in-process handler), or refused with 503
    /// when it has none.
    #[serde(default)]
    pub forward: BTreeMap<u16, String>,
    /// Streams one peer may open at once on a connection. Default 200.
    #[serde(default)]
    pub max_concurrent_streams: Option<u32>,
    /// How long open tunnels may finish during a graceful shutdown, as an Istio duration.
    /// Default `30s`.
    #[serde(default)]
    pub drain_timeout: Option<String>,
}

/// Discovery backends beyond the static `services:` list. Their snapshots are merged; a
/// service defined twice is an error reported by the backend that brought it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DiscoveryConfig {
    /// A file in this same format whose `services:` are watched and applied live.
    #[serde(default)]
    pub file: Option<String>,
    /// An etcd registry.
    #[serde(default)]
    pub etcd: Option<EtcdDiscoveryConfig>,
    /// Services found through DNS.
    #[serde(default)]
    pub dns: Option<DnsDiscoverySection>,
}

/// DNS discovery: services whose endpoints are A/AAAA or SRV records.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DnsDiscoverySection {
    /// Name servers as `ip:port`; empty: the system's (`/etc/resolv.conf`).
    #[serde(default)]
    pub servers: Vec<String>,
    /// The services.
    #[serde(default)]
    pub services: Vec<DnsServiceConfig>,
}

/// One service found through DNS. Exactly one of `a` (with `port`) and `srv` is given.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DnsServiceConfig {
    /// The name callers use in the mesh.
    pub host: String,
    /// Ports the service declares.
    #[serde(default)]
    pub ports: Vec<super::PortConfig>,
    /// SPIFFE IDs its endpoints present (required: DNS cannot tell).
    #[serde(default)]
    pub identities: Vec<String>,
    /// A name whose A/AAAA records are the endpoints...
    #[serde(default)]
    pub a: Option<String>,
    /// ...serving on this port.
    #[serde(default)]
    pub port: Option<u16>,
    /// A name whose SRV records give the endpoints with their ports and weights.
    #[serde(default)]
    pub srv: Option<String>,
    /// The endpoints' HBONE port. Default 15008.
    #[serde(default)]
    pub hbone_port: Option<u16>,
}

/// An etcd cluster used as the service registry.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EtcdDiscoveryConfig {
    /// Client URLs, such as `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// The key prefix services are registered under. Default `/mesh`.
    #[serde(default)]
    pub prefix: Option<String>,
}

/// Rate limits on inbound requests: rule files in the format of `mesh_policy::ratelimit`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RateLimitSection {
    /// Rules enforced by this process alone (token buckets in memory).
    #[serde(default)]
    pub local: Option<String>,
    /// Rules shared by every replica through Redis.
    #[serde(default)]
    pub global: Option<GlobalRateLimitSection>,
}

/// A rate limit shared through Redis.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct GlobalRateLimitSection {
    /// The rules file.
    pub rules: String,
    /// The server, `redis://host:port[/db]`.
    pub redis: String,
    /// What to do when Redis cannot answer: `open` (admit; the default, as Envoy) or
    /// `closed` (refuse with 500).
    #[serde(default)]
    pub failure_mode: Option<FailureModeConfig>,
    /// The most a check may wait for Redis, as an Istio duration. Default `50ms`.
    #[serde(default)]
    pub timeout: Option<String>,
}

/// Failure modes as written.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum FailureModeConfig {
    /// Admit requests.
    Open,
    /// Refuse requests.
    Closed,
}
