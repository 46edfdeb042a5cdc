//! The mesh's own configuration file: the embedded default that needs no control plane.
//!
//! One YAML (or JSON, which is YAML) document describes the services a workload calls and their
//! endpoints. Parsing is strict: an unknown field is an error naming its path, because a
//! misspelled setting silently ignored is how meshes fail in production (gRPC proxyless ignores
//! what it does not support; we refuse). Values are validated while converting to the model
//! ([`Snapshot`](crate::model::Snapshot)), and every error carries the path of the offending
//! field, such as `services[1].endpoints[0].address`.
//!
//! A service may carry a `traffic_policy:` section: the content of Istio's DestinationRule
//! (`load_balancer`, `connection_pool`, `outlier_detection`, `tls`, `port_level_settings`,
//! `subsets`) and VirtualService HTTP routes (`http`: `match`, `route`, `retries`, `timeout`),
//! with Istio's field names in snake_case and enum values in lowercase (`round_robin`,
//! `istio_mutual`). [`MeshConfig::traffic_config`] validates it exactly as the Istio loader
//! validates those resources ([`crate::traffic`]), with paths such as
//! `services[0].traffic_policy.outlier_detection.interval`. Documents without the section are
//! unchanged.
//!
//! ```
//! let yaml = r#"
//! services:
//!   - host: inventory.shop.svc.cluster.local
//!     ports: [{ port: 8080, protocol: http }]
//!     identities: [spiffe://cluster.local/ns/shop/sa/inventory]
//!     endpoints:
//!       - address: 10.0.0.7:8080
//!         locality: us-east1/us-east1-b
//!         labels: { version: v1 }
//! "#;
//! let config = mesh_core::config::MeshConfig::from_yaml(yaml)?;
//! let snapshot = config.to_snapshot(1)?;
//! let endpoints = snapshot.endpoints("inventory.shop.svc.cluster.local").unwrap();
//! assert_eq!(endpoints[0].hbone_port, 15008);
//! # Ok::<(), mesh_core::config::ConfigError>(())
//! ```

mod admin;
mod dns;
mod error;
mod extension;
mod health;
mod locality;
mod resolved;
mod schema;
mod snapshot;
mod traffic;
mod workload;

pub use admin::{
    AccessLogConfig, AccessLogSettings, AdminConfig, AdminSettings, DEFAULT_ADMIN_LISTEN,
    OtlpConfig, OtlpSettings, Percent, TelemetryConfig, TelemetrySettings,
};
pub use error::ConfigError;
pub use extension::{
    DEFAULT_EXT_AUTHZ_TIMEOUT, DEFAULT_STATUS_ON_ERROR, ExtAuthzBodyConfig, ExtAuthzBodySettings,
    ExtAuthzHttpConfig, ExtAuthzHttpSettings, ExtensionProvider, ExtensionProviderConfig,
    HeaderPattern, Present,
};
pub use health::{HealthCheckSection, Probe, ProbeKindConfig, ServiceHealthCheck};
pub use locality::LocalityConfig;
pub use resolved::{
    DEFAULT_DEV_CA_DIR, DEFAULT_DRAIN_TIMEOUT, DEFAULT_INBOUND_LISTEN,
    DEFAULT_MAX_CONCURRENT_STREAMS, DEFAULT_RATE_LIMIT_TIMEOUT, DEFAULT_RELOAD_INTERVAL,
    DEFAULT_SPIFFE_ID, DEFAULT_SVID_TTL, DnsQuery, DnsServiceSettings, DnsSettings, EtcdSettings,
    GlobalRateLimitSettings, IdentitySettings, IdentitySource, InboundSettings, RateLimitSettings,
    WorkloadSettings,
};
pub use schema::{
    EndpointConfig, HealthConfig, MeshConfig, PortConfig, ProtocolConfig, ServiceConfig,
    TrafficPolicyConfig,
};
pub use traffic::ServiceTraffic;
pub use workload::{
    DevCaConfig, DiscoveryConfig, DnsDiscoverySection, DnsServiceConfig, EtcdDiscoveryConfig,
    FailureModeConfig, GlobalRateLimitSection, IdentityConfig, IdentityFilesConfig, InboundConfig,
    RateLimitSection, WorkloadConfig,
};
