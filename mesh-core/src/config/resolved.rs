//! The workload sections checked and turned into typed values, with the defaults applied.
//!
//! Parsing ([`MeshConfig::from_yaml`]) only checks shape; [`MeshConfig::workload_settings`]
//! checks every value (SPIFFE IDs, addresses, durations, which identity source) and reports the
//! first problem with its field path. The runtime builds from the result, so it never sees a
//! half-valid configuration.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use super::{ConfigError, IdentityConfig, InboundConfig, MeshConfig};
use crate::{SpiffeId, TrustDomain, traffic::parse_duration};

/// Default directory of the development CA.
pub const DEFAULT_DEV_CA_DIR: &str = ".mesh/ca";
/// Default SVID lifetime with the development CA.
pub const DEFAULT_SVID_TTL: Duration = Duration::from_secs(24 * 3600);
/// Default interval between checks of SVID files.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// Default inbound listen address.
pub const DEFAULT_INBOUND_LISTEN: &str = "0.0.0.0:15008";
/// Default number of streams a peer may open at once on one connection (ztunnel's).
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 200;
/// Default time open tunnels get to finish on shutdown.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The SPIFFE ID used when none is configured with the development CA.
pub const DEFAULT_SPIFFE_ID: &str = "spiffe://cluster.local/ns/default/sa/default";

/// Everything about how this workload runs, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkloadSettings {
    /// Name for logs and metrics (`None`: not given).
    pub name: Option<String>,
    /// The namespace policies are scoped by: configured, or from the SPIFFE ID.
    pub namespace: Option<String>,
    /// Labels matched by policy selectors (and by `localityLbSetting.failoverPriority`).
    pub labels: BTreeMap<String, String>,
    /// Where the workload runs (`workload.locality`, else its topology labels); unknown when
    /// neither says. The balancers prefer endpoints near it.
    pub locality: crate::model::Locality,
    /// Identity source and trust.
    pub identity: IdentitySettings,
    /// The inbound listener, if any.
    pub inbound: Option<InboundSettings>,
    /// Policy files to load.
    pub policies: Vec<PathBuf>,
    /// Istio traffic files (DestinationRule, VirtualService) to load.
    pub traffic_files: Vec<PathBuf>,
    /// Inbound rate limits.
    pub rate_limit: RateLimitSettings,
    /// A watched services file, in addition to the static `services:`.
    pub discovery_file: Option<PathBuf>,
    /// An etcd registry, in addition to the static `services:`.
    pub etcd: Option<EtcdSettings>,
    /// DNS-discovered services, in addition to the static `services:`.
    pub dns: Option<DnsSettings>,
    /// The admin endpoint, if configured.
    pub admin: Option<super::AdminSettings>,
    /// Metrics and access logging.
    pub telemetry: super::TelemetrySettings,
    /// External authorizers `CUSTOM` policies may name.
    pub extension_providers: Vec<super::ExtensionProvider>,
}

/// DNS discovery, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsSettings {
    /// Name servers (empty: the system's).
    pub servers: Vec<SocketAddr>,
    /// The services.
    pub services: Vec<DnsServiceSettings>,
}

/// One DNS-discovered service, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsServiceSettings {
    /// Name, ports and identities.
    pub service: crate::model::Service,
    /// What to look up.
    pub query: DnsQuery,
    /// The endpoints' HBONE port.
    pub hbone_port: u16,
}

/// What DNS records give a service's endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DnsQuery {
    /// A/AAAA records of `name`, all on `port`.
    Address {
        /// The name.
        name: String,
        /// The endpoints' port.
        port: u16,
    },
    /// SRV records of `name`.
    Srv {
        /// The name.
        name: String,
    },
}

/// Inbound rate limits, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitSettings {
    /// Per-process rules file.
    pub local: Option<PathBuf>,
    /// Rules shared through Redis.
    pub global: Option<GlobalRateLimitSettings>,
}

/// A Redis-backed rate limit, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GlobalRateLimitSettings {
    /// The rules file.
    pub rules: PathBuf,
    /// The Redis URL.
    pub redis: String,
    /// Refuse (rather than admit) when Redis cannot answer.
    pub fail_closed: bool,
    /// Limit per check.
    pub timeout: Duration,
}

/// Default limit on one Redis rate-limit check.
pub const DEFAULT_RATE_LIMIT_TIMEOUT: Duration = Duration::from_millis(50);

/// The etcd registry, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EtcdSettings {
    /// Client URLs.
    pub endpoints: Vec<String>,
    /// Key prefix (`None`: the registry's default).
    pub prefix: Option<String>,
}

/// The workload identity, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdentitySettings {
    /// The expected SPIFFE ID (always set with the development CA).
    pub spiffe_id: Option<SpiffeId>,
    /// Where the SVID comes from.
    pub source: IdentitySource,
    /// Extra trust domains whose peers are accepted (the workload's own is always accepted).
    pub trust_domains: Vec<TrustDomain>,
}

/// Where the SVID comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentitySource {
    /// PEM files, re-read every `reload_interval`.
    Files {
        /// Certificate chain.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
        /// Trust bundle.
        bundle: PathBuf,
        /// Check interval.
        reload_interval: Duration,
    },
    /// The development CA in `dir`, issuing SVIDs that live `svid_ttl`.
    DevCa {
        /// CA directory.
        dir: PathBuf,
        /// SVID lifetime.
        svid_ttl: Duration,
    },
}

/// The inbound listener, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct InboundSettings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Target port to local address.
    pub forward: BTreeMap<u16, SocketAddr>,
    /// Streams per connection a peer may open.
    pub max_concurrent_streams: u32,
    /// Drain deadline on shutdown.
    pub drain_timeout: Duration,
}

impl Default for InboundSettings {
    /// The listener an empty `inbound: {}` section describes.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], crate::model::DEFAULT_HBONE_PORT)),
            forward: BTreeMap::new(),
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

fn duration(path: &str, text: Option<&String>, default: Duration) -> Result<Duration, ConfigError> {
    text.map_or(Ok(default), |t| {
        parse_duration(t).map_err(|e| ConfigError::invalid(path, e.to_string()))
    })
}

fn socket_addr(path: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| {
        ConfigError::invalid(
            path,
            format!("{text:?} is not ip:port (write IPv6 as [addr]:port, e.g. [::1]:8080)"),
        )
    })
}

impl MeshConfig {
    /// Validates the workload sections (`workload`, `identity`, `inbound`, `policies`) and the
    /// services, applying defaults. The first problem is returned with its field path.
    pub fn workload_settings(&self) -> Result<WorkloadSettings, ConfigError> {
        self.to_snapshot(0)?;
        let identity =
            resolve_identity(self.identity.as_ref().unwrap_or(&IdentityConfig::default()))?;
        let inbound = self.inbound.as_ref().map(resolve_inbound).transpose()?;
        let workload = self.workload.clone().unwrap_or_default();
        let namespace = workload.namespace.clone().or_else(|| {
            identity
                .spiffe_id
                .as_ref()
                .and_then(|id| id.namespace().map(str::to_owned))
        });
        for (field, files) in [("policies", &self.policies), ("traffic", &self.traffic)] {
            for (i, file) in files.iter().enumerate() {
                if file.trim().is_empty() {
                    return Err(ConfigError::invalid(
                        format!("{field}[{i}]"),
                        "empty path; name an Istio YAML file",
                    ));
                }
            }
        }
        let discovery = self.discovery.clone().unwrap_or_default();
        let etcd = discovery
            .etcd
            .clone()
            .map(|etcd| {
                if etcd.endpoints.is_empty() {
                    return Err(ConfigError::invalid(
                        "discovery.etcd.endpoints",
                        "empty; list at least one client URL such as http://127.0.0.1:2379",
                    ));
                }
                for (i, url) in etcd.endpoints.iter().enumerate() {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(ConfigError::invalid(
                            format!("discovery.etcd.endpoints[{i}]"),
                            format!("{url:?} is not a URL; write http://host:2379"),
                        ));
                    }
                }
                Ok(EtcdSettings {
                    endpoints: etcd.endpoints,
                    prefix: etcd.prefix,
                })
            })
            .transpose()?;
        let rate_limit = self.rate_limit.clone().unwrap_or_default();
        let rate_limit = RateLimitSettings {
            local: rate_limit.local.map(PathBuf::from),
            global: rate_limit
                .global
                .map(|g| {
                    if !(g.redis.starts_with("redis://") || g.redis.starts_with("rediss://")) {
                        return Err(ConfigError::invalid(
                            "rate_limit.global.redis",
                            format!("{:?} is not a Redis URL; write redis://host:6379", g.redis),
                        ));
                    }
                    Ok(GlobalRateLimitSettings {
                        rules: PathBuf::from(g.rules),
                        redis: g.redis,
                        fail_closed: g.failure_mode == Some(super::FailureModeConfig::Closed),
                        timeout: duration(
                            "rate_limit.global.timeout",
                            g.timeout.as_ref(),
                            DEFAULT_RATE_LIMIT_TIMEOUT,
                        )?,
                    })
                })
                .transpose()?,
        };
        let dns = discovery
            .dns
            .as_ref()
            .map(super::dns::resolve_dns)
            .transpose()?;
        let locality =
            super::locality::resolve_locality(workload.locality.as_ref(), &workload.labels)?;
        Ok(WorkloadSettings {
            name: workload.name,
            namespace,
            locality,
            labels: workload.labels,
            identity,
            inbound,
            policies: self.policies.iter().map(PathBuf::from).collect(),
            traffic_files: self.traffic.iter().map(PathBuf::from).collect(),
            rate_limit,
            discovery_file: discovery.file.map(PathBuf::from),
            etcd,
            dns,
            admin: self
                .admin
                .as_ref()
                .map(super::admin::resolve_admin)
                .transpose()?,
            telemetry: super::admin::resolve_telemetry(self.telemetry.as_ref())?,
            extension_providers: super::extension::resolve_providers(&self.extension_providers)?,
        })
    }

    /// Checks the whole document (workload sections, services and their traffic policies);
    /// the same checks the runtime applies when it starts. Files it names are not read.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.workload_settings()?;
        self.health_checks()?;
        self.traffic_config().map(|_| ())
    }
}

fn resolve_identity(config: &IdentityConfig) -> Result<IdentitySettings, ConfigError> {
    let spiffe_id = config
        .spiffe_id
        .as_deref()
        .map(|text| {
            text.parse::<SpiffeId>()
                .map_err(|e| ConfigError::invalid("identity.spiffe_id", e.to_string()))
        })
        .transpose()?;
    let trust_domains = config
        .trust_domains
        .iter()
        .enumerate()
        .map(|(i, td)| {
            td.parse::<TrustDomain>().map_err(|e| {
                ConfigError::invalid(format!("identity.trust_domains[{i}]"), e.to_string())
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let source = match (&config.files, &config.dev_ca) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                "identity",
                "both `files` and `dev_ca` are set; choose one source of the SVID",
            ));
        }
        (Some(files), None) => {
            let path = |field: &str,
                        given: &Option<String>,
                        file: &str|
             -> Result<PathBuf, ConfigError> {
                match (given, &files.dir) {
                    (Some(p), _) => Ok(PathBuf::from(p)),
                    (None, Some(dir)) => Ok(PathBuf::from(dir).join(file)),
                    (None, None) => Err(ConfigError::invalid(
                        format!("identity.files.{field}"),
                        "missing; give `dir` (holding svid.pem, svid.key, bundle.pem) or all of cert, key and bundle",
                    )),
                }
            };
            IdentitySource::Files {
                cert: path("cert", &files.cert, "svid.pem")?,
                key: path("key", &files.key, "svid.key")?,
                bundle: path("bundle", &files.bundle, "bundle.pem")?,
                reload_interval: duration(
                    "identity.files.reload_interval",
                    files.reload_interval.as_ref(),
                    DEFAULT_RELOAD_INTERVAL,
                )?,
            }
        }
        (None, dev_ca) => {
            let dev_ca = dev_ca.clone().unwrap_or_default();
            IdentitySource::DevCa {
                dir: PathBuf::from(dev_ca.dir.as_deref().unwrap_or(DEFAULT_DEV_CA_DIR)),
                svid_ttl: duration(
                    "identity.dev_ca.svid_ttl",
                    dev_ca.svid_ttl.as_ref(),
                    DEFAULT_SVID_TTL,
                )?,
            }
        }
    };
    let spiffe_id = match (&source, spiffe_id) {
        (IdentitySource::DevCa { .. }, None) => Some(DEFAULT_SPIFFE_ID.parse().map_err(
            |e: crate::SpiffeIdError| ConfigError::invalid("identity.spiffe_id", e.to_string()),
        )?),
        (_, id) => id,
    };
    Ok(IdentitySettings {
        spiffe_id,
        source,
        trust_domains,
    })
}

fn resolve_inbound(config: &InboundConfig) -> Result<InboundSettings, ConfigError> {
    let listen = socket_addr(
        "inbound.listen",
        config.listen.as_deref().unwrap_or(DEFAULT_INBOUND_LISTEN),
    )?;
    let mut forward = BTreeMap::new();
    for (port, target) in &config.forward {
        let path = format!("inbound.forward.{port}");
        if *port == 0 {
            return Err(ConfigError::invalid(
                path,
                "port 0 is not a port; use 1-65535",
            ));
        }
        forward.insert(*port, socket_addr(&path, target)?);
    }
    let max_concurrent_streams = config
        .max_concurrent_streams
        .unwrap_or(DEFAULT_MAX_CONCURRENT_STREAMS);
    if max_concurrent_streams == 0 {
        return Err(ConfigError::invalid(
            "inbound.max_concurrent_streams",
            "0 would refuse every tunnel; use at least 1 (default 200)",
        ));
    }
    Ok(InboundSettings {
        listen,
        forward,
        max_concurrent_streams,
        drain_timeout: duration(
            "inbound.drain_timeout",
            config.drain_timeout.as_ref(),
            DEFAULT_DRAIN_TIMEOUT,
        )?,
    })
}
