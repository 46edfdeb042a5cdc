//! One handle for a whole workload: identity, discovery, outbound clients and the inbound
//! listener, built from one configuration document.
//!
//! [`Mesh`] is what an application (or the C ABI) holds. It is built from the mesh's own YAML
//! ([`MeshConfig`]) and wires the lower layers together the way a sidecar would, in-process:
//!
//! - the SVID from files (watched) or from the embedded development CA (renewed);
//! - discovery: the document's static `services:` merged with a watched file and/or etcd;
//! - outbound: [`Mesh::http_client`] (retries, timeouts, circuit breaking, outlier detection
//!   per service), [`Mesh::connector`] for hyper/tonic, and [`Mesh::connect`] for raw TCP
//!   tunnels with load balancing, connect retries and a per-service connection limit;
//! - inbound: [`Mesh::serve`] binds the HBONE listener with the configured forwarding and the
//!   Istio security policy files applied (see below).
//!
//! # Security policy on the inbound side
//!
//! `policies:` files hold Istio `AuthorizationPolicy`, `RequestAuthentication` and
//! `PeerAuthentication` documents:
//!
//! - **Authorization** is judged per tunnel (L4) and per HTTP request (L7). A `CUSTOM` policy
//!   names an entry of the mesh config's `extension_providers:` (Istio's `extensionProviders`,
//!   kind `envoy_ext_authz_http`; see [`mesh_core::config::ExtensionProviderConfig`]); naming
//!   an unknown provider fails [`Mesh::start`]. Its matching requests are sent to that HTTP
//!   authorizer with Envoy `ext_authz` semantics: 200 allows (copying
//!   `headers_to_upstream_on_allow` into the request), another status denies with the
//!   authorizer's status, body and `headers_to_downstream_on_deny`, and a timeout, connection
//!   error or 5xx applies `fail_open` or `status_on_error` (default 403). A provider with
//!   `include_request_body_in_check` also gets the body up to `max_request_bytes` (a larger
//!   one is answered 413 unless `allow_partial_message`); the application still receives the
//!   whole body. Raw TCP tunnels have
//!   no request to send, so CUSTOM policies deny them (401).
//! - **PeerAuthentication** decides what happens to peers that connect to the HBONE port
//!   without mTLS. The listener tells TLS from plaintext by the first bytes. STRICT refuses
//!   plaintext (closed and counted); it is also the mode when no PeerAuthentication sets one,
//!   unlike Istio's PERMISSIVE default, so plaintext is only ever accepted because a policy
//!   asked for it. PERMISSIVE and DISABLE serve plaintext peers as peers without principal
//!   (HTTP apps see an [`InboundPeer`](crate::http::InboundPeer) with `principal: None` and no
//!   [`PeerIdentity`](crate::http::PeerIdentity), and authorization sees no
//!   `source.principal`); both keep accepting HBONE, as ztunnel does. `portLevelMtls` keys on
//!   the listener's port, the only destination port a plaintext peer names; a plaintext
//!   connection is forwarded when `inbound.forward` has an entry for that port, else served by
//!   an [`InboundApp::Http`] application or handed to an [`InboundApp::Connections`] handler
//!   (which receives HBONE tunnels and plaintext connections alike, as [`InboundConnection`]s).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let mesh = mesh_client::mesh::Mesh::from_yaml(r#"
//! identity: { spiffe_id: spiffe://cluster.local/ns/shop/sa/orders }
//! services:
//!   - host: inventory.shop.svc.cluster.local
//!     ports: [{ port: 8080, protocol: http }]
//!     identities: [spiffe://cluster.local/ns/shop/sa/inventory]
//!     endpoints: [{ address: 10.0.0.7:8080 }]
//! "#).await?;
//! let request = http::Request::get("http://inventory.shop.svc.cluster.local:8080/stock")
//!     .body(bytes::Bytes::new())?;
//! let response = mesh.http_client().request(request).await?;
//! # drop(response); Ok(()) }
//! ```
//!
//! Create it inside a tokio runtime; its background tasks (SVID refresh, discovery watches,
//! connection pools) live until the last clone is dropped.

mod admin;
mod connection;
mod error;
mod ext_authz;
mod grpc;
mod identity;
mod inbound;
mod plaintext;
mod policy;
mod tcp;
mod traffic;

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use mesh_core::{
    SpiffeId,
    balance::Policy,
    config::{DnsQuery, MeshConfig, WorkloadSettings},
    resilience::CircuitBreaker,
};
use mesh_tls::MeshTls;

pub use connection::{ConnectionHandler, InboundConnection, InboundStream};
pub use error::MeshError;
pub use grpc::GrpcClient;
pub use inbound::{InboundApp, InboundServer};
pub use policy::PolicyStatus;

use crate::{
    discovery::{
        Discovery, DnsDiscovery, DnsDiscoveryConfig, DnsRecords, DnsService, EtcdConfig,
        EtcdDiscovery, FileDiscovery, MergedDiscovery, StaticDiscovery,
    },
    hbone::{HboneClient, HboneClientConfig, WorkloadInfo},
    http::MeshConnector,
    resilience::ResilientClient,
    routing::{BalancedDestinations, HealthChecks},
};

/// How often a discovery file is checked for edits.
const DISCOVERY_FILE_INTERVAL: Duration = Duration::from_secs(1);

/// A running workload in the mesh. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Mesh {
    inner: Arc<Inner>,
}

struct Inner {
    settings: WorkloadSettings,
    identity: identity::LiveIdentity,
    discovery: Arc<dyn Discovery>,
    routes: Arc<BalancedDestinations>,
    hbone: HboneClient,
    http: ResilientClient,
    authz: Arc<policy::Policies>,
    /// Per-service connection limits for raw tunnels.
    tcp_breakers: Mutex<HashMap<String, CircuitBreaker>>,
    /// Metrics, access logs and the admin endpoint.
    observe: admin::Observe,
    /// Active health checking tasks (stopped with the mesh).
    _health_checks: HealthChecks,
}

impl Mesh {
    /// Parses `yaml` (the mesh's own format, see [`MeshConfig`]) and starts the mesh.
    pub async fn from_yaml(yaml: &str) -> Result<Self, MeshError> {
        Self::start(MeshConfig::from_yaml(yaml)?).await
    }

    /// Validates `config` and starts everything it describes except the inbound listener
    /// (see [`serve`](Self::serve)). Fails with the first problem, naming the setting.
    pub async fn start(config: MeshConfig) -> Result<Self, MeshError> {
        let settings = config.workload_settings()?;
        let identity = identity::start(&settings.identity)?;
        let authz = Arc::new(policy::Policies::load(&settings)?);
        authz.watch(settings.clone());
        let traffic = Arc::new(traffic::load(&config, &settings)?);
        let discovery = start_discovery(&config, &settings).await?;
        let routes = Arc::new(
            BalancedDestinations::new(discovery.clone(), Policy::default())
                .map_err(|e| MeshError::Discovery(format!("load balancer: {e}")))?
                // Locality priority and `localityLbSetting` rules are relative to this workload.
                .with_locality(settings.locality.clone())
                .with_labels(settings.labels.clone()),
        );
        routes.set_traffic(traffic);
        let observe = admin::Observe::new(&settings, &identity.tls, &authz);
        let hbone = HboneClient::new(
            identity.tls.clone(),
            HboneClientConfig {
                workload: workload_info(&settings),
                telemetry: observe.recording(),
                ..HboneClientConfig::default()
            },
        );
        let http = ResilientClient::routed(hbone.clone(), routes.clone(), discovery.clone());
        let http = observe.instrument(http);
        let health_checks = HealthChecks::spawn(
            config.health_checks()?,
            hbone.clone(),
            discovery.clone(),
            routes.clone(),
        );
        let mesh = Self {
            inner: Arc::new(Inner {
                settings,
                identity,
                discovery,
                routes,
                hbone,
                http,
                authz,
                tcp_breakers: Mutex::new(HashMap::new()),
                observe,
                _health_checks: health_checks,
            }),
        };
        admin::start(&mesh).await?;
        Ok(mesh)
    }

    /// This workload's SPIFFE ID (from its current SVID).
    pub fn identity(&self) -> SpiffeId {
        self.inner
            .identity
            .tls
            .credentials()
            .svid()
            .spiffe_id()
            .clone()
    }

    /// The TLS material and settings, for building other mesh components on the same identity.
    pub fn tls(&self) -> &MeshTls {
        &self.inner.identity.tls
    }

    /// The validated settings the mesh runs with.
    pub fn settings(&self) -> &WorkloadSettings {
        &self.inner.settings
    }

    /// The merged discovery view (static services, file, etcd).
    pub fn discovery(&self) -> Arc<dyn Discovery> {
        self.inner.discovery.clone()
    }

    /// How live edits of the policy files went: how many applied, how many were refused and
    /// why the latest was refused. The files are checked every second; a refused edit leaves
    /// the policies in force before it in force.
    pub fn policy_status(&self) -> PolicyStatus {
        self.inner.authz.status()
    }

    /// The tunnel pool, for statistics and low-level tunnels to a known address.
    pub fn hbone(&self) -> &HboneClient {
        &self.inner.hbone
    }

    /// The per-service balancers (and their outlier detectors).
    pub fn routes(&self) -> &Arc<BalancedDestinations> {
        &self.inner.routes
    }

    /// An HTTP client over the mesh: `http://<service>:<port>/...` URIs are routed by the
    /// service's VirtualService (when one is configured), balanced over the chosen subset by
    /// its DestinationRule's algorithm, and sent with the route's retries and timeouts and the
    /// DestinationRule's connection-pool limits and outlier detection (Istio's defaults where
    /// nothing is configured).
    pub fn http_client(&self) -> ResilientClient {
        self.inner.http.clone()
    }

    /// A `tower::Service<Uri>` connector for hyper's client or
    /// `tonic::transport::Endpoint::connect_with_connector`: each connection is a tunnel to an
    /// endpoint picked by the service's balancer.
    pub fn connector(&self) -> MeshConnector {
        MeshConnector::with_shared_routes(self.inner.hbone.clone(), self.inner.routes.clone())
    }
}

async fn start_discovery(
    config: &MeshConfig,
    settings: &WorkloadSettings,
) -> Result<Arc<dyn Discovery>, MeshError> {
    let mut sources: Vec<Arc<dyn Discovery>> =
        vec![Arc::new(StaticDiscovery::new(config.to_snapshot(1)?))];
    if let Some(path) = &settings.discovery_file {
        let file = FileDiscovery::watch(path, DISCOVERY_FILE_INTERVAL)
            .map_err(|e| MeshError::Discovery(e.to_string()))?;
        sources.push(Arc::new(file));
    }
    if let Some(etcd) = &settings.etcd {
        let mut etcd_config = EtcdConfig::new(etcd.endpoints.iter().cloned());
        if let Some(prefix) = &etcd.prefix {
            etcd_config = etcd_config.with_prefix(prefix.clone());
        }
        let watcher = EtcdDiscovery::spawn(etcd_config)
            .map_err(|e| MeshError::Discovery(format!("discovery.etcd: {e}")))?;
        sources.push(Arc::new(watcher));
    }
    if let Some(dns) = &settings.dns {
        let services = dns
            .services
            .iter()
            .map(|d| {
                let records = match &d.query {
                    DnsQuery::Address { name, port } => DnsRecords::Address {
                        name: name.clone(),
                        port: *port,
                    },
                    DnsQuery::Srv { name } => DnsRecords::Srv { name: name.clone() },
                    other => {
                        return Err(MeshError::Discovery(format!(
                            "discovery.dns: query {other:?} is not supported"
                        )));
                    }
                };
                let mut service = DnsService::new(d.service.hostname.clone(), records);
                service.ports = d.service.ports.clone();
                service.identities = d.service.expected_identities.clone();
                service.hbone_port = d.hbone_port;
                Ok(service)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let watcher = DnsDiscovery::start(DnsDiscoveryConfig::new(dns.servers.clone(), services))
            .await
            .map_err(|e| MeshError::Discovery(format!("discovery.dns: {e}")))?;
        sources.push(Arc::new(watcher));
    }
    Ok(if sources.len() == 1 {
        sources.remove(0)
    } else {
        Arc::new(MergedDiscovery::new(sources))
    })
}

fn workload_info(settings: &WorkloadSettings) -> WorkloadInfo {
    WorkloadInfo {
        namespace: settings.namespace.clone(),
        workload_name: settings.name.clone(),
        workload_kind: settings.name.as_ref().map(|_| "deployment".to_owned()),
        service_name: settings.labels.get("app").cloned(),
        service_version: settings.labels.get("version").cloned(),
        ..WorkloadInfo::default()
    }
}

impl fmt::Debug for Mesh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mesh")
            .field("identity", &self.identity().as_str())
            .finish_non_exhaustive()
    }
}
