//! `include_request_body_in_check:` of an HTTP external authorizer: Istio's
//! `includeRequestBodyInCheck` (Envoy's `ext_authz` `with_request_body`).
//!
//! ```yaml
//! include_request_body_in_check:
//!   max_request_bytes: 8192       # required, 1 or more: the most bytes held for one check
//!   allow_partial_message: true   # larger bodies: send the first max_request_bytes (else 413)
//!   pack_as_bytes: false          # gRPC authorizers only; accepted, no effect over HTTP
//! ```
//!
//! Envoy refuses a `max_request_bytes` of 0 (its field must be greater than 0), so an Istio
//! mesh config without it never reaches a proxy; here it is required likewise, with an error
//! saying so.

use serde::Deserialize;

use super::super::ConfigError;

/// `include_request_body_in_check:` as written.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ExtAuthzBodyConfig {
    /// The most request body bytes buffered for one check (required, at least 1).
    #[serde(default)]
    pub max_request_bytes: Option<u32>,
    /// Whether a body larger than `max_request_bytes` is checked on its first
    /// `max_request_bytes` bytes (`true`) or answered 413 Payload Too Large without asking the
    /// authorizer (`false`, the default).
    #[serde(default)]
    pub allow_partial_message: bool,
    /// Send the body as raw bytes rather than a UTF-8 string: meaningful only to gRPC
    /// authorizers (a protobuf field type). Accepted for Istio compatibility; an HTTP
    /// authorizer always receives the body's bytes unchanged, so it has no effect here.
    #[serde(default)]
    pub pack_as_bytes: bool,
}

/// Validated body settings of an HTTP external authorizer: the request body (up to
/// `max_request_bytes`) is the check request's body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtAuthzBodySettings {
    /// The most bytes buffered for, and sent in, one check (at least 1).
    pub max_request_bytes: usize,
    /// Larger bodies are checked on their first `max_request_bytes` bytes; when false they
    /// are answered 413 without a check.
    pub allow_partial_message: bool,
    /// As written; no effect on an HTTP authorizer (see [`ExtAuthzBodyConfig::pack_as_bytes`]).
    pub pack_as_bytes: bool,
}

/// Validates `include_request_body_in_check` found at `path`.
pub(super) fn resolve_body(
    path: &str,
    config: &ExtAuthzBodyConfig,
) -> Result<ExtAuthzBodySettings, ConfigError> {
    let max = match config.max_request_bytes {
        None | Some(0) => {
            return Err(ConfigError::invalid(
                format!("{path}.max_request_bytes"),
                "missing or 0; give the most body bytes to send to the authorizer (1 or more, \
                 such as 8192), as Envoy requires",
            ));
        }
        Some(max) => max,
    };
    let max_request_bytes = usize::try_from(max).map_err(|_| {
        ConfigError::invalid(
            format!("{path}.max_request_bytes"),
            format!("{max} does not fit this platform's memory; use a smaller limit"),
        )
    })?;
    Ok(ExtAuthzBodySettings {
        max_request_bytes,
        allow_partial_message: config.allow_partial_message,
        pack_as_bytes: config.pack_as_bytes,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, MeshConfig};

    use super::*;

    fn body(yaml: &str) -> Result<Option<ExtAuthzBodySettings>, ConfigError> {
        let text = format!(
            "extension_providers: [{{ name: a, envoy_ext_authz_http: {{ service: x, port: 1, \
             include_request_body_in_check: {yaml} }} }}]"
        );
        Ok(MeshConfig::from_yaml(&text)?
            .workload_settings()?
            .extension_providers[0]
            .http
            .body)
    }

    const AT: &str = "extension_providers[0].envoy_ext_authz_http.include_request_body_in_check";

    #[test]
    fn settings_are_read_with_defaults() {
        let full =
            body("{ max_request_bytes: 4096, allow_partial_message: true, pack_as_bytes: true }")
                .unwrap()
                .unwrap();
        assert_eq!(full.max_request_bytes, 4096);
        assert!(full.allow_partial_message && full.pack_as_bytes);
        let least = body("{ max_request_bytes: 1 }").unwrap().unwrap();
        assert_eq!(least.max_request_bytes, 1);
        assert!(!least.allow_partial_message && !least.pack_as_bytes);
    }

    #[test]
    fn mistakes_name_the_field() {
        let cases = [
            (
                "{ max_request_bytes: 10, allow_partial: true }",
                "allow_partial",
            ),
            ("{ max_request_bytes: lots }", "max_request_bytes"),
            ("{ max_request_bytes: -1 }", "max_request_bytes"),
            (
                "{ max_request_bytes: 10, allow_partial_message: maybe }",
                "allow_partial_message",
            ),
            ("{ max_request_bytes: 0 }", "max_request_bytes"),
            ("{ pack_as_bytes: true }", "max_request_bytes"),
            ("8192", ""),
        ];
        for (yaml, field) in cases {
            let err = body(yaml).unwrap_err();
            let want = if field.is_empty() {
                AT.to_owned()
            } else {
                format!("{AT}.{field}")
            };
            assert_eq!(err.path(), want, "{yaml}: {err}");
            assert!(err.to_string().contains(&want), "{yaml}: {err}");
        }
    }
}
