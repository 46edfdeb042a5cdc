//! The YAML shape of a RequestAuthentication, field for field, with serde.
//!
//! Every struct refuses unknown fields, so a misspelled `jwksUrl` is an error naming its path
//! instead of a rule that silently fetches nothing. `metadata` and `selector` are the shapes
//! the AuthorizationPolicy loader reads. `targetRef(s)` are accepted as [`IgnoredAny`] only so
//! that the loader can refuse them as "not supported" rather than "unknown field".

use serde::{Deserialize, de::IgnoredAny};

use crate::authz::load::{RawMetadata, RawSelector};

/// A whole RequestAuthentication document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawRequestAuthentication {
    #[allow(dead_code, reason = "checked by the header pass")]
    pub(super) api_version: String,
    #[allow(dead_code, reason = "checked by the header pass")]
    pub(super) kind: String,
    pub(super) metadata: RawMetadata,
    #[serde(default)]
    pub(super) spec: Option<RawSpec>,
    /// Written by the API server; meaningless in a file, harmless to carry.
    #[serde(default)]
    #[allow(dead_code, reason = "accepted and ignored")]
    pub(super) status: Option<IgnoredAny>,
}

/// `spec`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawSpec {
    #[serde(default)]
    pub(super) selector: Option<RawSelector>,
    #[serde(default)]
    pub(super) target_ref: Option<IgnoredAny>,
    #[serde(default)]
    pub(super) target_refs: Option<IgnoredAny>,
    #[serde(default)]
    pub(super) jwt_rules: Option<Vec<RawJwtRule>>,
}

/// `spec.jwtRules[]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawJwtRule {
    #[serde(default)]
    pub(super) issuer: Option<String>,
    #[serde(default)]
    pub(super) audiences: Option<Vec<String>>,
    #[serde(default)]
    pub(super) jwks_uri: Option<String>,
    #[serde(default)]
    pub(super) jwks: Option<String>,
    #[serde(default)]
    pub(super) from_headers: Option<Vec<RawHeaderLocation>>,
    #[serde(default)]
    pub(super) from_params: Option<Vec<String>>,
    #[serde(default)]
    pub(super) from_cookies: Option<Vec<String>>,
    #[serde(default)]
    pub(super) output_payload_to_header: Option<String>,
    #[serde(default)]
    pub(super) output_claim_to_headers: Option<Vec<RawClaimToHeader>>,
    #[serde(default)]
    pub(super) forward_original_token: Option<bool>,
    #[serde(default)]
    pub(super) timeout: Option<String>,
}

/// `jwtRules[].fromHeaders[]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeaderLocation {
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) prefix: Option<String>,
}

/// `jwtRules[].outputClaimToHeaders[]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClaimToHeader {
    #[serde(default)]
    pub(super) header: Option<String>,
    #[serde(default)]
    pub(super) claim: Option<String>,
}
