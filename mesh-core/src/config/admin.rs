//! The operator's view of a workload: the `admin:` endpoint (Prometheus metrics, health,
//! configuration dump, log levels) and the `telemetry:` settings (metrics, access logs).
//!
//! Both sections are optional. Without `admin:` no admin endpoint is started (the embedding
//! application may still start one itself); with `admin: {}` it listens on
//! `127.0.0.1:15020`, Istio's conventional agent port, bound to loopback so nothing is exposed
//! unless configured. Without `telemetry:` metrics are recorded and access logs are off, as in
//! a default Istio install. `telemetry.otlp: { endpoint: http://127.0.0.1:4317 }` exports
//! the spans of requests and tunnels to an OpenTelemetry collector (mesh-client's `otlp`
//! feature).
//!
//! ```
//! let yaml = r#"
//! admin: { listen: 127.0.0.1:15020 }
//! telemetry:
//!   access_log: { enabled: true, sampling_percent: 10, errors_only: false }
//! "#;
//! let config = mesh_core::config::MeshConfig::from_yaml(yaml)?;
//! let settings = config.workload_settings()?;
//! assert_eq!(settings.admin.unwrap().listen.port(), 15020);
//! assert!(settings.telemetry.access_log.enabled);
//! assert_eq!(settings.telemetry.access_log.sampling, 0.1);
//! # Ok::<(), mesh_core::config::ConfigError>(())
//! ```

use std::net::SocketAddr;

use serde::Deserialize;

use super::ConfigError;

/// Default admin listen address: loopback, Istio's agent port.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:15020";

/// The `admin:` section: where the admin HTTP endpoint listens.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AdminConfig {
    /// `ip:port` to listen on. Default `127.0.0.1:15020`. Anything but loopback exposes the
    /// configuration dump and log controls to the network; do so only behind a firewall.
    #[serde(default)]
    pub listen: Option<String>,
}

/// The `telemetry:` section: what the workload records about its traffic.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TelemetryConfig {
    /// Record Istio's standard and the mesh's own metrics. Default `true`.
    #[serde(default)]
    pub metrics: Option<bool>,
    /// One JSON line per request and per tunnel.
    #[serde(default)]
    pub access_log: Option<AccessLogConfig>,
    /// Export spans to an OpenTelemetry collector over OTLP/gRPC (needs mesh-client's `otlp`
    /// feature).
    #[serde(default)]
    pub otlp: Option<OtlpConfig>,
}

/// `telemetry.otlp` as written: where sampled spans of requests and tunnels are exported.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct OtlpConfig {
    /// The collector's OTLP/gRPC address, `http://HOST:PORT` (4317 by convention). Required.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The `service.name` resource attribute. Default: the workload's canonical service.
    #[serde(default)]
    pub service_name: Option<String>,
}

/// `telemetry.otlp`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OtlpSettings {
    /// `http://HOST:PORT`.
    pub endpoint: String,
    /// The `service.name` to report, when configured.
    pub service_name: Option<String>,
}

/// Access log settings as written.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AccessLogConfig {
    /// Write access log lines. Default `true` when the section is present.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Percentage (0-100) of successful requests and tunnels logged; failures (status >= 400,
    /// or any Envoy response flag) are always logged. Default 100.
    #[serde(default)]
    pub sampling_percent: Option<Percent>,
    /// Log only failures. Default `false`.
    #[serde(default)]
    pub errors_only: Option<bool>,
}

/// A percentage as written in YAML (a number, fractions allowed).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct Percent(pub f64);

// Equality on the written number: NaN never validates, so `Eq`'s reflexivity holds for every
// value a valid configuration can hold.
impl Eq for Percent {}

/// The admin endpoint, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdminSettings {
    /// Where to listen.
    pub listen: SocketAddr,
}

/// Telemetry, validated and defaulted.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct TelemetrySettings {
    /// Whether metrics are recorded.
    pub metrics: bool,
    /// Access logging.
    pub access_log: AccessLogSettings,
    /// OTLP span export, when configured.
    pub otlp: Option<OtlpSettings>,
}

impl Eq for TelemetrySettings {}

impl Default for TelemetrySettings {
    /// Metrics on, access logs off.
    fn default() -> Self {
        Self {
            metrics: true,
            access_log: AccessLogSettings::default(),
            otlp: None,
        }
    }
}

/// Access logging, validated.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct AccessLogSettings {
    /// Whether lines are written at all.
    pub enabled: bool,
    /// Fraction (0.0-1.0) of successes logged.
    pub sampling: f64,
    /// Only failures are logged.
    pub errors_only: bool,
}

impl Default for AccessLogSettings {
    /// Off; when turned on, every request is logged.
    fn default() -> Self {
        Self {
            enabled: false,
            sampling: 1.0,
            errors_only: false,
        }
    }
}

impl AccessLogSettings {
    /// Everything logged (tests, debugging).
    pub fn all() -> Self {
        Self {
            enabled: true,
            ..Self::default()
        }
    }
}

/// Validates `admin:`.
pub(crate) fn resolve_admin(config: &AdminConfig) -> Result<AdminSettings, ConfigError> {
    let text = config.listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN);
    let listen = text.parse().map_err(|_| {
        ConfigError::invalid(
            "admin.listen",
            format!("{text:?} is not ip:port; write it as 127.0.0.1:15020"),
        )
    })?;
    Ok(AdminSettings { listen })
}

/// Validates `telemetry:`, applying defaults.
pub(crate) fn resolve_telemetry(
    config: Option<&TelemetryConfig>,
) -> Result<TelemetrySettings, ConfigError> {
    let Some(config) = config else {
        return Ok(TelemetrySettings::default());
    };
    let access_log = match &config.access_log {
        None => AccessLogSettings::default(),
        Some(log) => {
            let percent = log.sampling_percent.map_or(100.0, |p| p.0);
            if !(0.0..=100.0).contains(&percent) {
                return Err(ConfigError::invalid(
                    "telemetry.access_log.sampling_percent",
                    format!("{percent} is not a percentage; use a number from 0 to 100"),
                ));
            }
            AccessLogSettings {
                enabled: log.enabled.unwrap_or(true),
                sampling: percent / 100.0,
                errors_only: log.errors_only.unwrap_or(false),
            }
        }
    };
    Ok(TelemetrySettings {
        metrics: config.metrics.unwrap_or(true),
        access_log,
        otlp: config.otlp.as_ref().map(resolve_otlp).transpose()?,
    })
}

/// Validates `telemetry.otlp`.
fn resolve_otlp(config: &OtlpConfig) -> Result<OtlpSettings, ConfigError> {
    let field = "telemetry.otlp.endpoint";
    let Some(endpoint) = config.endpoint.as_deref() else {
        return Err(ConfigError::invalid(
            field,
            "is required: the collector's OTLP/gRPC address, such as http://127.0.0.1:4317",
        ));
    };
    if endpoint.starts_with("https://") {
        return Err(ConfigError::invalid(
            field,
            format!(
                "{endpoint:?}: TLS to the collector is not supported; export to a collector on \
                 this host or network over http:// (such as http://127.0.0.1:4317)"
            ),
        ));
    }
    let authority = endpoint
        .strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|a| {
            a.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && !a.contains('/') && port.parse::<u16>().is_ok_and(|p| p > 0)
            })
        });
    if authority.is_none() {
        return Err(ConfigError::invalid(
            field,
            format!("{endpoint:?} is not http://HOST:PORT; write it as http://127.0.0.1:4317"),
        ));
    }
    if config
        .service_name
        .as_deref()
        .is_some_and(|n| n.trim().is_empty())
    {
        return Err(ConfigError::invalid(
            "telemetry.otlp.service_name",
            "is empty; leave it out to use the workload's canonical service",
        ));
    }
    Ok(OtlpSettings {
        endpoint: endpoint.trim_end_matches('/').to_owned(),
        service_name: config.service_name.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MeshConfig;

    #[test]
    fn admin_defaults_to_loopback_15020() {
        let settings = MeshConfig::from_yaml("admin: {}")
            .unwrap()
            .workload_settings()
            .unwrap();
        assert_eq!(
            settings.admin.unwrap().listen.to_string(),
            "127.0.0.1:15020"
        );
        assert_eq!(settings.telemetry, TelemetrySettings::default());
        let none = MeshConfig::from_yaml("{}")
            .unwrap()
            .workload_settings()
            .unwrap();
        assert!(none.admin.is_none());
        assert!(!none.telemetry.access_log.enabled);
    }

    #[test]
    fn bad_values_name_their_field() {
        let err = MeshConfig::from_yaml("admin: { listen: localhost }")
            .unwrap()
            .workload_settings()
            .unwrap_err();
        assert_eq!(err.path(), "admin.listen");
        let err = MeshConfig::from_yaml("telemetry: { access_log: { sampling_percent: 101 } }")
            .unwrap()
            .workload_settings()
            .unwrap_err();
        assert_eq!(err.path(), "telemetry.access_log.sampling_percent");
        let err = MeshConfig::from_yaml("admin: { port: 1 }").unwrap_err();
        assert!(err.to_string().contains("admin"), "{err}");
        assert!(err.to_string().contains("port"), "{err}");
        let err = MeshConfig::from_yaml("telemetry: { access_log: { sample: 1 } }").unwrap_err();
        assert_eq!(err.path(), "telemetry.access_log.sample");
    }

    #[test]
    fn otlp_needs_a_plain_http_endpoint() {
        let settings = MeshConfig::from_yaml(
            "telemetry: { otlp: { endpoint: \"http://127.0.0.1:4317/\", service_name: shop } }",
        )
        .unwrap()
        .workload_settings()
        .unwrap();
        let otlp = settings.telemetry.otlp.unwrap();
        assert_eq!(otlp.endpoint, "http://127.0.0.1:4317");
        assert_eq!(otlp.service_name.as_deref(), Some("shop"));
        for bad in [
            "{}",
            "{ endpoint: \"https://collector:4317\" }",
            "{ endpoint: \"127.0.0.1:4317\" }",
            "{ endpoint: \"http://collector\" }",
            "{ endpoint: \"http://:4317\" }",
            "{ endpoint: \"http://collector:4317/v1/traces\" }",
        ] {
            let err = MeshConfig::from_yaml(&format!("telemetry: {{ otlp: {bad} }}"))
                .unwrap()
                .workload_settings()
                .unwrap_err();
            assert_eq!(err.path(), "telemetry.otlp.endpoint", "{bad}: {err}");
        }
        let err = MeshConfig::from_yaml("telemetry: { otlp: { url: x } }").unwrap_err();
        assert_eq!(err.path(), "telemetry.otlp.url");
    }

    #[test]
    fn access_log_section_turns_logging_on() {
        let settings = MeshConfig::from_yaml(
            "telemetry: { metrics: false, access_log: { sampling_percent: 2.5, errors_only: true } }",
        )
        .unwrap()
        .workload_settings()
        .unwrap();
        assert!(!settings.telemetry.metrics);
        let log = settings.telemetry.access_log;
        assert!(log.enabled && log.errors_only);
        assert!((log.sampling - 0.025).abs() < 1e-12);
    }
}
