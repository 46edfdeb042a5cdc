//! The document's shape, with serde. Every struct refuses unknown fields.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{
    ConfigError,
    admin::{AdminConfig, TelemetryConfig},
    workload::{DiscoveryConfig, IdentityConfig, InboundConfig, RateLimitSection, WorkloadConfig},
};
use crate::traffic::raw::ServiceTraffic;

/// The whole configuration document.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MeshConfig {
    /// This workload's name, namespace and labels.
    #[serde(default)]
    pub workload: Option<WorkloadConfig>,
    /// Where the SVID comes from. Default: the development CA.
    #[serde(default)]
    pub identity: Option<IdentityConfig>,
    /// The inbound HBONE listener, if the workload serves mesh traffic.
    #[serde(default)]
    pub inbound: Option<InboundConfig>,
    /// Discovery backends in addition to `services`.
    #[serde(default)]
    pub discovery: Option<DiscoveryConfig>,
    /// Istio security policy files (`AuthorizationPolicy`, ...) applying to this workload.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Rate limits on inbound requests.
    #[serde(default)]
    pub rate_limit: Option<RateLimitSection>,
    /// Istio traffic files (`DestinationRule`, `VirtualService`) for the services this
    /// workload calls, in addition to the services' own `traffic_policy` sections.
    #[serde(default)]
    pub traffic: Vec<String>,
    /// The admin endpoint (metrics, health, config dump, log levels); absent: not started.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Metrics and access logs.
    #[serde(default)]
    pub telemetry: Option<TelemetryConfig>,
    /// External authorizers for `CUSTOM` AuthorizationPolicies (Istio's
    /// `extensionProviders`; see [`ExtensionProviderConfig`](super::ExtensionProviderConfig)).
    #[serde(default)]
    pub extension_providers: Vec<super::ExtensionProviderConfig>,
    /// The services this workload can call.
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
}

/// One service: its name, ports, identities and endpoints.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServiceConfig {
    /// The hostname callers use, such as `inventory.shop.svc.cluster.local`.
    pub host: String,
    /// Ports the service exposes.
    #[serde(default)]
    pub ports: Vec<PortConfig>,
    /// SPIFFE IDs any endpoint of the service may present (Istio's `subjectAltNames`).
    #[serde(default)]
    pub identities: Vec<String>,
    /// Where the service runs.
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
    /// How calls to the service behave: load balancing, connection limits, outlier detection,
    /// TLS, per-port settings, subsets and HTTP routes with retries and timeouts. Istio's
    /// DestinationRule `trafficPolicy`, `subsets` and VirtualService `http` routes, with the
    /// same fields in snake_case ([`MeshConfig::traffic_config`] reads it).
    #[serde(default)]
    pub traffic_policy: Option<TrafficPolicyConfig>,
    /// Active health checks of the endpoints (probes through the mesh).
    #[serde(default)]
    pub health_check: Option<super::health::HealthCheckSection>,
}

/// A service's `traffic_policy:` section, as parsed; [`MeshConfig::traffic_config`] validates
/// it and turns it into the [`traffic`](crate::traffic) model.
///
/// ```yaml
/// traffic_policy:
///   load_balancer: { consistent_hash: { http_header_name: x-user, maglev: { table_size: 65537 } } }
///   connection_pool: { tcp: { max_connections: 100 }, http: { http2_max_requests: 1000 } }
///   outlier_detection: { consecutive_5xx_errors: 3, interval: 5s, base_ejection_time: 30s }
///   subsets:
///     - { name: v2, labels: { version: v2 } }
///   http:
///     - match: [{ headers: { x-canary: { exact: "1" } } }]
///       route: [{ destination: { subset: v2 } }]
///     - retries: { attempts: 3, per_try_timeout: 1s, retry_on: "5xx,connect-failure" }
///       timeout: 5s
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct TrafficPolicyConfig(pub(crate) ServiceTraffic);

/// A service port.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PortConfig {
    /// The port number.
    pub port: u16,
    /// An optional name (`http-web`).
    #[serde(default)]
    pub name: Option<String>,
    /// What the port speaks. Default: `tcp`.
    #[serde(default)]
    pub protocol: ProtocolConfig,
}

/// Port protocols as written in the file.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ProtocolConfig {
    /// Opaque TCP.
    #[default]
    Tcp,
    /// HTTP/1.1.
    Http,
    /// HTTP/2 with prior knowledge.
    Http2,
    /// gRPC.
    Grpc,
}

/// One endpoint of a service.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EndpointConfig {
    /// `ip:port` of the workload (IPv6 as `[addr]:port`).
    pub address: String,
    /// Its HBONE port. Default 15008; 0 means the endpoint is outside the mesh.
    #[serde(default)]
    pub hbone_port: Option<u16>,
    /// The SPIFFE ID it presents, when it differs from the service's identities.
    #[serde(default)]
    pub identity: Option<String>,
    /// Relative weight (default 1, must be positive).
    #[serde(default)]
    pub weight: Option<u32>,
    /// `region/zone/subzone` (any suffix may be omitted).
    #[serde(default)]
    pub locality: Option<String>,
    /// Reported health. Default: `healthy`.
    #[serde(default)]
    pub health: HealthConfig,
    /// Workload labels (for subsets and metrics).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Endpoint health as written in the file.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum HealthConfig {
    /// Serving.
    #[default]
    Healthy,
    /// Not serving.
    Unhealthy,
    /// Shutting down.
    Draining,
}

impl MeshConfig {
    /// Parses a YAML (or JSON) document strictly: unknown fields and wrong types are errors
    /// naming the field path.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::Syntax {
                path: if path.is_empty() {
                    ".".to_owned()
                } else {
                    path
                },
                reason: e.into_inner().to_string(),
            }
        })
    }
}
