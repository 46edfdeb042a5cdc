//! The `extension_providers:` section: external authorizers that Istio `CUSTOM`
//! AuthorizationPolicies delegate to, by name.
//!
//! The shape is Istio's `MeshConfig.extensionProviders` in snake_case. Only the
//! `envoy_ext_authz_http` kind exists here (Envoy's `ext_authz` filter talking HTTP to the
//! authorizer); its fields follow Istio's `EnvoyExternalAuthorizationHttpProvider`:
//!
//! ```yaml
//! extension_providers:
//!   - name: opa
//!     envoy_ext_authz_http:
//!       service: authz.shop.svc.cluster.local   # or an IP; "host:port" without `port` works too
//!       port: 9000
//!       path_prefix: /check                     # the check request's path is prefix + original
//!       timeout: 500ms                          # default 10m, as Istio
//!       fail_open: false                        # when the authorizer cannot answer
//!       status_on_error: "503"                  # default 403
//!       include_request_headers_in_check: [x-user, "x-ext-*"]
//!       include_additional_headers_in_check: { x-mesh: inventory }
//!       headers_to_upstream_on_allow: [x-user-id]
//!       headers_to_downstream_on_deny: [x-reason, "www-*"]
//!       include_request_body_in_check: { max_request_bytes: 8192, allow_partial_message: true }
//! ```
//!
//! Header lists take Istio's patterns: `abc` (exact), `abc*` (prefix), `*abc` (suffix),
//! compared without regard to case as header names are. `headers_to_downstream_on_allow` adds
//! headers of an allowing answer to the response. `include_request_body_in_check` sends the
//! request body (up to `max_request_bytes`, which is required) as the check request's body;
//! see [`ExtAuthzBodyConfig`]. The gRPC provider kind is refused as not supported rather than
//! ignored.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Deserializer};

use super::ConfigError;
use crate::traffic::parse_duration;

mod body;

pub use body::{ExtAuthzBodyConfig, ExtAuthzBodySettings};

/// Istio's default limit on one check (`timeout` unset).
pub const DEFAULT_EXT_AUTHZ_TIMEOUT: Duration = Duration::from_secs(600);
/// The status answered when the authorizer cannot be asked and `fail_open` is false.
pub const DEFAULT_STATUS_ON_ERROR: u16 = 403;

/// A value that is parsed only to be refused (an Istio field this mesh does not implement).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Present;

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer).map(|_| Self)
    }
}

/// One entry of `extension_providers:`, as written.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ExtensionProviderConfig {
    /// The name `CUSTOM` policies use in `spec.provider.name`.
    #[serde(default)]
    pub name: String,
    /// An HTTP external authorizer (Envoy `ext_authz` over HTTP).
    #[serde(default)]
    pub envoy_ext_authz_http: Option<ExtAuthzHttpConfig>,
    /// Istio's gRPC external authorizer: not supported (refused).
    #[serde(default)]
    pub envoy_ext_authz_grpc: Option<Present>,
}

/// `envoy_ext_authz_http:` as written (Istio's `EnvoyExternalAuthorizationHttpProvider`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ExtAuthzHttpConfig {
    /// The authorizer's host name or IP, optionally `host:port` (then `port` must be unset),
    /// optionally as an `http://` URL.
    #[serde(default)]
    pub service: String,
    /// The authorizer's port.
    #[serde(default)]
    pub port: Option<u32>,
    /// Limit on one check, such as `500ms` (default `10m`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Prepended to the original path in the check request (must start with `/`).
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Allow the request when the authorizer cannot answer (error, timeout, 5xx).
    #[serde(default)]
    pub fail_open: bool,
    /// The status answered when the authorizer cannot answer and `fail_open` is false
    /// (default `"403"`).
    #[serde(default)]
    pub status_on_error: Option<String>,
    /// Request headers sent to the authorizer, besides `host`, `authorization` and the
    /// method and path, which are always sent.
    #[serde(default)]
    pub include_request_headers_in_check: Vec<String>,
    /// Deprecated Istio spelling of `include_request_headers_in_check`; merged with it.
    #[serde(default)]
    pub include_headers_in_check: Vec<String>,
    /// Fixed headers added to every check request.
    #[serde(default)]
    pub include_additional_headers_in_check: BTreeMap<String, String>,
    /// Headers of the authorizer's 200 answer copied into the request (replacing).
    #[serde(default)]
    pub headers_to_upstream_on_allow: Vec<String>,
    /// Headers of a denying answer passed to the caller (unset: all but `host`).
    #[serde(default)]
    pub headers_to_downstream_on_deny: Vec<String>,
    /// Headers of the authorizer's 200 answer added to the response the caller gets.
    #[serde(default)]
    pub headers_to_downstream_on_allow: Vec<String>,
    /// Send the request body to the authorizer (buffered up to a limit); unset: the check
    /// request has an empty body and the request body streams to the application untouched.
    #[serde(default)]
    pub include_request_body_in_check: Option<ExtAuthzBodyConfig>,
}

/// A header-name pattern of Istio's extension provider lists, lowercase.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderPattern {
    /// `abc`.
    Exact(String),
    /// `abc*`.
    Prefix(String),
    /// `*abc`.
    Suffix(String),
}

impl HeaderPattern {
    /// Whether `name` (any case) matches.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        match self {
            Self::Exact(v) => name == *v,
            Self::Prefix(v) => name.starts_with(v.as_str()),
            Self::Suffix(v) => name.ends_with(v.as_str()),
        }
    }

    /// Whether any of `patterns` matches `name`.
    pub fn any(patterns: &[Self], name: &str) -> bool {
        patterns.iter().any(|p| p.matches(name))
    }
}

/// A validated extension provider.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtensionProvider {
    /// Its unique name.
    pub name: String,
    /// How to reach and use it.
    pub http: ExtAuthzHttpSettings,
}

/// A validated HTTP external authorizer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtAuthzHttpSettings {
    /// `host:port` to dial over plain TCP.
    pub authority: String,
    /// Limit on one check.
    pub timeout: Duration,
    /// Prepended to the request path (empty: none).
    pub path_prefix: String,
    /// Allow when the authorizer cannot answer.
    pub fail_open: bool,
    /// Status answered when it cannot answer and `fail_open` is false.
    pub status_on_error: u16,
    /// Request headers forwarded to the authorizer.
    pub include_request_headers: Vec<HeaderPattern>,
    /// Fixed headers added to the check, lowercase names.
    pub additional_headers: Vec<(String, String)>,
    /// Headers of a 200 answer copied into the request.
    pub headers_to_upstream_on_allow: Vec<HeaderPattern>,
    /// Headers of a denial passed to the caller; empty: all but `host`.
    pub headers_to_downstream_on_deny: Vec<HeaderPattern>,
    /// Headers of a 200 answer added to the response (appended).
    pub headers_to_downstream_on_allow: Vec<HeaderPattern>,
    /// Whether, and how much of, the request body is sent in the check (`None`: not sent).
    pub body: Option<ExtAuthzBodySettings>,
}

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn patterns(path: &str, list: &[String]) -> Result<Vec<HeaderPattern>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, text)| {
            let lower = text.to_ascii_lowercase();
            let (pattern, core) = if let Some(rest) = lower.strip_prefix('*') {
                (HeaderPattern::Suffix(rest.to_owned()), rest)
            } else if let Some(rest) = lower.strip_suffix('*') {
                (HeaderPattern::Prefix(rest.to_owned()), rest)
            } else {
                (HeaderPattern::Exact(lower.clone()), lower.as_str())
            };
            if !is_token(core) || core.contains('*') {
                return Err(ConfigError::invalid(
                    format!("{path}[{i}]"),
                    format!(
                        "{text:?} is not a header name pattern; write `name`, `prefix*` or `*suffix`"
                    ),
                ));
            }
            Ok(pattern)
        })
        .collect()
}

fn unsupported(path: String, reason: &str) -> ConfigError {
    ConfigError::Unsupported {
        path,
        reason: reason.to_owned(),
    }
}

/// Validates `extension_providers`.
pub(super) fn resolve_providers(
    configs: &[ExtensionProviderConfig],
) -> Result<Vec<ExtensionProvider>, ConfigError> {
    let mut out: Vec<ExtensionProvider> = Vec::new();
    for (i, config) in configs.iter().enumerate() {
        let path = format!("extension_providers[{i}]");
        if config.name.trim().is_empty() {
            return Err(ConfigError::invalid(
                format!("{path}.name"),
                "missing; CUSTOM policies refer to the provider by this name",
            ));
        }
        if out.iter().any(|p| p.name == config.name) {
            return Err(ConfigError::invalid(
                format!("{path}.name"),
                format!(
                    "{:?} is used by an earlier provider; names must be unique",
                    config.name
                ),
            ));
        }
        if config.envoy_ext_authz_grpc.is_some() {
            return Err(unsupported(
                format!("{path}.envoy_ext_authz_grpc"),
                "only HTTP external authorizers are implemented; use envoy_ext_authz_http",
            ));
        }
        let Some(http) = &config.envoy_ext_authz_http else {
            return Err(ConfigError::invalid(
                path,
                "no provider kind; give envoy_ext_authz_http",
            ));
        };
        out.push(ExtensionProvider {
            name: config.name.clone(),
            http: resolve_http(&format!("{path}.envoy_ext_authz_http"), http)?,
        });
    }
    Ok(out)
}

fn resolve_http(
    path: &str,
    config: &ExtAuthzHttpConfig,
) -> Result<ExtAuthzHttpSettings, ConfigError> {
    let body = config
        .include_request_body_in_check
        .as_ref()
        .map(|b| body::resolve_body(&format!("{path}.include_request_body_in_check"), b))
        .transpose()?;
    let authority = resolve_authority(path, config)?;
    let timeout = match &config.timeout {
        None => DEFAULT_EXT_AUTHZ_TIMEOUT,
        Some(text) => {
            let t = parse_duration(text)
                .map_err(|e| ConfigError::invalid(format!("{path}.timeout"), e.to_string()))?;
            if t < Duration::from_millis(1) {
                return Err(ConfigError::invalid(
                    format!("{path}.timeout"),
                    "must be at least 1ms",
                ));
            }
            t
        }
    };
    let path_prefix = config.path_prefix.clone().unwrap_or_default();
    if !path_prefix.is_empty()
        && (!path_prefix.starts_with('/') || path_prefix.contains(['?', '#', ' ']))
    {
        return Err(ConfigError::invalid(
            format!("{path}.path_prefix"),
            format!("{path_prefix:?} must start with / and hold no query, fragment or space"),
        ));
    }
    let status_on_error = match &config.status_on_error {
        None => DEFAULT_STATUS_ON_ERROR,
        Some(text) => text
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|s| (200..=599).contains(s))
            .ok_or_else(|| {
                ConfigError::invalid(
                    format!("{path}.status_on_error"),
                    format!("{text:?} is not an HTTP status; write a code such as \"503\""),
                )
            })?,
    };
    let mut include = patterns(
        &format!("{path}.include_request_headers_in_check"),
        &config.include_request_headers_in_check,
    )?;
    include.extend(patterns(
        &format!("{path}.include_headers_in_check"),
        &config.include_headers_in_check,
    )?);
    let mut additional = Vec::new();
    for (name, value) in &config.include_additional_headers_in_check {
        let field = format!("{path}.include_additional_headers_in_check.{name}");
        if !is_token(name) {
            return Err(ConfigError::invalid(field, "not a valid header name"));
        }
        if value.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
            return Err(ConfigError::invalid(
                field,
                "the value holds control characters",
            ));
        }
        additional.push((name.to_ascii_lowercase(), value.clone()));
    }
    Ok(ExtAuthzHttpSettings {
        authority,
        timeout,
        path_prefix,
        fail_open: config.fail_open,
        status_on_error,
        include_request_headers: include,
        additional_headers: additional,
        headers_to_upstream_on_allow: patterns(
            &format!("{path}.headers_to_upstream_on_allow"),
            &config.headers_to_upstream_on_allow,
        )?,
        headers_to_downstream_on_deny: patterns(
            &format!("{path}.headers_to_downstream_on_deny"),
            &config.headers_to_downstream_on_deny,
        )?,
        headers_to_downstream_on_allow: patterns(
            &format!("{path}.headers_to_downstream_on_allow"),
            &config.headers_to_downstream_on_allow,
        )?,
        body,
    })
}

fn resolve_authority(path: &str, config: &ExtAuthzHttpConfig) -> Result<String, ConfigError> {
    let field = format!("{path}.service");
    let text = config.service.trim();
    if text.is_empty() {
        return Err(ConfigError::invalid(
            field,
            "missing; give the authorizer's host name or IP (and `port`)",
        ));
    }
    let host_port = if let Some(rest) = text.strip_prefix("http://") {
        rest.trim_end_matches('/')
    } else if text.contains("://") {
        return Err(unsupported(
            field,
            "only plain http:// authorizers are implemented",
        ));
    } else {
        text
    };
    if host_port.contains('/') {
        return Err(ConfigError::invalid(
            field,
            format!(
                "{text:?}: namespace-qualified names (ns/host) and paths are not understood; \
                 write the host name or IP, and put a path in path_prefix"
            ),
        ));
    }
    // A port in the text: `host:port` or `[v6]:port` (a bare IPv6 address has several colons).
    let (host, embedded) = match host_port.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => (h, Some(p)),
        _ => (host_port, None),
    };
    let bad_host = host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b));
    if bad_host {
        return Err(ConfigError::invalid(
            field,
            format!("{text:?} is not a host name or IP"),
        ));
    }
    let port = match (embedded, config.port) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                format!("{path}.port"),
                "the port is also written in `service`; give it once",
            ));
        }
        (Some(p), None) => p.parse::<u32>().map_err(|_| {
            ConfigError::invalid(field.clone(), format!("{p:?} is not a port number"))
        })?,
        (None, Some(p)) => p,
        (None, None) => {
            return Err(ConfigError::invalid(
                format!("{path}.port"),
                "missing; give the authorizer's port (or write service as host:port)",
            ));
        }
    };
    if !(1..=65535).contains(&port) {
        return Err(ConfigError::invalid(
            format!("{path}.port"),
            format!("{port} is not a port; use 1-65535"),
        ));
    }
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    Ok(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MeshConfig;

    fn providers(yaml: &str) -> Result<Vec<ExtensionProvider>, ConfigError> {
        MeshConfig::from_yaml(yaml)?
            .workload_settings()
            .map(|s| s.extension_providers)
    }

    #[test]
    fn full_provider_is_validated_with_defaults() {
        let list = providers(
            r#"
extension_providers:
  - name: opa
    envoy_ext_authz_http:
      service: authz.local
      port: 9000
      path_prefix: /check
      include_request_headers_in_check: [X-User, "x-ext-*"]
      include_headers_in_check: ["*-id"]
      include_additional_headers_in_check: { X-Mesh: inventory }
      headers_to_upstream_on_allow: [x-user-id]
  - name: ip
    envoy_ext_authz_http: { service: "http://127.0.0.1:81", timeout: 250ms, fail_open: true, status_on_error: "503" }
"#,
        )
        .unwrap();
        let opa = &list[0].http;
        assert_eq!(opa.body, None);
        assert_eq!(opa.authority, "authz.local:9000");
        assert_eq!(opa.timeout, DEFAULT_EXT_AUTHZ_TIMEOUT);
        assert_eq!(opa.status_on_error, 403);
        assert!(HeaderPattern::any(&opa.include_request_headers, "x-user"));
        assert!(HeaderPattern::any(
            &opa.include_request_headers,
            "X-Ext-Thing"
        ));
        assert!(HeaderPattern::any(
            &opa.include_request_headers,
            "request-id"
        ));
        assert!(!HeaderPattern::any(&opa.include_request_headers, "cookie"));
        assert_eq!(
            opa.additional_headers,
            [("x-mesh".to_owned(), "inventory".to_owned())]
        );
        let ip = &list[1].http;
        assert_eq!(ip.authority, "127.0.0.1:81");
        assert_eq!(ip.timeout, Duration::from_millis(250));
        assert!(ip.fail_open);
        assert_eq!(ip.status_on_error, 503);
    }

    #[test]
    fn problems_name_their_field() {
        let cases = [
            (
                "{ name: a, envoy_ext_authz_http: { service: x } }",
                "extension_providers[0].envoy_ext_authz_http.port",
            ),
            (
                "{ name: a, envoy_ext_authz_http: { service: 'x:1', port: 2 } }",
                "extension_providers[0].envoy_ext_authz_http.port",
            ),
            (
                "{ name: a, envoy_ext_authz_http: { service: 'x', port: 70000 } }",
                "extension_providers[0].envoy_ext_authz_http.port",
            ),
            (
                "{ name: a, envoy_ext_authz_http: { service: 'ns/x', port: 1 } }",
                "extension_providers[0].envoy_ext_authz_http.service",
            ),
            (
                "{ name: a, envoy_ext_authz_http: { service: 'https://x', port: 1 } }",
                "extension_providers[0].envoy_ext_authz_http.service",
            ),
            (
                "{ name: a, envoy_ext_authz_http: { service: x, port: 1, path_prefix: check } }",
                "extension_providers[0].envoy_ext_authz_http.path_prefix",
            ),
            (
                "{ name: a, envoy_ext_authz_http: { service: x, port: 1, status_on_error: teapot } }",
                "extension_providers[0].envoy_ext_authz_http.status_on_error",
            ),
            (
                "{ name: a, envoy_ext_authz_http: { service: x, port: 1, timeout: 0s } }",
                "extension_providers[0].envoy_ext_authz_http.timeout",
            ),
            (
                "{ name: a, envoy_ext_authz_http: { service: x, port: 1, headers_to_upstream_on_allow: ['a b'] } }",
                "extension_providers[0].envoy_ext_authz_http.headers_to_upstream_on_allow[0]",
            ),
            (
                "{ name: a, envoy_ext_authz_http: { service: x, port: 1, include_request_body_in_check: { allow_partial_message: true } } }",
                "extension_providers[0].envoy_ext_authz_http.include_request_body_in_check.max_request_bytes",
            ),
            (
                "{ name: a, envoy_ext_authz_http: { service: x, port: 1, include_request_body_in_check: { max_request_bytes: 0 } } }",
                "extension_providers[0].envoy_ext_authz_http.include_request_body_in_check.max_request_bytes",
            ),
            (
                "{ name: a, envoy_ext_authz_grpc: { service: x, port: 1 } }",
                "extension_providers[0].envoy_ext_authz_grpc",
            ),
            ("{ name: a }", "extension_providers[0]"),
            (
                "{ envoy_ext_authz_http: { service: x, port: 1 } }",
                "extension_providers[0].name",
            ),
        ];
        for (entry, want) in cases {
            let err = providers(&format!("extension_providers: [{entry}]")).unwrap_err();
            assert_eq!(err.path(), want, "{entry}: {err}");
        }
        let err = providers("extension_providers: [{ name: a, envoy_ext_authz_http: { service: x, port: 1, sevice: y } }]").unwrap_err();
        assert!(err.to_string().contains("sevice"), "{err}");
        assert_eq!(
            err.path(),
            "extension_providers[0].envoy_ext_authz_http.sevice",
            "{err}"
        );
        let err = providers(
            "extension_providers: [{ name: a, envoy_ext_authz_http: { service: x, port: 1 } }, \
             { name: a, envoy_ext_authz_http: { service: y, port: 1 } }]",
        )
        .unwrap_err();
        assert_eq!(err.path(), "extension_providers[1].name");
    }
}
