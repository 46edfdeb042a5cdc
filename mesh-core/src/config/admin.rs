//! The operator's view of a workload: the `admin:` endpoint (Prometheus metrics, health,
//! configuration dump, log levels) and the `telemetry:` settings (metrics, access logs).
//!
//! Both sections are optional. Without `admin:` no admin endpoint is started (the embedding
//! application may still start one itself); with `admin: {}` it listens on
//! `127.0.0.1:15020`, Istio's conventional agent port, bound to loopback so nothing is exposed
//! unless configured. Without `telemetry:` metrics are recorded and access logs are off, as in
//! a default Istio install.
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
}

impl Eq for TelemetrySettings {}

impl Default for TelemetrySettings {
    /// Metrics on, access logs off.
    fn default() -> Self {
        Self {
            metrics: true,
            access_log: AccessLogSettings::default(),
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
