//! A service's `health_check:` section: active probes of its endpoints.

use serde::Deserialize;

use super::{ConfigError, MeshConfig};
use crate::{model::ServiceName, resilience::HealthCheckConfig, traffic::parse_duration};

/// Active health checking as written (Envoy's `health_checks`, which Istio does not expose).
///
/// ```yaml
/// health_check: { kind: http, path: /healthz, interval: 5s, timeout: 1s,
///                 unhealthy_threshold: 2, healthy_threshold: 1 }
/// ```
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HealthCheckSection {
    /// `tcp`: a tunnel to the endpoint's port must open; `http`: a `GET path` through it must
    /// answer 2xx.
    pub kind: ProbeKindConfig,
    /// The path for `http` probes. Default `/`.
    #[serde(default)]
    pub path: Option<String>,
    /// Time between probes (Istio duration). Default `5s`.
    #[serde(default)]
    pub interval: Option<String>,
    /// Probe timeout. Default `1s`.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Failures in a row that make an endpoint unhealthy. Default 2.
    #[serde(default)]
    pub unhealthy_threshold: Option<u32>,
    /// Successes in a row that make it healthy again. Default 1.
    #[serde(default)]
    pub healthy_threshold: Option<u32>,
}

/// Probe kinds as written.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ProbeKindConfig {
    /// The tunnel opens (the destination reached the application port).
    Tcp,
    /// An HTTP/1.1 GET answers 2xx.
    Http,
}

/// How to probe, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Probe {
    /// The tunnel must open.
    Tcp,
    /// `GET path` must answer 2xx.
    Http {
        /// The request path.
        path: String,
    },
}

/// One service's active health check, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceHealthCheck {
    /// The service.
    pub host: ServiceName,
    /// The port probed (the service's first declared port, else each endpoint's own).
    pub port: Option<u16>,
    /// What a probe does.
    pub probe: Probe,
    /// Timing and thresholds.
    pub config: HealthCheckConfig,
}

impl MeshConfig {
    /// The services' `health_check` sections, validated, with field paths in errors.
    pub fn health_checks(&self) -> Result<Vec<ServiceHealthCheck>, ConfigError> {
        let mut out = Vec::new();
        for (i, service) in self.services.iter().enumerate() {
            let Some(section) = &service.health_check else {
                continue;
            };
            let path = format!("services[{i}].health_check");
            let host = ServiceName::new(&service.host)
                .map_err(|e| ConfigError::invalid(format!("services[{i}].host"), e.to_string()))?;
            let defaults = HealthCheckConfig::default();
            let duration = |field: &str, text: &Option<String>, default| {
                text.as_deref().map_or(Ok(default), |t| {
                    parse_duration(t)
                        .map_err(|e| ConfigError::invalid(format!("{path}.{field}"), e.to_string()))
                })
            };
            let mut config = defaults;
            config.interval = duration("interval", &section.interval, defaults.interval)?;
            config.timeout = duration("timeout", &section.timeout, defaults.timeout)?;
            config.unhealthy_threshold = section
                .unhealthy_threshold
                .unwrap_or(defaults.unhealthy_threshold);
            config.healthy_threshold = section
                .healthy_threshold
                .unwrap_or(defaults.healthy_threshold);
            config
                .validate()
                .map_err(|e| ConfigError::invalid(path.clone(), e.to_string()))?;
            let probe = match (section.kind, &section.path) {
                (ProbeKindConfig::Tcp, Some(_)) => {
                    return Err(ConfigError::invalid(
                        format!("{path}.path"),
                        "a tcp probe sends no request; remove `path` or use kind: http",
                    ));
                }
                (ProbeKindConfig::Tcp, None) => Probe::Tcp,
                (ProbeKindConfig::Http, p) => {
                    let p = p.clone().unwrap_or_else(|| "/".to_owned());
                    if !p.starts_with('/') {
                        return Err(ConfigError::invalid(
                            format!("{path}.path"),
                            format!("{p:?} must start with /"),
                        ));
                    }
                    Probe::Http { path: p }
                }
            };
            out.push(ServiceHealthCheck {
                host,
                port: service.ports.first().map(|p| p.port),
                probe,
                config,
            });
        }
        Ok(out)
    }
}
