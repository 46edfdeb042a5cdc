//! Services found through DNS: A/AAAA records (one port) or SRV records (port and weight per
//! target), refreshed when their TTL runs out.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use hickory_resolver::{
    Resolver,
    config::{NameServerConfig, ResolverConfig},
    net::runtime::TokioRuntimeProvider,
    proto::rr::{RData, RecordType},
};
use mesh_core::{
    SpiffeId,
    model::{Endpoint, Port, Service, ServiceName, Snapshot},
};
use thiserror::Error;
use tokio::{sync::watch, task::JoinHandle, time::Instant};

use super::{Discovery, DiscoveryStatus};

/// What DNS records describe a service.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DnsRecords {
    /// A and AAAA records of this name; every address serves on `port`.
    Address {
        /// The name to resolve (`inventory.internal.example.com`).
        name: String,
        /// The endpoints' application port.
        port: u16,
    },
    /// SRV records of this name (`_http._tcp.inventory.example.com`): each target's addresses,
    /// with the record's port and weight. Only the lowest priority value present is used
    /// (higher values are backups in RFC 2782 and are not balanced over).
    Srv {
        /// The SRV name.
        name: String,
    },
}

/// A service discovered through DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsService {
    /// The service's name in the mesh (what callers use).
    pub host: ServiceName,
    /// Where its endpoints come from.
    pub records: DnsRecords,
    /// Ports the service declares (empty: any).
    pub ports: Vec<Port>,
    /// SPIFFE IDs its endpoints may present: DNS cannot say, so this must not be empty.
    pub identities: Vec<SpiffeId>,
    /// The endpoints' HBONE port.
    pub hbone_port: u16,
}

impl DnsService {
    /// A service named `host` in the mesh whose endpoints `records` give, on the default
    /// HBONE port, with no declared ports; set `identities` before use.
    pub fn new(host: ServiceName, records: DnsRecords) -> Self {
        Self {
            host,
            records,
            ports: Vec::new(),
            identities: Vec::new(),
            hbone_port: mesh_core::model::DEFAULT_HBONE_PORT,
        }
    }
}

/// Settings for [`DnsDiscovery`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsDiscoveryConfig {
    /// Name servers (`ip:port`); empty means the system's (`/etc/resolv.conf`).
    pub servers: Vec<SocketAddr>,
    /// The services.
    pub services: Vec<DnsService>,
    /// Records are re-read when their TTL expires, but never more often than this...
    pub min_refresh: Duration,
    /// ...and at least this often.
    pub max_refresh: Duration,
}

impl DnsDiscoveryConfig {
    /// Resolves `services` through `servers` (system resolvers when empty), honouring TTLs
    /// between 1 s and 5 min.
    pub fn new(servers: Vec<SocketAddr>, services: Vec<DnsService>) -> Self {
        Self {
            servers,
            services,
            min_refresh: Duration::from_secs(1),
            max_refresh: Duration::from_secs(300),
        }
    }
}

/// Why DNS discovery could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The resolver could not be built (unreadable system configuration).
    #[error("DNS resolver: {0}; name the servers explicitly")]
    Resolver(String),
    /// A service has no identities to verify its endpoints with.
    #[error(
        "DNS service {0} lists no identities; DNS cannot tell a workload's SPIFFE ID, so name the IDs its endpoints present"
    )]
    NoIdentity(String),
    /// The refresh bounds are unusable.
    #[error("min_refresh must be positive and not above max_refresh")]
    Bounds,
}

/// DNS as a [`Discovery`] backend: each service's records are resolved at start and again when
/// their TTL expires (bounded by the configured minimum and maximum). A failed lookup keeps the
/// service's last endpoints, is reported in [`status`](Discovery::status), and is retried with
/// doubling delays. Needs a tokio runtime; resolution stops when it is dropped.
pub struct DnsDiscovery {
    tx: watch::Sender<Arc<Snapshot>>,
    status: Arc<Mutex<DiscoveryStatus>>,
    task: JoinHandle<()>,
}

impl DnsDiscovery {
    /// Resolves every service once, publishes the result (services that failed have no
    /// endpoints yet and are retried), and keeps refreshing in the background.
    pub async fn start(config: DnsDiscoveryConfig) -> Result<Self, DnsError> {
        if config.min_refresh.is_zero() || config.min_refresh > config.max_refresh {
            return Err(DnsError::Bounds);
        }
        if let Some(s) = config.services.iter().find(|s| s.identities.is_empty()) {
            return Err(DnsError::NoIdentity(s.host.to_string()));
        }
        let resolver = build_resolver(&config.servers)?;
        let status = Arc::new(Mutex::new(DiscoveryStatus::default()));
        let mut state = State {
            resolver,
            config,
            endpoints: BTreeMap::new(),
            failures: BTreeMap::new(),
            errors: 0,
            version: 0,
        };
        let due = state.refresh_due(None).await;
        let tx = watch::Sender::new(Arc::new(state.snapshot()));
        record(&status, &state, true);
        let (task_tx, task_status) = (tx.clone(), status.clone());
        let task = tokio::spawn(async move {
            let mut due = due;
            loop {
                let next = due.values().min().copied();
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending::<()>().await,
                }
                let before = state.endpoints.clone();
                due = state.refresh_due(Some(due)).await;
                let changed = state.endpoints != before;
                if changed {
                    task_tx.send_replace(Arc::new(state.snapshot()));
                }
                record(&task_status, &state, changed);
            }
        });
        Ok(Self { tx, status, task })
    }
}

fn build_resolver(servers: &[SocketAddr]) -> Result<Resolver<TokioRuntimeProvider>, DnsError> {
    let mut builder = if servers.is_empty() {
        Resolver::builder_tokio().map_err(|e| DnsError::Resolver(e.to_string()))?
    } else {
        let name_servers = servers
            .iter()
            .map(|addr| {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in &mut ns.connections {
                    connection.port = addr.port();
                }
                ns
            })
            .collect();
        Resolver::builder_with_config(
            ResolverConfig::from_name_servers(name_servers),
            TokioRuntimeProvider::default(),
        )
    };
    // Names are looked up exactly as configured; a cached answer is fine until its TTL.
    builder.options_mut().ndots = 0;
    builder
        .build()
        .map_err(|e| DnsError::Resolver(e.to_string()))
}

struct State {
    resolver: Resolver<TokioRuntimeProvider>,
    config: DnsDiscoveryConfig,
    /// Last good endpoints per service index.
    endpoints: BTreeMap<usize, Vec<Endpoint>>,
    /// Consecutive failures and the last error per service index.
    failures: BTreeMap<usize, (u32, String)>,
    /// Failed lookups since start.
    errors: u64,
    version: u64,
}

impl State {
    /// Resolves the services whose refresh time has come (all of them when `due` is `None`)
    /// and returns every service's next refresh time.
    async fn refresh_due(
        &mut self,
        due: Option<BTreeMap<usize, Instant>>,
    ) -> BTreeMap<usize, Instant> {
        let now = Instant::now();
        let mut next = due.clone().unwrap_or_default();
        for index in 0..self.config.services.len() {
            if due
                .as_ref()
                .and_then(|d| d.get(&index))
                .is_some_and(|at| *at > now)
            {
                continue;
            }
            let service = self.config.services[index].clone();
            let wait = match self.resolve(&service).await {
                Ok((endpoints, ttl)) => {
                    self.failures.remove(&index);
                    self.endpoints.insert(index, endpoints);
                    ttl.clamp(self.config.min_refresh, self.config.max_refresh)
                }
                Err(error) => {
                    tracing::warn!(service = %service.host, %error, "DNS lookup failed; keeping the last endpoints");
                    self.errors += 1;
                    let entry = self.failures.entry(index).or_insert((0, String::new()));
                    entry.0 += 1;
                    entry.1 = format!("{}: {error}", service.host);
                    let doubling = self.config.min_refresh.saturating_mul(1 << entry.0.min(16));
                    doubling.min(self.config.max_refresh)
                }
            };
            next.insert(index, Instant::now() + wait);
        }
        next
    }

    /// The service's endpoints and how long they may be cached.
    async fn resolve(&self, service: &DnsService) -> Result<(Vec<Endpoint>, Duration), String> {
        let endpoint = |ip: IpAddr, port: u16, weight: u32| {
            let mut e = Endpoint::new(SocketAddr::new(ip, port)).with_weight(weight.max(1));
            e.hbone_port = service.hbone_port;
            e
        };
        match &service.records {
            DnsRecords::Address { name, port } => {
                let (ips, ttl) = self.addresses(name).await?;
                Ok((
                    ips.into_iter().map(|ip| endpoint(ip, *port, 1)).collect(),
                    ttl,
                ))
            }
            DnsRecords::Srv { name } => {
                let lookup = self
                    .resolver
                    .lookup(name.as_str(), RecordType::SRV)
                    .await
                    .map_err(|e| format!("SRV {name}: {e}"))?;
                let mut ttl = ttl_of(lookup.valid_until());
                let records: Vec<_> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::SRV(srv) => Some(srv.clone()),
                        _ => None,
                    })
                    .collect();
                let Some(best) = records.iter().map(|s| s.priority).min() else {
                    return Err(format!("SRV {name}: no records"));
                };
                let mut endpoints = Vec::new();
                for srv in records.iter().filter(|s| s.priority == best) {
                    let target = srv.target.to_ascii();
                    let (ips, target_ttl) = self.addresses(&target).await?;
                    ttl = ttl.min(target_ttl);
                    endpoints.extend(
                        ips.into_iter()
                            .map(|ip| endpoint(ip, srv.port, u32::from(srv.weight))),
                    );
                }
                endpoints.sort_by_key(|e| e.address);
                endpoints.dedup_by_key(|e| e.address);
                Ok((endpoints, ttl))
            }
        }
    }

    /// A and AAAA records of `name`, sorted, with their TTL.
    async fn addresses(&self, name: &str) -> Result<(Vec<IpAddr>, Duration), String> {
        let lookup = self
            .resolver
            .lookup_ip(name)
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        let mut ips: Vec<IpAddr> = lookup.iter().collect();
        ips.sort();
        ips.dedup();
        if ips.is_empty() {
            return Err(format!("{name}: no addresses"));
        }
        Ok((ips, ttl_of(lookup.valid_until())))
    }

    fn snapshot(&mut self) -> Snapshot {
        self.version += 1;
        let mut snapshot = Snapshot::new(self.version);
        for (index, service) in self.config.services.iter().enumerate() {
            let mut svc = Service::new(service.host.clone());
            for port in &service.ports {
                svc = svc.with_port(port.clone());
            }
            for id in &service.identities {
                svc = svc.with_expected_identity(id.clone());
            }
            let endpoints = self.endpoints.get(&index).cloned().unwrap_or_default();
            snapshot.insert(svc, endpoints.into());
        }
        snapshot
    }
}

fn ttl_of(valid_until: std::time::Instant) -> Duration {
    valid_until.saturating_duration_since(std::time::Instant::now())
}

fn record(status: &Mutex<DiscoveryStatus>, state: &State, published: bool) {
    let mut status = status.lock().unwrap_or_else(PoisonError::into_inner);
    if published {
        status.updates += 1;
    }
    status.errors = state.errors;
    status.last_error = (!state.failures.is_empty()).then(|| {
        state
            .failures
            .values()
            .map(|(_, e)| e.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    });
}

impl Discovery for DnsDiscovery {
    fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    fn current(&self) -> Arc<Snapshot> {
        // Read in place: no receiver to register and drop (this is read per request).
        self.tx.borrow().clone()
    }

    fn kind(&self) -> &'static str {
        "dns"
    }

    fn status(&self) -> DiscoveryStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for DnsDiscovery {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for DnsDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsDiscovery").finish_non_exhaustive()
    }
}
